"""Orders signed in the EHR (orders/intake.py) and the admin's intake queue (orders/intake_admin.py): held orders are
completed by staff (contact, ship-to, the site's code mapping) and released, never changing item, quantity or
signer; each decision is audited; support sees the PHI masked; the purge blanks the raw message with the order."""

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import HCPCS, CodeMapping, Payer, Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.orders.errors import OrderImmutable, OrderIncomplete
from healthcommerce.orders.fields import order_content
from healthcommerce.orders.hl7 import order_hl7_handle
from healthcommerce.orders.hl7read import local_system
from healthcommerce.orders.intake import (
    IntakeOrder,
    IntakeRequest,
    IntakeSigner,
    order_from_intake,
    order_intake_cancel,
    order_intake_release,
    order_intake_update,
)
from healthcommerce.orders.models import Order, OrderSite, Writeback
from healthcommerce.orders.services import content_hash, orders_phi_purge
from healthcommerce.outbox.models import OutboxMessage
from tests.orders.hl7_samples import ORM_CPAP, hl7_orders_deliver, intake_context, message_text, replace
from tests.staff import staff_login, staff_user

pytestmark = pytest.mark.django_db

QUEUE = "/admin/orders/heldorder/"
UNMAPPED_RQD = "RQD|1|DME-77^Sleep therapy device^99EPIC|||1|EA"
NO_CONTACT_PID = "PID|1||E1^^^EPIC^MR||DOE^JANE^^^^^L||19800101|F|||^^RICHMOND^VA^23219^USA^H"
SIGNED_AT = datetime.datetime(2026, 12, 6, 9, 30, tzinfo=datetime.UTC)


@pytest.fixture
def site() -> EHRSite:
    return EHRSite.objects.create(name="Sandbox Hospital", iss="https://ehr.sandbox.example/fhir", client_id="hc")


def held(site: EHRSite, lines: list[str]) -> Order:
    parsed, ctx = intake_context(site, message_text(lines))
    outcome = order_hl7_handle(parsed, ctx)
    hl7_orders_deliver()
    order = Order.objects.get(reference=outcome.order)
    assert order.status == Order.Status.HELD
    return order


def fhir_incoming(site: EHRSite, **overrides: object) -> IntakeOrder:
    """What a FHIR notification would bring (H3's path): a DeviceRequest for a CPAP signed by a practitioner."""
    values = {
        "patient_fhir_id": "pat014",
        "patient_name": "Theodor Alan Roosevelt",
        "patient_birth_date": datetime.date(1946, 7, 4),
        "ship_to": {"line": ["7525 Colshire Dr"], "city": "McLean", "state": "VA", "postal_code": "22102"},
        "contact_email": "teddy@example.org",
        "payer_name": "Medicare Part B",
        "not_a_column_it_may_fill": "ignored",
        "status": "signed",
    }
    fields: dict[str, object] = {
        "site": site,
        "source": Order.Source.FHIR_NOTIFICATION,
        "placer_order_number": "devreq021",
        "request": IntakeRequest(system=HCPCS, code="E0601", display="CPAP", reference="DeviceRequest/devreq021"),
        "signer": IntakeSigner(reference="Practitioner/pra1234", name="Dr. Ann Hale", npi="1234567893"),
        "signed_at": SIGNED_AT,
        "values": values,
    }
    return IntakeOrder(**{**fields, **overrides})  # type: ignore[arg-type]


def test_a_complete_fhir_intake_is_signed_with_the_ehrs_signer_and_time_and_sent_on(site: EHRSite) -> None:
    order = order_from_intake(fhir_incoming(site))

    assert order.status == Order.Status.SIGNED
    assert order.source == Order.Source.FHIR_NOTIFICATION
    assert (order.signed_by, order.signed_at) == ("Practitioner/pra1234", SIGNED_AT)
    assert order.request_reference == "DeviceRequest/devreq021"
    assert order.product == Product.objects.get(sku="DME-CPAP-STD")
    assert order.content_hash == content_hash(order)
    assert order.payer_name == "Medicare Part B"
    rows = OutboxMessage.objects.filter(subject=f"Order/{order.pk}")
    assert set(rows.values_list("topic", flat=True)) == {"order.signed"}  # write-back is off at this site


