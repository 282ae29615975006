"""The order's field table (healthcommerce/orders/fields.py) and what is derived from it: pre-fill's ``_elements``
and the default scopes as they were, the signed content unchanged (already-signed hashes still verify), and the
system check that ties PHI rows to encrypted columns (orders/checks.py)."""

import dataclasses
import hashlib
import json
from datetime import date
from typing import Any

import pytest
from django.core import checks

from healthcommerce.catalog.models import Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.orders import fields
from healthcommerce.orders.checks import order_fields_check
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import content_hash, order_missing_fields

# What pre-fill asked for and the default scopes before the table (issue 19): the table must keep them.
ELEMENTS_BEFORE = {
    "Patient": "name,birthDate,address,telecom,communication",
    "DeviceRequest": "status,intent,code,subject,authoredOn,requester,insurance,parameter",
    "ServiceRequest": "status,intent,code,subject,authoredOn,requester,insurance,quantity",
    "Coverage": "status,beneficiary,payor,class,subscriberId",
    "Practitioner": "name,identifier",
}
TABLE = fields.FIELDS
SCOPES_BEFORE = (
    "launch openid fhirUser patient/Patient.rs patient/DeviceRequest.rs patient/ServiceRequest.rs "
    "patient/Coverage.rs user/Practitioner.rs"
)


def content_before(order: Order) -> dict[str, Any]:
    """``orders.services.order_content`` as it was written by hand before the table (issue 19)."""
    product = order.product
    return {
        "reference": order.reference,
        "version": order.version,
        "site": order.site.iss,
        "patient": {
            "fhir_id": order.patient_fhir_id,
            "name": order.patient_name,
            "birth_date": str(order.patient_birth_date),
        },
        "request": {"reference": order.request_reference, "system": order.request_system, "code": order.request_code},
        "item": {
            "sku": product.sku if product else "",
            "hcpcs": product.hcpcs_code if product else "",
            "quantity": order.quantity,
        },
        "order_date": order.order_date.isoformat(),
        "practitioner": {
            "reference": order.practitioner_reference,
            "name": order.practitioner_name,
            "npi": order.practitioner_npi,
        },
        "ship_to": order.ship_to,
        "contact": {"email": order.contact_email, "phone": order.contact_phone},
        "payer": {"name": order.payer_name, "member_id": order.payer_member_id},
    }


@pytest.fixture
def site(db: None) -> EHRSite:
    return EHRSite.objects.create(name="Table clinic", iss="https://table.example/fhir", client_id="hc-table")


@pytest.fixture
def complete(site: EHRSite) -> Order:
    product = Product.objects.create(sku="CPAP-1", name="CPAP", kind=Product.Kind.DEVICE, hcpcs_code="E0601")
    return Order.objects.create(
        site=site,
        patient_fhir_id="pat014",
        request_reference="DeviceRequest/devreq021",
        request_system="https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        request_code="E0601",
        product=product,
        quantity=2,
        order_date=date(2026, 11, 20),
        patient_name="Theodor Alan Roosevelt",
        patient_birth_date=date(1946, 7, 4),
        practitioner_reference="Practitioner/pra1234",
        practitioner_name="Dr. Jane Betty Doe",
        practitioner_npi="1122334455",
        ship_to={"line": ["7525 Colshire Dr"], "city": "McLean", "state": "VA", "postal_code": "22102"},
        contact_email="teddy@example.org",
        contact_phone="+1 703 555 0100",
        payer_name="Medicare Part B",
        payer_member_id="10A3D58WH1600",
    )


def test_pre_fill_asks_for_the_same_elements_and_a_new_site_for_the_same_scopes() -> None:
    assert {resource: fields.elements(resource) for resource in fields.SOURCES} == ELEMENTS_BEFORE
    assert default_scopes() == SCOPES_BEFORE
    assert EHRSite().scopes == SCOPES_BEFORE


