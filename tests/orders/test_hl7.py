"""HL7 v2 order messages (orders/hl7.py, orders/hl7read.py): ORM^O01 with RQD for DME and OML^O21 with OBR for a lab
kit become orders signed in the EHR; ORC-1 CA cancels; anything else, and a missing segment or required field, is
AE naming the segment and field; one bad element costs only itself with a warning; DG1, NTE, OBX and Z-segments are
never kept. Each test stores a real IntakeMessage for a real IntakeSite and calls the registered handler."""

import datetime

import pytest

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import HCPCS, LOINC, CodeMapping, Payer, Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.registry import ACCEPT, ERROR, intake_handler_for, intake_message_types
from healthcommerce.orders.events import TOPIC_HL7_ORDER
from healthcommerce.orders.fields import hl7_fields
from healthcommerce.orders.hl7 import order_hl7_handle
from healthcommerce.orders.hl7read import local_system
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import content_hash
from healthcommerce.outbox.models import OutboxMessage
from tests.orders.hl7_samples import (
    OML_FIT,
    ORM_CPAP,
    hl7_orders_deliver,
    intake_context,
    message_text,
    replace,
    segment,
)

pytestmark = pytest.mark.django_db

ORC_CPAP = next(line for line in ORM_CPAP if line.startswith("ORC|"))


@pytest.fixture
def site() -> EHRSite:
    return EHRSite.objects.create(name="Sandbox Hospital", iss="https://ehr.sandbox.example/fhir", client_id="hc")


def handle(site: EHRSite, lines: list[str], **settings: object):  # type: ignore[no-untyped-def]
    """Run the handler on a stored message, then deliver its ``order.hl7_received`` rows as a worker does
    (``order_hl7_create`` creates each NW group's order)."""
    parsed, ctx = intake_context(site, message_text(lines), **settings)
    outcome = order_hl7_handle(parsed, ctx)
    hl7_orders_deliver()
    return outcome, ctx


def test_orm_and_oml_are_registered_to_the_orders_handler() -> None:
    assert {"ORM^O01", "OML^O21"} <= set(intake_message_types())
    assert intake_handler_for("ORM^O01") is order_hl7_handle
    assert intake_handler_for("OML^O21") is order_hl7_handle


def test_an_orm_with_rqd_for_a_cpap_becomes_a_signed_order_with_what_the_message_says(site: EHRSite) -> None:
    outcome, ctx = handle(site, ORM_CPAP)

    assert outcome.code == ACCEPT, outcome
    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.SIGNED
    assert order.source == Order.Source.HL7V2
    assert order.placer_order_number == "PLC-1001"
    assert order.intake_message_id == ctx.message.pk
    assert order.product == Product.objects.get(sku="DME-CPAP-STD")
    assert (order.request_system, order.request_code) == (HCPCS, "E0601")
    assert order.quantity == 1
    assert order.patient_name == "MR THEODOR ALAN ROOSEVELT"
    assert order.patient_birth_date == datetime.date(1946, 7, 4)
    assert order.patient_fhir_id == "pat014"
    assert order.ship_to == {
        "line": ["7525 COLSHIRE DR", "STE 200"],
        "city": "MCLEAN",
        "state": "VA",
        "postal_code": "22102",
        "country": "US",
    }
    assert order.contact_email == "teddy@example.org"
    assert order.contact_phone == "+1 (703) 555-0100"
    assert (order.payer_name, order.payer_member_id) == ("MEDICARE PART B", "10A3D58WH1600")
    # Signed in the EHR by the ordering provider, at ORC-9 (no offset: the server's zone, UTC in tests).
    assert order.practitioner_npi == "1234567893"
    assert order.practitioner_name == "DR ANN HALE"
    assert order.signed_by == "http://hl7.org/fhir/sid/us-npi|1234567893"
    assert order.signed_at == datetime.datetime(2026, 12, 6, 10, 12, tzinfo=datetime.UTC)
    assert order.content_hash == content_hash(order)
    assert OutboxMessage.objects.filter(topic="order.signed", subject=f"Order/{order.pk}").exists()
    ctx.message.refresh_from_db()
    assert ctx.message.order_reference == order.reference
    assert AuditEvent.objects.filter(action="order.intake", target=f"Order/{order.pk}", outcome="signed").exists()