def test_an_intake_order_takes_the_payer_its_coverage_names_or_says_it_was_not_recognised(site: EHRSite) -> None:
    cms = Payer.objects.create(site=site, name="Medicare", plan_type="medicare", payer_id="CMS", identifiers="CMS")
    keyed = fhir_incoming(site, values={**fhir_incoming(site).values, "payer_keys": ["CMS"]})

    matched = order_from_intake(keyed)
    typo = order_from_intake(fhir_incoming(site, placer_order_number="typo", values={
        **fhir_incoming(site).values, "payer_name": "Medicar"}))  # fmt: skip

    assert (matched.payer, matched.coverage_status, matched.payer_keys) == (cms, "matched", ["CMS"])
    assert order_content(matched)["payer"] | {"member_id": ""} == {
        "name": "Medicare",
        "payer_id": "CMS",
        "member_id": "",
    }
    # signed in the EHR, so not held for it: the patient's quote says the clinic will confirm the coverage
    assert (typo.status, typo.payer, typo.coverage_status) == (Order.Status.SIGNED, None, "not_recognised")


def test_a_site_that_writes_back_gets_the_writeback_only_when_the_patient_is_known(site: EHRSite) -> None:
    OrderSite.objects.update_or_create(site=site, defaults={"writeback": Writeback.COMMUNICATION})
    known = order_from_intake(fhir_incoming(site))
    unknown_values = {**fhir_incoming(site).values, "patient_fhir_id": ""}
    unknown = order_from_intake(fhir_incoming(site, placer_order_number="other", values=unknown_values))

    assert OutboxMessage.objects.filter(topic="order.writeback", subject=f"Order/{known.pk}").exists()
    assert not OutboxMessage.objects.filter(topic="order.writeback", subject=f"Order/{unknown.pk}").exists()


def test_a_repeat_for_the_same_placer_number_returns_the_existing_order_and_is_audited(site: EHRSite) -> None:
    first = order_from_intake(fhir_incoming(site))
    second = order_from_intake(fhir_incoming(site, signed_at=timezone.now()))

    assert second.pk == first.pk
    assert Order.objects.count() == 1
    assert AuditEvent.objects.filter(action="order.intake", outcome="duplicate").count() == 1


def test_an_intake_without_a_signer_is_held_and_cannot_be_released(site: EHRSite) -> None:
    order = order_from_intake(fhir_incoming(site, signer=IntakeSigner(reference="", name="")))

    assert order.status == Order.Status.HELD
    assert order.hold_reasons == [
        "the ordering provider's signature in the EHR: cancel it here and re-order in the EHR"
    ]
    with pytest.raises(OrderIncomplete):
        order_intake_release(order=order, actor="admin:ops")
    assert AuditEvent.objects.filter(action="order.intake_release", outcome="intake_incomplete").exists()


def test_staff_fix_contact_and_ship_to_then_release_and_the_order_proceeds(site: EHRSite) -> None:
    order = held(site, replace(ORM_CPAP, "PID", NO_CONTACT_PID))
    signed_at, signer = order.signed_at, order.signed_by

    with pytest.raises(OrderIncomplete):
        order_intake_release(order=order, actor="admin:ops")
    address = {"line": ["1 Main St"], "city": "Richmond", "state": "VA", "postal_code": "23219", "country": "US"}
    changes = {"contact_email": "jane@example.org", "ship_to": address, "quantity": 9, "product": None}
    order_intake_update(order=order, actor="admin:ops", changes=changes)
    released = order_intake_release(order=order, actor="admin:ops")

    assert released.status == Order.Status.SIGNED
    assert (released.signed_at, released.signed_by, released.quantity) == (signed_at, signer, 1)
    assert released.product == Product.objects.get(sku="DME-CPAP-STD")
    assert released.hold_reasons == []
    assert released.content_hash == content_hash(released)
    assert OutboxMessage.objects.filter(topic="order.signed", subject=f"Order/{order.pk}").exists()
    edit = AuditEvent.objects.get(action="order.intake_edit", target=f"Order/{order.pk}")
    assert edit.detail == {"fields": ["contact_email", "ship_to"]}  # names only; item and quantity untouched
    assert AuditEvent.objects.filter(action="order.intake_release", outcome="success").exists()
    with pytest.raises(OrderImmutable):
        order_intake_update(order=order, actor="admin:ops", changes={"contact_email": "x@example.org"})