def test_an_existing_site_keeps_its_stored_scopes(site: EHRSite) -> None:
    EHRSite.objects.filter(pk=site.pk).update(scopes="launch openid patient/Patient.rs")
    assert EHRSite.objects.get(pk=site.pk).scopes == "launch openid patient/Patient.rs"


def test_the_signed_content_and_its_hash_are_what_they_were(complete: Order, site: EHRSite) -> None:
    blank = Order.objects.create(site=site, patient_fhir_id="pat013", order_date=date(2026, 11, 21))
    for order in (complete, blank):
        before = json.dumps(content_before(order), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert fields.order_content(order) == content_before(order)
        assert content_hash(order) == hashlib.sha256(before.encode()).hexdigest()


def test_what_signing_needs_is_said_in_form_order(site: EHRSite) -> None:
    blank = Order.objects.create(site=site, patient_fhir_id="pat013", order_date=date(2026, 11, 21), quantity=0)
    assert order_missing_fields(blank) == [
        ("product", "a product (the requested code is not in the catalog: pick one)"),
        ("quantity", "a quantity of at least 1"),
        ("patient_name", "the patient's name"),
        ("patient_birth_date", "the patient's date of birth"),
        ("line1", "a complete ship-to address"),
        ("contact_email", "the patient's email for the purchase link"),
        ("", "the signing practitioner (launch as a practitioner)"),
    ]
    blank.patient_birth_date = date(1850, 1, 1)
    assert ("patient_birth_date", "a real date of birth (the one on file is in the future or before 1900)") in (
        order_missing_fields(blank)
    )


def test_the_purge_blanks_exactly_the_encrypted_phi_columns() -> None:
    assert fields.phi_blank() == {
        "patient_name": "",
        "patient_birth_date": None,
        "ship_to": {},
        "contact_email": "",
        "contact_phone": "",
        "payer_member_id": "",
        "patient_ship_to": {},
        "ehr_ship_to": {},
    }


def test_the_table_agrees_with_the_order_model() -> None:
    assert order_fields_check() == []


def _with(name: str, **changes: Any) -> tuple[fields.OrderField, ...]:
    return tuple(dataclasses.replace(row, **changes) if row.name == name else row for row in TABLE)


def test_a_phi_row_on_a_plain_column_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields, "FIELDS", _with("payer_name", phi=fields.Phi.ENCRYPTED))

    errors = order_fields_check()
    assert [(e.id, e.level) for e in errors] == [("orders.E002", checks.ERROR)]
    assert "Order.payer_name" in errors[0].msg and "plain text" in errors[0].msg
    # Registered by the orders app: `manage.py check` (and every start) runs it.
    assert "orders.E002" in {e.id for e in checks.run_checks(tags=[checks.Tags.models])}


def test_an_encrypted_column_without_a_phi_row_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields, "FIELDS", _with("contact_phone", phi=fields.Phi.NO))
    assert [(e.id, "Order.contact_phone" in e.msg) for e in order_fields_check()] == [("orders.E003", True)]

    monkeypatch.setattr(fields, "FIELDS", tuple(row for row in TABLE if row.name != "ehr_ship_to"))
    assert [(e.id, "Order.ehr_ship_to" in e.msg) for e in order_fields_check()] == [("orders.E003", True)]


def test_a_row_naming_no_column_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields, "FIELDS", (*TABLE, fields.OrderField("patient_gender")))
    assert [e.id for e in order_fields_check()] == ["orders.E001"]


def test_a_pre_filled_text_longer_than_its_column_is_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = fields.OrderField("contact_phone", prefill=fields.Prefilled("Patient", ("gender",), lambda d, n: "9" * 41))
    monkeypatch.setattr(fields, "FIELDS", (row,))
    notes = fields.extract.Notes("Patient")

    assert fields.prefill_values("Patient", {}, notes) == {"contact_phone": ""}
    assert notes.warnings == ["Patient: contact phone is longer than 40 characters and was not used"]