def test_the_payer_is_the_record_listing_the_in1_3_company_id(site: EHRSite) -> None:
    medicare = Payer.objects.create(site=site, name="Medicare", plan_type="medicare", identifiers="12345")

    outcome, _ctx = handle(site, ORM_CPAP)  # IN1-3 12345, IN1-4 MEDICARE PART B
    other, _ctx = handle(site, OML_FIT)  # IN1-3 BRHP01: no record

    order = Order.objects.get(reference=outcome.order)
    assert (order.payer, order.coverage_status, order.payer_keys) == (medicare, "matched", ["12345"])
    assert order.payer_name == "MEDICARE PART B"  # the chart's own text is kept
    unmatched = Order.objects.get(reference=other.order)
    assert (unmatched.payer, unmatched.coverage_status, unmatched.payer_keys) == (None, "not_recognised", ["BRHP01"])


def test_an_oml_with_obr_loinc_for_a_fit_kit_becomes_a_signed_order(site: EHRSite) -> None:
    outcome, _ctx = handle(site, OML_FIT)

    assert outcome.code == ACCEPT, outcome
    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.SIGNED
    assert order.product == Product.objects.get(sku="KIT-FIT")
    assert (order.request_system, order.request_code) == (LOINC, "29771-3")
    assert order.payer_member_id == "BRH987654321"  # IN1-49 when IN1-36 is empty
    assert order.patient_fhir_id == ""  # no FHIR-typed PID-3: the MRN is not kept
    assert order.signed_at == datetime.datetime(2026, 12, 6, 16, 10, tzinfo=datetime.UTC)  # -0500 honoured
    assert order.contact_phone == "+1 (804) 555-0123"


def test_no_diagnosis_note_observation_or_z_segment_is_kept_on_the_order(site: EHRSite) -> None:
    for lines in (ORM_CPAP, OML_FIT):
        outcome, _ = handle(site, lines)
        order = Order.objects.get(reference=outcome.order)
        stored = " ".join(str(getattr(order, f.attname)) for f in Order._meta.concrete_fields)
        for text in ("G47.33", "sleep apnea", "snoring", "Observation text", "8302-2", "site specific"):
            assert text not in stored


def test_a_repeat_of_the_same_placer_number_returns_the_same_order(site: EHRSite) -> None:
    first, _ = handle(site, ORM_CPAP)
    again = replace(ORM_CPAP, "MSH", ORM_CPAP[0].replace("MSG00001", "MSG00009"))
    second, ctx = handle(site, again)

    assert (second.code, second.order) == (ACCEPT, first.order)
    assert Order.objects.count() == 1
    assert OutboxMessage.objects.filter(topic="order.signed").count() == 1
    ctx.message.refresh_from_db()
    assert ctx.message.order_reference == first.order


def test_an_unmapped_code_holds_the_order_with_a_reason_naming_it(site: EHRSite) -> None:
    lines = replace(ORM_CPAP, "RQD", "RQD|1|DME-77^Sleep therapy device^99EPIC|||1|EA")
    outcome, _ = handle(site, lines)

    assert outcome.code == ACCEPT
    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.HELD
    assert order.product is None
    assert order.request_system == local_system(site.pk, "99EPIC")
    assert order.hold_reasons == [
        "a catalog mapping of the requested code at this site: add the site's code mapping "
        f"({local_system(site.pk, '99EPIC')}|DME-77)"
    ]
    assert outcome.text == f"Order {outcome.order}."  # the ACK comes before the worker made it: the queue shows it held
    assert not OutboxMessage.objects.filter(topic="order.signed").exists()