def test_an_unmapped_item_is_resolved_from_the_sites_new_mapping_on_release(site: EHRSite) -> None:
    order = held(site, replace(ORM_CPAP, "RQD", UNMAPPED_RQD))
    cpap = Product.objects.get(sku="DME-CPAP-STD")
    CodeMapping.objects.create(site=site, system=local_system(site.pk, "99EPIC"), code="DME-77", product=cpap)

    released = order_intake_release(order=order, actor="admin:ops")

    assert (released.status, released.product, released.quantity) == (Order.Status.SIGNED, cpap, 1)


def test_cancel_by_placer_number_answers_an_outcome(site: EHRSite) -> None:
    order = order_from_intake(fhir_incoming(site))

    outcome = order_intake_cancel(site=site, placer_order_number="devreq021", actor="hl7:EPIC")
    assert (outcome.code, outcome.order) == ("AA", order.reference)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.FULFILLED)
    order2 = order_from_intake(fhir_incoming(site, placer_order_number="devreq022"))
    Order.objects.filter(pk=order2.pk).update(fulfillment_status="delivered", status=Order.Status.FULFILLED)
    refused = order_intake_cancel(site=site, placer_order_number="devreq022", actor="hl7:EPIC")
    assert (refused.code, refused.location) == ("AE", "ORC-1")
    assert "already shipped" in refused.text
    assert AuditEvent.objects.filter(action="order.intake_cancel", outcome="already_shipped").exists()


# --- the admin's intake queue ------------------------------------------------------------------------------------


def test_the_intake_queue_lists_held_orders_only_with_their_reasons(site: EHRSite, admin_client: Client) -> None:
    order = held(site, replace(ORM_CPAP, "RQD", UNMAPPED_RQD))
    signed = order_from_intake(fhir_incoming(site))

    page = admin_client.get(QUEUE).content.decode()
    assert order.reference in page and signed.reference not in page
    assert "add the site&#x27;s code mapping" in page


def test_the_order_page_links_to_the_prefilled_mapping_and_shows_item_quantity_signer_read_only(
    site: EHRSite, admin_client: Client
) -> None:
    order = held(site, replace(ORM_CPAP, "RQD", UNMAPPED_RQD))

    page = admin_client.get(f"{QUEUE}{order.pk}/change/").content.decode()
    assert "/admin/catalog/codemapping/add/?site=" in page and "code=DME-77" in page
    assert 'name="contact_email"' in page and 'name="line1"' in page
    for name in ("quantity", "product", "practitioner_name", "signed_by", "request_code"):
        assert f'name="{name}"' not in page
    assert 'name="_release"' in page
    assert AuditEvent.objects.filter(action="admin.phi.view", target=f"HeldOrder/{order.pk}").exists()
    added = admin_client.get(
        "/admin/catalog/codemapping/add/", {"site": site.pk, "system": order.request_system, "code": "DME-77"}
    ).content.decode()
    assert 'value="DME-77"' in added


def test_staff_fix_the_email_and_release_from_the_page(site: EHRSite, admin_client: Client) -> None:
    lines = replace(ORM_CPAP, "PID", NO_CONTACT_PID.replace("^^RICHMOND", "1 MAIN ST^^RICHMOND"))
    order = held(site, lines)
    form = {
        "contact_email": "jane@example.org",
        "contact_phone": "",
        "line1": "1 MAIN ST",
        "line2": "",
        "city": "RICHMOND",
        "state": "VA",
        "postal_code": "23219",
        "quantity": "7",
        "_release": "Save and release",
    }
    response = admin_client.post(f"{QUEUE}{order.pk}/change/", form)

    assert response.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.contact_email, order.quantity) == (Order.Status.SIGNED, "jane@example.org", 1)
    assert AuditEvent.objects.filter(action="order.intake_edit", target=f"Order/{order.pk}").exists()
    assert AuditEvent.objects.filter(action="order.intake_release", target=f"Order/{order.pk}").exists()


