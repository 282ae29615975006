"""The sandbox's FHIR create (Communication, DocumentReference): ids and meta from the server, Location, scopes,
the patient compartment, malformed bodies, conditional create, and a read that returns what was written."""

import json
import uuid
from typing import Any

import pytest
import requests
from django.http import HttpResponse
from joserfc.jwk import RSAKey

from healthcommerce.sandbox.models import FhirResource
from tests.conftest import SandboxEHR
from tests.sandbox.helpers import FHIR_BASE, SmartApp
from tests.sandbox.test_sandbox_client_credentials import client_credentials, register
from tests.sandbox.test_sandbox_fhir import token_with

FHIR_JSON = "application/fhir+json"
IDENTIFIER = {"system": "urn:healthcommerce:order-reference", "value": "HC-TESTCREATE1"}


def communication(patient: str = "pat014", **extra: Any) -> dict[str, Any]:
    """A Communication as the write-back sends it (healthcommerce/orders/writeback.py)."""
    return {
        "resourceType": "Communication",
        "id": "client-chosen",
        "identifier": [IDENTIFIER],
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "about": [{"reference": "DeviceRequest/devreq014"}],
        "sent": "2026-12-06T05:00:00+00:00",
        "sender": {"reference": "Practitioner/pra1234"},
        "payload": [{"contentString": "Order HC-TESTCREATE1 was signed and sent for fulfilment."}],
    } | extra


def document_reference(patient: str = "pat014") -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "identifier": [IDENTIFIER],
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "date": "2026-12-06T05:00:00+00:00",
        "content": [{"attachment": {"contentType": "text/plain", "data": "T3JkZXIgc2lnbmVk"}}],
    }


def post(app: SmartApp, resource_type: str, body: Any, token: str | None, **headers: str) -> HttpResponse:
    data = body if isinstance(body, str) else json.dumps(body)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    content_type = headers.pop("content_type", FHIR_JSON)
    return app.client.post(f"/sandbox/fhir/{resource_type}", data, content_type=content_type, headers=auth | headers)


@pytest.fixture
def writer(app: SmartApp, sandbox_data: dict) -> str:
    return token_with(app, "launch patient/Communication.c patient/DocumentReference.c patient/Communication.rs")


def test_it_creates_a_communication_with_a_server_id_and_returns_it_on_read(app: SmartApp, writer: str) -> None:
    response = post(app, "Communication", communication(), writer)

    assert response.status_code == 201
    created = response.json()
    assert created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"]
    assert response["Location"] == f"{FHIR_BASE}/Communication/{created['id']}/_history/1"
    assert response["ETag"] == 'W/"1"'
    row = FhirResource.objects.get(resource_type="Communication", fhir_id=created["id"])
    assert row.patient_id == "pat014"
    assert row.status == "completed"
    read = app.get(f"Communication/{created['id']}", writer)
    assert read.status_code == 200
    assert read.json() == created


def test_it_creates_a_document_reference(app: SmartApp, writer: str) -> None:
    response = post(app, "DocumentReference", document_reference(), writer)

    assert response.status_code == 201
    assert response.json()["resourceType"] == "DocumentReference"
    assert FhirResource.objects.filter(resource_type="DocumentReference", fhir_id=response.json()["id"]).exists()


def test_a_v1_write_scope_and_a_user_scope_also_allow_create(app: SmartApp, sandbox_data: dict) -> None:
    v1 = token_with(app, "launch patient/Communication.write")
    user = token_with(app, "launch user/Communication.c")

    assert post(app, "Communication", communication(), v1).status_code == 201
    assert post(app, "Communication", communication(patient="pat013"), user).status_code == 201


def test_it_refuses_a_token_without_a_create_scope(app: SmartApp, sandbox_data: dict) -> None:
    reader = token_with(app, "launch patient/Communication.rs patient/DocumentReference.c")

    response = post(app, "Communication", communication(), reader)

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert not FhirResource.objects.filter(resource_type="Communication").exists()


def test_a_patient_scope_writes_only_into_the_launch_patients_compartment(app: SmartApp, writer: str) -> None:
    assert post(app, "Communication", communication(patient="pat013"), writer).status_code == 403