def test_a_site_local_code_maps_through_the_sites_own_code_mapping(site: EHRSite) -> None:
    cpap = Product.objects.get(sku="DME-CPAP-STD")
    CodeMapping.objects.create(site=site, system=local_system(site.pk, "99EPIC"), code="DME-77", product=cpap)
    lines = replace(ORM_CPAP, "RQD", "RQD|1|DME-77^Sleep therapy device^99EPIC|||2|EA")
    outcome, _ = handle(site, lines)

    order = Order.objects.get(reference=outcome.order)
    assert (order.status, order.product, order.quantity) == (Order.Status.SIGNED, cpap, 2)


def test_the_alternate_coding_is_tried_when_the_first_is_unmapped(site: EHRSite) -> None:
    lines = replace(ORM_CPAP, "RQD", "RQD|1|DME-77^Sleep therapy device^99EPIC^E0601^CPAP^HCPCS|||1|EA")
    outcome, _ = handle(site, lines)

    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.SIGNED
    assert (order.request_system, order.request_code) == (HCPCS, "E0601")


def test_an_incomplete_address_or_no_email_holds_the_order(site: EHRSite) -> None:
    pid = "PID|1||E1^^^EPIC^MR||DOE^JANE^^^^^L||19800101|F|||^^RICHMOND^VA^23219^USA^H||^PRN^PH^^1^804^5551234"
    outcome, ctx = handle(site, replace(ORM_CPAP, "PID", pid))

    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.HELD
    assert order.hold_reasons == [
        "a complete ship-to address (street, city, state, ZIP): fix the ship-to",
        "the patient's email for the purchase link: add it",
    ]
    assert "PID-11: no usable address (a street line is needed)" in ctx.warnings


def test_the_sites_email_repetition_is_the_email(site: EHRSite) -> None:
    pid = (
        "PID|1||E1^^^EPIC^MR||DOE^JANE^^^^^L||19800101|F|||1 MAIN ST^^RICHMOND^VA^23219^USA^H||"
        "^PRN^PH^^1^804^5551234~^NET^Internet^first@example.org~^NET^Internet^second@example.org"
    )
    outcome, _ = handle(site, replace(ORM_CPAP, "PID", pid), hl7_email_repetition=3)

    assert Order.objects.get(reference=outcome.order).contact_email == "second@example.org"


def test_one_bad_element_costs_only_that_element_with_a_warning_naming_it(site: EHRSite) -> None:
    pid = (
        "PID|1||E1^^^EPIC^MR||DOE^JANE^^^^^L||19800101|F|||1 MAIN ST^^RICHMOND^VA^23219^USA^H||"
        "^PRN^PH^^1^804^5551234~^NET^Internet^not-an-email"
    )
    lines = replace(replace(ORM_CPAP, "PID", pid), "RQD", "RQD|1|E0601^CPAP^HCPCS|||lots|EA")
    outcome, ctx = handle(site, lines)

    order = Order.objects.get(reference=outcome.order)
    assert order.contact_email == ""
    assert order.contact_phone == "+1 (804) 555-1234"
    assert order.quantity == 1  # the catalog default
    assert order.patient_name == "JANE DOE"
    assert "PID-13 (the site's email repetition): email is not a valid address and was not used" in ctx.warnings
    assert any(w.startswith("RQD-5, TQ1-2, ORC-7 or OBR-27: RQD-5 quantity is not a number") for w in ctx.warnings)
    assert not any("jane" in w.lower() or "not-an-email" in w for w in ctx.warnings)  # names, never values


