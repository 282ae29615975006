"""The audit trail in the admin (healthcommerce/audit/admin.py) for the two staff roles (core/roles.py): a patient's
FHIR id in a row's target is PHI; support sees it masked, cannot search by it and cannot export the trail as FHIR;
an admin sees, searches and exports it."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client

from healthcommerce.audit.models import AuditEvent
from healthcommerce.audit.services import audit_record
from tests.staff import staff_login, staff_user

PATIENT = "Patient/pat014"
LIST = "/admin/audit/auditevent/"


@pytest.fixture
def patient_row(db: None) -> AuditEvent:
    audit_record(actor="clinician:Practitioner/prac1", action="phi.read", target=PATIENT, detail={"status": 200})
    audit_record(actor="system", action="order.sign", target="Order/42")
    return AuditEvent.objects.get(target=PATIENT)


def _as(role: str, django_user_model) -> Client:  # type: ignore[no-untyped-def]
    return staff_login(Client(), staff_user(django_user_model, f"{role}-user", role))


def test_support_sees_a_patients_fhir_id_masked_in_the_audit_list_and_row(patient_row, django_user_model) -> None:
    client = _as("support", django_user_model)
    pages = client.get(LIST).content.decode() + client.get(f"{LIST}{patient_row.pk}/change/").content.decode()
    assert "pat014" not in pages
    assert "Patient/(hidden)" in pages and "Order/42" in pages
    row = client.get(f"{LIST}{patient_row.pk}/change/").content.decode()
    assert row.count("Target:</label>") == 1


def test_support_cannot_find_audit_rows_by_a_patients_fhir_id(patient_row, django_user_model) -> None:
    client = _as("support", django_user_model)
    for term in (PATIENT, "pat014"):
        page = client.get(LIST, {"q": term}).content.decode()
        assert 'class="action-select"' not in page and "0 results" in page, term


def test_support_is_not_offered_the_fhir_export_and_cannot_post_it(patient_row, django_user_model) -> None:
    client = _as("support", django_user_model)
    assert 'value="export_fhir"' not in client.get(LIST).content.decode()
    response = client.post(LIST, {"action": "export_fhir", ACTION_CHECKBOX_NAME: [str(patient_row.pk)]})
    assert response.get("Content-Type") != "application/fhir+json" and b"pat014" not in response.content


def test_an_admin_sees_searches_and_exports_the_patients_fhir_id(patient_row, django_user_model) -> None:
    client = _as("admin", django_user_model)
    page = client.get(LIST, {"q": "pat014"}).content.decode()
    assert "1 audit event" in page and PATIENT in page
    response = client.post(LIST, {"action": "export_fhir", ACTION_CHECKBOX_NAME: [str(patient_row.pk)]})
    assert response["Content-Type"] == "application/fhir+json" and PATIENT.encode() in response.content