def test_the_release_action_reports_what_is_still_missing(site: EHRSite, admin_client: Client) -> None:
    order = held(site, replace(ORM_CPAP, "RQD", UNMAPPED_RQD))

    response = admin_client.post(QUEUE, {"action": "release_orders", "_selected_action": [order.pk]}, follow=True)

    assert "Still missing" in response.content.decode()
    order.refresh_from_db()
    assert order.status == Order.Status.HELD


def test_support_sees_the_queue_with_phi_masked_and_no_contact_fields(site: EHRSite, django_user_model: object) -> None:
    order = held(site, replace(ORM_CPAP, "RQD", UNMAPPED_RQD))
    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))

    page = client.get(f"{QUEUE}{order.pk}/change/").content.decode()
    assert page.count("(hidden)") >= 3
    assert "ROOSEVELT" not in page and "teddy@example.org" not in page and "COLSHIRE" not in page
    assert 'name="contact_email"' not in page
    assert "code=DME-77" in page  # support may still add the mapping and release


# --- retention ------------------------------------------------------------------------------------------------


def test_the_phi_purge_blanks_the_raw_message_of_purged_orders_only(site: EHRSite, settings: object) -> None:
    parsed, ctx = intake_context(site, message_text(ORM_CPAP))
    reference = order_hl7_handle(parsed, ctx).order
    hl7_orders_deliver()
    order = Order.objects.get(reference=reference)
    other_lines = replace(ORM_CPAP, "MSH", ORM_CPAP[0].replace("MSG00001", "MSG00002"))
    other_lines = replace(other_lines, "ORC", next(x for x in ORM_CPAP if x.startswith("ORC|")).replace("1001", "9"))
    parsed, other_ctx = intake_context(site, message_text(other_lines))
    order_hl7_handle(parsed, other_ctx)
    hl7_orders_deliver()
    long_ago = timezone.now() - datetime.timedelta(days=3650)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED, updated_at=long_ago)

    assert orders_phi_purge() == 1

    purged = IntakeMessage.objects.get(pk=ctx.message.pk)
    assert purged.raw == "" and purged.raw_purged_at is not None
    assert purged.order_reference == order.reference  # the record of what came stays
    kept = IntakeMessage.objects.get(pk=other_ctx.message.pk)
    assert kept.raw.startswith("MSH|") and kept.raw_purged_at is None


def test_a_request_not_signed_in_the_ehr_is_held_unsigned_until_a_repeat_brings_the_signature(site: EHRSite) -> None:
    held_order = order_from_intake(fhir_incoming(site, signed_in_ehr=False))

    assert held_order.status == Order.Status.HELD
    assert (held_order.signed_by, held_order.signed_at) == ("", None)
    assert held_order.practitioner_name == "Dr. Ann Hale"  # the requester, kept
    assert held_order.hold_reasons == [
        "the ordering provider's signature in the EHR: it is released when the EHR signs it"
    ]
    with pytest.raises(OrderIncomplete):
        order_intake_release(order=held_order, actor="admin:ops")
    assert order_from_intake(fhir_incoming(site, signed_in_ehr=False)).status == Order.Status.HELD

    signed = order_from_intake(fhir_incoming(site))

    assert signed.pk == held_order.pk
    assert (signed.status, signed.signed_by, signed.signed_at) == (
        Order.Status.SIGNED,
        "Practitioner/pra1234",
        SIGNED_AT,
    )
    assert signed.hold_reasons == []
    assert OutboxMessage.objects.filter(topic="order.signed", subject=f"Order/{signed.pk}").count() == 1
    assert AuditEvent.objects.filter(action="order.intake", outcome="signed_in_ehr_signed").exists()
