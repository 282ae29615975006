"""Pre-filled order form from real FHIR reads against the sandbox EHR."""

import pytest
from django.test import Client

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import Launch
from healthcommerce.orders.models import Order
from tests.conftest import complete_launch

pytestmark = pytest.mark.django_db


def open_form(client, sandbox, **kwargs):
    result = complete_launch(client, sandbox, **kwargs)
    assert result.launch_id, getattr(result.response, "content", b"")[:500]
    return result.launch_id, client.get(f"/o/{result.launch_id}/", follow=True)


def test_it_prefills_the_cpap_order_for_pat014(client, ehr_site, sandbox_ehr):
    launch_id, page = open_form(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert page.status_code == 200
    html = page.content.decode()
    order = Order.objects.get(launch_id=launch_id)
    assert order.request_code == "E0601"
    assert order.product.sku == "DME-CPAP-STD"
    assert "E0601" in html and "CPAP" in html
    assert order.patient_name == "Theodor Alan Roosevelt"
    assert str(order.patient_birth_date) == "1946-07-04"
    assert order.ship_to == {
        "line": ["7525 Colshire Dr"],
        "city": "McLean",
        "state": "VA",
        "postal_code": "22102",
        "country": "US",
    }
    assert "7525 Colshire Dr" in html and "McLean" in html
    assert order.payer_name == "Medicare Part B" and order.payer_member_id == "10A3D58WH1600"
    assert order.practitioner_name == "Dr. Jane Betty Doe" and order.practitioner_npi == "1122334455"
    assert "1122334455" in html
    assert "Theodor Alan Roosevelt" in html  # patient banner (need_patient_banner)


def test_it_audits_every_fhir_read(client, ehr_site, sandbox_ehr):
    launch_id, _ = open_form(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    targets = set(AuditEvent.objects.filter(action="fhir.read").values_list("target", flat=True))
    assert targets == {
        "Patient/pat014",
        "Coverage?beneficiary=pat014",
        "DeviceRequest/devreq021",
        "Practitioner/pra1234",
    }
    assert Launch.objects.get(pk=launch_id).prefill_outcomes == dict.fromkeys(
        ["Patient", "Coverage", "DeviceRequest/devreq021", "Practitioner"], "success"
    )


def test_without_a_named_request_it_offers_every_pending_request(client, ehr_site, sandbox_ehr):
    launch_id, page = open_form(client, sandbox_ehr, patient="pat013")
    codes = set(Order.objects.filter(launch_id=launch_id).values_list("request_code", flat=True))
    assert {"E0424", "E0250", "E0601", "E0607"} <= codes
    assert page.status_code == 200 and b"Orders to review" in page.content


def test_an_unmapped_kit_code_is_shown_plainly_and_cannot_be_signed(client, ehr_site, sandbox_ehr):
    launch_id, page = open_form(
        client,
        sandbox_ehr,
        patient="0b779465-6db2-4931-bc13-5f6ff8e8c4d4",
        practitioner="pra1234",
        request="ServiceRequest/kit-sr-fit-goldner-unmapped",
    )
    order = Order.objects.get(launch_id=launch_id)
    assert order.product is None and order.request_code == "2335-8"
    assert b"is not in this site&#x27;s catalog" in page.content or b"is not in this site's catalog" in page.content
    response = client.post(page.request["PATH_INFO"], {"action": "sign", "quantity": 1})
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.DRAFT


def test_a_mapped_loinc_kit_request_prefills_the_kit(client, ehr_site, sandbox_ehr):
    launch_id, _ = open_form(
        client,
        sandbox_ehr,
        patient="0b779465-6db2-4931-bc13-5f6ff8e8c4d4",
        request="ServiceRequest/kit-sr-hba1c-goldner",
    )
    assert Order.objects.get(launch_id=launch_id).product.sku == "KIT-HBA1C"


def test_the_patients_language_comes_from_patient_communication(client, ehr_site, sandbox_ehr):
    # Synthea's Barrett Goldner: communication [{language: urn:ietf:bcp:47 "en-US"}]; the Da Vinci patients have none.
    goldner, kit = "0b779465-6db2-4931-bc13-5f6ff8e8c4d4", "ServiceRequest/kit-sr-hba1c-goldner"
    launch_id, _ = open_form(client, sandbox_ehr, patient=goldner, request=kit)
    assert Order.objects.get(launch_id=launch_id).patient_language == "en"
    launch_id, _ = open_form(Client(), sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert Order.objects.get(launch_id=launch_id).patient_language == ""


@pytest.mark.parametrize(
    ("resource", "kind", "expected"),
    [
        ("Coverage", "403", "did not allow access"),
        ("Patient", "404", "has no such record"),
        ("Patient", "401", "expired or was refused"),
        ("Practitioner", "malformed", "cannot read"),
    ],  # a temporary failure (5xx, timeout) records nothing: tests/orders/test_launch_pages.py
)
def test_a_failing_fhir_read_gives_a_clear_message_and_manual_entry(
    client, ehr_site, sandbox_faults, resource, kind, expected
):
    sandbox_faults.fault(resource, kind)
    launch_id, page = open_form(client, sandbox_faults, patient="pat014", request="DeviceRequest/devreq021")
    assert page.status_code == 200
    html = page.content.decode()
    assert expected in html
    assert "You can enter what is missing by hand" in html
    outcomes = Launch.objects.get(pk=launch_id).prefill_outcomes
    label = "DeviceRequest/devreq021" if resource == "DeviceRequest" else resource
    assert outcomes[label] != "success"
    assert AuditEvent.objects.filter(action="fhir.read").exclude(outcome="success").count() == 1
    assert Order.objects.filter(launch_id=launch_id).count() == 1