@pytest.mark.parametrize(
    ("lines", "location"),
    [
        (replace(ORM_CPAP, "PID", None), "PID"),
        ([line for line in ORM_CPAP if not line.startswith(("ORC", "RQD"))], "ORC"),
        (replace(ORM_CPAP, "RQD", None), "RQD"),
        (replace(OML_FIT, "OBR", None), "OBR"),
        (replace(ORM_CPAP, "ORC", ORC_CPAP.replace("PLC-1001^EPIC", "")), "ORC-2"),
        (replace(ORM_CPAP, "PID", "PID|1||E1^^^EPIC^MR||||19800101"), "PID-5"),
        (replace(ORM_CPAP, "PID", "PID|1||E1^^^EPIC^MR||DOE^JANE||1980"), "PID-7"),
        (replace(ORM_CPAP, "ORC", ORC_CPAP.split("|||1234567893")[0]), "ORC-12"),
        (replace(ORM_CPAP, "RQD", "RQD|1|^CPAP^HCPCS|||1"), "RQD-2"),
        (replace(OML_FIT, "OBR", "OBR|1|PLC-2002^EPIC"), "OBR-4"),
    ],
)
def test_a_missing_segment_or_required_field_is_ae_naming_it_and_creates_nothing(
    site: EHRSite, lines: list[str], location: str
) -> None:
    outcome, ctx = handle(site, lines)

    assert (outcome.code, outcome.location) == (ERROR, location), outcome
    assert location.split("-")[0] in outcome.text
    assert "missing" in outcome.text  # ERR-3 101, required field missing
    assert not Order.objects.exists()
    assert IntakeMessage.objects.filter(pk=ctx.message.pk).exists()  # the message itself stays
    assert AuditEvent.objects.filter(action="order.hl7_refused", outcome=location).exists()


@pytest.mark.parametrize("control", ["XO", "SC", "DC", ""])
def test_any_order_control_but_nw_and_ca_is_ae_naming_orc_1(site: EHRSite, control: str) -> None:
    outcome, _ = handle(site, replace(ORM_CPAP, "ORC", "ORC|" + control + ORC_CPAP.removeprefix("ORC|NW")))

    assert (outcome.code, outcome.location) == (ERROR, "ORC-1")
    assert "amendments are not supported: cancel and re-order" in outcome.text
    assert not Order.objects.exists()


def cancel_lines() -> list[str]:
    lines = replace(ORM_CPAP, "ORC", "CA".join(ORC_CPAP.split("NW", 1)))
    return replace(lines, "MSH", ORM_CPAP[0].replace("MSG00001", "MSG00002"))


def test_ca_cancels_the_order_through_the_cancel_path(site: EHRSite) -> None:
    created, _ = handle(site, ORM_CPAP)
    outcome, ctx = handle(site, cancel_lines())

    assert (outcome.code, outcome.order) == (ACCEPT, created.order)
    order = Order.objects.get(reference=created.order)
    assert order.status == Order.Status.CANCELLED
    assert OutboxMessage.objects.filter(topic="order.cancelled", subject=f"Order/{order.pk}").exists()
    assert AuditEvent.objects.filter(action="order.cancel", target=f"Order/{order.pk}").exists()
    ctx.message.refresh_from_db()
    assert ctx.message.order_reference == order.reference
    again, _ = handle(site, replace(cancel_lines(), "MSH", ORM_CPAP[0].replace("MSG00001", "MSG00003")))
    assert (again.code, again.order) == (ACCEPT, created.order)  # idempotent


def test_an_nw_is_acknowledged_before_its_order_is_made_and_a_ca_right_behind_it_still_cancels_it(
    site: EHRSite,
) -> None:
    """The ACK waits only for the stored message and its ``order.hl7_received`` row (ADR 0024); a CA that arrives
    before the worker ran makes the order first, then cancels it, and the worker later changes nothing."""
    parsed, ctx = intake_context(site, message_text(ORM_CPAP))
    accepted = order_hl7_handle(parsed, ctx)
    assert accepted.code == ACCEPT and accepted.order.startswith("HC-")
    assert not Order.objects.exists()
    waiting = OutboxMessage.objects.get(topic=TOPIC_HL7_ORDER)
    assert waiting.status == OutboxMessage.Status.PENDING and "1001" not in waiting.subject  # a digest, no number

    cancelled, _ = handle(site, cancel_lines())

    assert (cancelled.code, cancelled.order) == (ACCEPT, accepted.order)
    order = Order.objects.get()
    assert (order.reference, order.status) == (accepted.order, Order.Status.CANCELLED)
    waiting.refresh_from_db()
    assert waiting.status == OutboxMessage.Status.DONE  # delivered after: found the order, made nothing
    assert Order.objects.count() == 1 and order.events.filter(to_status=Order.Status.CANCELLED).count() == 1


