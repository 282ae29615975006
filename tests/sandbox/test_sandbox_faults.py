"""Fault injection at the FHIR API."""

import json
import time

import pytest
from django.test import Client

from healthcommerce.sandbox.models import FhirResource, SandboxClient
from healthcommerce.sandbox.services import sandbox_fault_clear, sandbox_fault_set
from tests.sandbox.helpers import SmartApp


@pytest.fixture
def token(app: SmartApp, public_client: SandboxClient) -> str:
    return str(app.token(patient="pat014")["access_token"])


@pytest.mark.parametrize(("kind", "status"), [(401, 401), (403, 403), (404, 404), (500, 500), (503, 503)])
def test_it_answers_the_injected_status(app: SmartApp, token: str, kind: int, status: int) -> None:
    sandbox_fault_set(resource_type="DeviceRequest", kind=kind)

    response = app.get("DeviceRequest/devreq014", token)

    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_an_injected_401_carries_www_authenticate(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="*", kind="401")

    assert app.get("DeviceRequest", token)["WWW-Authenticate"].startswith("Bearer")


def test_a_fault_applies_only_to_its_resource_type(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="Patient", kind=503)

    assert app.get("DeviceRequest/devreq014", token).status_code == 200
    assert app.get("Patient/pat014", token).status_code == 503


def test_a_counted_fault_wears_off(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="*", kind=500, count=2)

    statuses = [app.get("DeviceRequest/devreq014", token).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]


def test_clearing_removes_every_fault(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="*", kind=503)

    assert sandbox_fault_clear() == 1
    assert app.get("DeviceRequest/devreq014", token).status_code == 200


def test_an_inactive_fault_does_nothing(app: SmartApp, token: str) -> None:
    fault = sandbox_fault_set(resource_type="*", kind=503)
    fault.active = False
    fault.save(update_fields=["active", "updated_at"])

    assert app.get("DeviceRequest/devreq014", token).status_code == 200


def test_a_timeout_answers_after_the_configured_sleep(app: SmartApp, token: str, settings: object) -> None:
    settings.SANDBOX_TIMEOUT_SLEEP = 0.3  # type: ignore[attr-defined]
    sandbox_fault_set(resource_type="DeviceRequest", kind="timeout", count=1)

    started = time.monotonic()
    response = app.get("DeviceRequest/devreq014", token)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert response.json()["id"] == "devreq014"


def test_malformed_returns_a_resource_with_fields_of_the_wrong_type(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="DeviceRequest", kind="malformed")

    response = app.get("DeviceRequest/devreq014", token)

    body = response.json()
    assert response.status_code == 200
    assert body["resourceType"] == "DeviceRequest"
    assert not isinstance(body["id"], str)
    assert not isinstance(body["subject"], dict)


def test_malformed_breaks_search_bundles_too(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="DeviceRequest", kind="malformed")

    body = app.get("DeviceRequest", token).json()

    assert not isinstance(body["entry"], list)


def test_truncated_returns_invalid_json(app: SmartApp, token: str) -> None:
    sandbox_fault_set(resource_type="DeviceRequest", kind="truncated")

    response = app.get("DeviceRequest/devreq014", token)

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_metadata_fails_only_for_an_explicit_capability_statement_fault(app: SmartApp, sandbox_data: dict) -> None:
    sandbox_fault_set(resource_type="*", kind=503)
    assert app.get("metadata", None).status_code == 200

    sandbox_fault_set(resource_type="CapabilityStatement", kind=503)
    assert app.get("metadata", None).status_code == 503


def test_it_refuses_an_unknown_fault_kind(sandbox_data: dict) -> None:
    with pytest.raises(ValueError):
        sandbox_fault_set(resource_type="*", kind="explode")


def test_faults_are_editable_in_the_admin(admin_client: Client, sandbox_data: dict) -> None:
    fault = sandbox_fault_set(resource_type="*", kind=503)

    response = admin_client.post(
        f"/admin/sandbox/sandboxfault/{fault.pk}/change/",
        {"resource_type": "Patient", "kind": "500", "active": "on", "remaining": "1"},
    )

    fault.refresh_from_db()
    assert response.status_code == 302
    assert (fault.resource_type, fault.kind, fault.remaining) == ("Patient", "500", 1)


def test_loaded_resources_are_read_only_in_the_admin(admin_client: Client, sandbox_data: dict) -> None:
    row = FhirResource.objects.get(resource_type="Patient", fhir_id="pat014")

    assert admin_client.get("/admin/sandbox/fhirresource/").status_code == 200
    assert admin_client.get("/admin/sandbox/fhirresource/add/").status_code == 403
    assert admin_client.post(f"/admin/sandbox/fhirresource/{row.pk}/delete/", {"post": "yes"}).status_code == 403