def test_it_answers_401_without_a_token(app: SmartApp, sandbox_data: dict) -> None:
    assert post(app, "Communication", communication(), None).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ("[]", 400),
        (json.dumps(document_reference()), 400),  # resourceType of another type
        (json.dumps(communication(status=7)), 422),
        (json.dumps(communication(spaceship="yes")), 422),
        (json.dumps({"resourceType": "Communication"}), 422),  # status is required
    ],
)
def test_it_refuses_malformed_bodies_with_an_operation_outcome(
    app: SmartApp, writer: str, body: str, status: int
) -> None:
    response = post(app, "Communication", body, writer)

    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not FhirResource.objects.filter(resource_type="Communication").exists()


def test_it_refuses_a_body_that_is_not_json(app: SmartApp, writer: str) -> None:
    response = post(app, "Communication", json.dumps(communication()), writer, content_type="text/plain")

    assert response.status_code == 415


def test_other_types_cannot_be_created(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/*.cruds")
    body = {"resourceType": "DeviceRequest", "status": "active", "intent": "order"}

    assert post(app, "DeviceRequest", body, token).status_code == 404


def test_a_conditional_create_that_matches_returns_the_existing_resource(app: SmartApp, writer: str) -> None:
    condition = f"identifier={IDENTIFIER['system']}|{IDENTIFIER['value']}"
    first = post(app, "Communication", communication(), writer, **{"If-None-Exist": condition})
    second = post(app, "Communication", communication(), writer, **{"If-None-Exist": condition})

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert FhirResource.objects.filter(resource_type="Communication").count() == 1


def test_a_conditional_create_supports_only_an_identifier(app: SmartApp, writer: str) -> None:
    response = post(app, "Communication", communication(), writer, **{"If-None-Exist": "status=completed"})

    assert response.status_code == 400


def test_an_injected_fault_applies_to_create(app: SmartApp, writer: str) -> None:
    from healthcommerce.sandbox.services import sandbox_fault_set

    sandbox_fault_set(resource_type="Communication", kind=503, count=1)

    assert post(app, "Communication", communication(), writer).status_code == 503
    assert post(app, "Communication", communication(), writer).status_code == 201


def test_the_capability_statement_lists_create_for_the_two_writable_types_only(
    app: SmartApp, sandbox_data: dict
) -> None:
    resources = {r["type"]: r for r in app.client.get("/sandbox/fhir/metadata").json()["rest"][0]["resource"]}

    creatable = {name for name, r in resources.items() if {"code": "create"} in r["interaction"]}
    assert creatable == {"Communication", "DocumentReference"}
    assert resources["Communication"]["conditionalCreate"] is True


# --- Backend services: a system/ token over HTTP against the running sandbox ------------------------------------


@pytest.fixture(scope="module")
def system_writer(sandbox_ehr: SandboxEHR) -> str:
    """A client-credentials token of a backend client allowed ``system/Communication.c`` and reads of it."""
    key = RSAKey.generate_key(2048, auto_kid=True)
    scope = "system/Communication.c system/Communication.rs"
    register(sandbox_ehr, "create-backend", "--jwks-json", json.dumps({"keys": [key.as_dict(private=False)]}),
             "--scope", scope)  # fmt: skip
    response = client_credentials(sandbox_ehr, key, "create-backend", scope=scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_a_system_token_creates_for_any_patient_and_reads_it_back(sandbox_ehr: SandboxEHR, system_writer: str) -> None:
    headers = {"Authorization": f"Bearer {system_writer}", "Content-Type": FHIR_JSON}
    body = communication(patient="pat013") | {"identifier": [IDENTIFIER | {"value": f"HC-{uuid.uuid4().hex[:10]}"}]}

    created = requests.post(f"{sandbox_ehr.fhir_base}/Communication", json=body, headers=headers, timeout=10)

    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    assert created.headers["Location"] == f"{sandbox_ehr.fhir_base}/Communication/{new_id}/_history/1"
    read = requests.get(created.headers["Location"].rsplit("/_history", 1)[0], headers=headers, timeout=10)
    assert read.status_code == 200
    assert read.json()["subject"] == {"reference": "Patient/pat013"}


def test_a_system_token_without_the_type_cannot_create_it(sandbox_ehr: SandboxEHR, system_writer: str) -> None:
    headers = {"Authorization": f"Bearer {system_writer}", "Content-Type": FHIR_JSON}

    refused = requests.post(
        f"{sandbox_ehr.fhir_base}/DocumentReference", json=document_reference(), headers=headers, timeout=10
    )

    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