def test_ca_of_a_held_order_cancels_it(site: EHRSite) -> None:
    lines = replace(ORM_CPAP, "RQD", "RQD|1|DME-77^Sleep therapy device^99EPIC|||1|EA")
    created, _ = handle(site, lines)
    cancel = replace(cancel_lines(), "RQD", "RQD|1|DME-77^Sleep therapy device^99EPIC|||1|EA")
    outcome, _ = handle(site, cancel)

    assert outcome.code == ACCEPT
    assert Order.objects.get(reference=created.order).status == Order.Status.CANCELLED


def test_ca_once_shipped_is_ae_naming_orc_1_and_saying_it_shipped(site: EHRSite) -> None:
    created, _ = handle(site, ORM_CPAP)
    Order.objects.filter(reference=created.order).update(status=Order.Status.FULFILLED, fulfillment_status="shipped")
    outcome, _ = handle(site, cancel_lines())

    assert (outcome.code, outcome.location) == (ERROR, "ORC-1")
    assert "already shipped" in outcome.text
    assert Order.objects.get(reference=created.order).status == Order.Status.FULFILLED


def test_ca_of_an_unknown_placer_number_is_ae_naming_orc_2(site: EHRSite) -> None:
    outcome, _ = handle(site, cancel_lines())

    assert (outcome.code, outcome.location) == (ERROR, "ORC-2")


def test_a_bad_group_refuses_the_whole_message_and_keeps_no_order(site: EHRSite) -> None:
    second = [ORC_CPAP.replace("PLC-1001", "PLC-1002"), "RQD|1|^no code^HCPCS|||1"]
    outcome, _ = handle(site, [*ORM_CPAP, *second])

    assert (outcome.code, outcome.location) == (ERROR, "RQD-2")
    assert not Order.objects.exists()


def test_two_order_groups_make_two_orders(site: EHRSite) -> None:
    second = [ORC_CPAP.replace("PLC-1001", "PLC-1002"), "RQD|1|E0607^Glucose monitor^HCPCS|||1|EA"]
    outcome, _ = handle(site, [*ORM_CPAP, *second])

    assert outcome.code == ACCEPT
    assert sorted(Order.objects.values_list("placer_order_number", flat=True)) == ["PLC-1001", "PLC-1002"]


def test_an_older_version_with_obr_in_an_orm_and_msh_7_as_the_signing_time_is_read(site: EHRSite) -> None:
    lines = [
        "MSH|^~\\&|EPIC|SANDBOXHOSP|HC|HC|200612061015||ORM^O01|MSG3|P|2.3",
        "PID|1||E1^^^EPIC^MR||DOE^JANE||19800101|F|||1 MAIN ST^^RICHMOND^VA^23219^USA||(804)555-1234~jane@example.org",
        "ORC|NW|PLC-9||||||||||1234567893^HALE^ANN^^^^^^NPI",
        "OBR|1|PLC-9||4548-4^HbA1c^LN|||||||||||||||||||||||^^^^^R",
    ]
    outcome, _ = handle(site, lines)

    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.SIGNED
    assert order.product == Product.objects.get(sku="KIT-HBA1C")
    assert order.contact_email == "jane@example.org"  # XTN-1 with an @ (v2.3)
    assert order.contact_phone == "(804)555-1234"
    assert order.signed_at == datetime.datetime(2006, 12, 6, 10, 15, tzinfo=datetime.UTC)


def test_a_signing_time_in_the_future_is_not_used(site: EHRSite) -> None:
    lines = replace(ORM_CPAP, "ORC", ORC_CPAP.replace("20261206101200", "29991231235900"))
    outcome, ctx = handle(site, lines)

    assert "ORC-9 or MSH-7: ORC-9 time is in the future and was not used" in ctx.warnings
    assert Order.objects.get(reference=outcome.order).signed_at == datetime.datetime(
        2026, 12, 6, 10, 15, tzinfo=datetime.UTC
    )  # MSH-7


def test_escaped_separators_are_unescaped_in_what_is_read(site: EHRSite) -> None:
    pid = ORM_CPAP[1].replace("ROOSEVELT^THEODOR", "O\\S\\BRIEN^THEODOR")
    outcome, _ = handle(site, replace(ORM_CPAP, "PID", pid))

    assert Order.objects.get(reference=outcome.order).patient_name == "MR THEODOR ALAN O^BRIEN"


def test_the_field_table_lists_each_hl7_element_read() -> None:
    table = dict(hl7_fields())

    assert table["patient_name"] == "PID-5"
    assert table["patient_birth_date"] == "PID-7"
    assert table["ship_to"] == "PID-11"
    assert table["payer_member_id"] == "IN1-36 (else IN1-49)"
    assert table["practitioner_npi"].startswith("ORC-12")
    assert table["signed_at"] == "ORC-9 or MSH-7"
    assert table["request_code"] == "RQD-2 or OBR-4"
    assert not any(element.startswith(("DG1", "NTE", "OBX", "Z")) for element in table.values())


def test_segment_helper_places_fields() -> None:
    assert segment("IN1", {1: "1", 4: "X"}) == "IN1|1|||X"


def test_a_bad_address_is_skipped_for_the_next_usable_one_and_no_in1_means_no_payer(site: EHRSite) -> None:
    pid = (
        "PID|1||E1^^^EPIC^MR||DOE^JANE^^^^^L||19800101|F|||9 OLD RD^^NORFOLK^VA^23510^USA^BA~"
        "1 MAIN ST^^RICHMOND^VA^23219^USA^M||^NET^Internet^jane@example.org"
    )
    lines = [line for line in replace(ORM_CPAP, "PID", pid) if not line.startswith("IN1")]
    outcome, ctx = handle(site, lines)

    order = Order.objects.get(reference=outcome.order)
    assert order.ship_to["line"] == ["1 MAIN ST"] and order.ship_to["city"] == "RICHMOND"
    assert (order.payer_name, order.payer_member_id) == ("", "")
    assert not any(w.startswith("IN1") for w in ctx.warnings)


def test_an_ordering_provider_without_a_usable_npi_is_kept_by_its_own_id_with_a_warning(site: EHRSite) -> None:
    orc = ORC_CPAP.replace("1234567893^HALE^ANN^^^DR^MD^^NPI^L^^^NPI", "12345^HALE^ANN^^^^^^NPI")
    outcome, ctx = handle(site, replace(ORM_CPAP, "ORC", orc))

    order = Order.objects.get(reference=outcome.order)
    assert (order.practitioner_npi, order.practitioner_name) == ("", "ANN HALE")
    assert order.signed_by == "NPI|12345"
    assert "ORC-12 (XCN-1 when XCN-9 or XCN-13 is NPI): NPI is not ten digits and was not used" in ctx.warnings


def test_a_z_segment_the_site_does_not_list_is_named_in_a_warning_and_a_listed_one_passes_silently(
    site: EHRSite,
) -> None:
    lines = [*ORM_CPAP, "ZPV|1|something local", "ZOR|1|other"]
    outcome, ctx = handle(site, lines, hl7_ignore_segments="zor")

    assert outcome.code == ACCEPT
    assert [w for w in ctx.warnings if w.startswith("Z")] == [
        "ZPV: a Z-segment not in this site's segments to ignore; it was not read."
    ]
