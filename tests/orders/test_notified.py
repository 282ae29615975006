"""Notify-then-pull, the worker (issue 20 "FHIR notify-then-pull"): a notification posted to the intake endpoint is
handed to ``orders.notified`` through the outbox, which reads the named request, its patient, coverage and requester
from the sandbox EHR over HTTP with SMART Backend Services and gives ``orders.intake.order_from_intake`` an
``IntakeOrder``; a 404 records the notification as failed, a 5xx retries, a 403 dead-letters.

TEST DOUBLE: ``orders/intake.py`` (``IntakeOrder``, ``order_from_intake``) is written by another helper in parallel
(docs: /work/wt/SPEC-20.md, H2). Until it is merged, this module installs a stand-in module with the contract's
dataclass when the real one is missing, and every test replaces ``order_from_intake`` in ``orders.notified`` with
``Recorder``, which records the ``IntakeOrder`` it is given and returns a stand-in order. At merge: delete the
stand-in module below, keep the recorder for what the handler gives, and add a test through the real function.
"""

import json
import sys
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.notify import NOTIFY_SCOPES
from healthcommerce.orders import extract, fields
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from healthcommerce.sandbox.notify import notification_bundle
from tests.backend_site import backend_site_enable
from tests.conftest import SandboxEHR

try:  # the real module once H2's orders/intake.py is merged
    import healthcommerce.orders.intake  # noqa: F401
except ImportError:  # pragma: no cover - until then, the contract's dataclass

    @dataclass
    class _IntakeOrder:
        site: Any
        source: str
        placer_order_number: str
        intake_message: Any
        values: dict[str, Any]
        request: dict[str, Any]
        signer: dict[str, str]
        signed_at: datetime | None
        warnings: list[str] = field(default_factory=list)

    def _not_merged(incoming: Any) -> Any:
        raise AssertionError("orders.intake is not merged: tests replace order_from_intake with Recorder")

    stand_in = types.ModuleType("healthcommerce.orders.intake")
    stand_in.IntakeOrder = _IntakeOrder  # type: ignore[attr-defined]
    stand_in.order_from_intake = _not_merged  # type: ignore[attr-defined]
    sys.modules["healthcommerce.orders.intake"] = stand_in

from healthcommerce.orders import notified

pytestmark = pytest.mark.django_db
TOKEN = "sandbox-notify-token-31c9"
FIXTURES = Path(settings.BASE_DIR) / "healthcommerce" / "sandbox" / "fixtures"
SIGNED = "ServiceRequest/kit-sr-fit-koepp"  # active, requester Practitioner/f4bf5265-...
DRAFT = "DeviceRequest/devreq-015-e0250"  # draft, requester Practitioner/pra-hfairchild


@dataclass
class _Order:
    reference: str
    pk: str = "3f1c0c1e-0000-4000-8000-000000000001"
    status: str = "signed"


class Recorder:
    """Stand-in for ``order_from_intake``: records each ``IntakeOrder`` and returns a stand-in order."""

    def __init__(self) -> None:
        self.given: list[Any] = []

    def __call__(self, incoming: Any) -> _Order:
        self.given.append(incoming)
        return _Order(reference=f"HC-NOTIFY{len(self.given):04d}")


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(notified, "order_from_intake", recorder)
    return recorder


@pytest.fixture
def notify_site(ehr_site: EHRSite, sandbox_ehr: SandboxEHR) -> EHRSite:
    site = backend_site_enable(ehr_site, sandbox_ehr, scopes=NOTIFY_SCOPES)
    site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": TOKEN})
    return site


def fixture_resource(resource_type: str, fhir_id: str) -> dict[str, Any]:
    """Return the sandbox fixture file's ``resource_type/fhir_id`` (a file of its own or a Bundle entry)."""
    for path in FIXTURES.rglob("*.json"):
        if fhir_id not in path.read_text(errors="ignore"):
            continue
        data = json.loads(path.read_text())
        found = (
            [e.get("resource", {}) for e in data.get("entry", [])] if data.get("resourceType") == "Bundle" else [data]
        )
        for resource in found:
            if (resource.get("resourceType"), resource.get("id")) == (resource_type, fhir_id):
                return resource
    raise LookupError(f"{resource_type}/{fhir_id}")


def notify(client, site: EHRSite, sandbox: SandboxEHR, focus: str, event: int = 1) -> OutboxMessage:
    """Post the sandbox's own event-notification bundle naming ``focus`` to the endpoint; return the outbox row."""
    bundle = notification_bundle(
        subscription=f"{sandbox.fhir_base}/Subscription/orders",
        event_number=event,
        focus=f"{sandbox.fhir_base}/{focus}",
    )
    response = client.post(
        f"/intake/fhir/{site.pk}/notify",
        data=json.dumps(bundle),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.content
    return OutboxMessage.objects.get(topic="intake.fhir_notification", payload__focus=focus)


def deliver(row: OutboxMessage) -> OutboxMessage:
    OutboxMessage.objects.filter(pk=row.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=row.pk)
    return OutboxMessage.objects.get(pk=row.pk)


def intake_message(row: OutboxMessage) -> IntakeMessage:
    return IntakeMessage.objects.get(pk=row.subject.removeprefix("IntakeMessage/"))


def test_an_active_request_with_a_requester_arrives_signed_by_the_requester(
    client, notify_site, sandbox_ehr, recorder
) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, SIGNED))

    [incoming] = recorder.given
    assert incoming.site == notify_site and incoming.source == "fhir_notification"
    assert incoming.placer_order_number == SIGNED and incoming.intake_message == intake_message(row)
    patient = fixture_resource("Patient", "018f428e-34f6-4707-8009-5ad742f901e7")
    expected = fields.prefill_values("Patient", patient, extract.Notes("Patient"))
    assert {k: incoming.values[k] for k in expected} == expected  # the same extractors as pre-fill
    assert incoming.values["patient_name"] and incoming.values["ship_to"]["postal_code"]
    assert incoming.values["patient_fhir_id"] == "018f428e-34f6-4707-8009-5ad742f901e7"
    assert incoming.values["request_reference"] == SIGNED
    practitioner = fixture_resource("Practitioner", "f4bf5265-8d8e-4055-a4e5-b34853f1099f")
    signer = fields.prefill_values("Practitioner", practitioner, extract.Notes("Practitioner"))
    assert incoming.signer == {
        "reference": "Practitioner/f4bf5265-8d8e-4055-a4e5-b34853f1099f",
        "name": signer["practitioner_name"],
        "npi": signer["practitioner_npi"],
    }
    assert incoming.signed_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # authoredOn
    assert incoming.request == {
        "system": "http://loinc.org",
        "code": "29771-3",
        "display": "Hemoglobin.gastrointestinal [Presence] in Stool by Immunologic method",
        "quantity": 1,
    }
    assert not any("signed" in w for w in incoming.warnings)
    assert (row.status, row.result) == ("done", "Order/3f1c0c1e-0000-4000-8000-000000000001")
    message = intake_message(row)
    assert (message.order_reference, message.ack_code, message.error_text) == ("HC-NOTIFY0001", "AA", "")


def test_it_reads_only_the_request_its_patient_coverage_and_requester_and_audits_each(
    client, notify_site, sandbox_ehr, recorder
) -> None:
    deliver(notify(client, notify_site, sandbox_ehr, SIGNED))

    reads = AuditEvent.objects.filter(action="fhir.read", actor__startswith="backend:").order_by("created_at")
    assert [(a.target, a.outcome) for a in reads] == [
        (SIGNED, "success"),
        ("Patient/018f428e-34f6-4707-8009-5ad742f901e7", "success"),
        ("Coverage?beneficiary=018f428e-34f6-4707-8009-5ad742f901e7", "success"),
        ("Practitioner/f4bf5265-8d8e-4055-a4e5-b34853f1099f", "success"),
    ]
    assert all(a.detail.get("for") == "fhir_notification" for a in reads)


def test_a_draft_request_carries_no_signer_so_it_is_held(client, notify_site, sandbox_ehr, recorder) -> None:
    deliver(notify(client, notify_site, sandbox_ehr, DRAFT))

    [incoming] = recorder.given
    assert incoming.placer_order_number == DRAFT
    assert incoming.signer == {} and incoming.signed_at is None
    assert any("draft in the EHR, not active" in w for w in incoming.warnings)
    assert incoming.values["patient_fhir_id"] == "pat015" and incoming.values["patient_name"]
    assert incoming.request["code"] == "E0250"


def test_running_the_row_twice_creates_one_order(client, notify_site, sandbox_ehr, recorder) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, SIGNED))
    OutboxMessage.objects.filter(pk=row.pk).update(status="pending")  # as if re-driven from the admin

    deliver(row)

    assert len(recorder.given) == 1
    assert OutboxMessage.objects.get(pk=row.pk).result == "skipped:done"


def test_a_request_the_ehr_does_not_have_is_recorded_as_failed_without_retries(
    client, notify_site, sandbox_ehr, recorder
) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, "DeviceRequest/no-such-request"))

    assert (row.status, row.result, row.attempts) == ("done", "failed", 1)
    message = intake_message(row)
    assert message.ack_code == "AE" and message.order_reference == ""
    assert message.error_text == "DeviceRequest/no-such-request: the EHR has no such resource (404 or 410)"
    assert recorder.given == []
    audit = AuditEvent.objects.get(action="intake.fhir_notification_done")
    assert (audit.outcome, audit.target) == ("failed", f"IntakeMessage/{message.pk}")


def test_a_server_error_retries_through_the_outbox_and_the_retry_creates_the_order(
    client, notify_site, sandbox_faults, recorder
) -> None:
    row = notify(client, notify_site, sandbox_faults, SIGNED)
    sandbox_faults.fault("ServiceRequest", "503")

    row = deliver(row)

    assert (row.status, row.last_error, row.attempts) == ("pending", "server_error", 1)
    assert intake_message(row).ack_code == "AA" and intake_message(row).error_text == ""
    assert recorder.given == []
    sandbox_faults.clear_faults()
    assert deliver(row).status == "done" and len(recorder.given) == 1


def test_a_malformed_request_is_recorded_as_failed(client, notify_site, sandbox_faults, recorder) -> None:
    row = notify(client, notify_site, sandbox_faults, SIGNED)
    sandbox_faults.fault("ServiceRequest", "truncated")

    row = deliver(row)

    assert (row.status, row.result) == ("done", "failed")
    assert "not the resource asked for" in intake_message(row).error_text and recorder.given == []


def test_a_read_the_ehr_forbids_is_recorded_and_dead_lettered_for_staff(
    client, notify_site, sandbox_faults, recorder
) -> None:
    row = notify(client, notify_site, sandbox_faults, SIGNED)
    sandbox_faults.fault("ServiceRequest", "403")

    row = deliver(row)

    assert (row.status, row.last_error) == ("dead", "forbidden") and recorder.given == []
    message = intake_message(row)
    assert message.ack_code == "AE" and "(403)" in message.error_text and "system/ scopes" in message.error_text


def test_backend_credentials_the_ehr_refuses_are_recorded_and_dead_lettered(
    client, ehr_site, sandbox_ehr, recorder
) -> None:
    granted = " ".join(s for s in NOTIFY_SCOPES.split() if s != "system/ServiceRequest.rs")
    site = backend_site_enable(ehr_site, sandbox_ehr, scopes=NOTIFY_SCOPES, granted=granted)  # invalid_scope
    site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": TOKEN})

    row = deliver(notify(client, site, sandbox_ehr, SIGNED))

    assert (row.status, row.last_error) == ("dead", "backend_token_refused") and recorder.given == []
    message = intake_message(row)
    assert message.ack_code == "AE" and "backend-services credentials" in message.error_text


def sandbox_request(sandbox: SandboxEHR, fhir_id: str, **changes: Any) -> str:
    """Store in the sandbox a copy of the active kit ServiceRequest as ``fhir_id`` with ``changes``; return its
    reference. (The sandbox's fixtures have no revoked request and none a PractitionerRole signed.)"""
    resource = fixture_resource("ServiceRequest", "kit-sr-fit-koepp") | {"id": fhir_id} | changes
    code = (
        "import json; from healthcommerce.sandbox.models import FhirResource as F; "
        f"d = json.loads({json.dumps(json.dumps(resource))}); "
        "F.objects.update_or_create(resource_type='ServiceRequest', fhir_id=d['id'], defaults={'data': d, "
        "'status': d['status'], 'patient_id': d['subject']['reference'].split('/')[-1]})"
    )
    sandbox.manage("shell", "-c", code)
    return f"ServiceRequest/{fhir_id}"


def test_a_revoked_request_is_recorded_as_nothing_to_order(client, notify_site, sandbox_ehr, recorder) -> None:
    focus = sandbox_request(sandbox_ehr, "kit-sr-revoked-notify", status="revoked")

    row = deliver(notify(client, notify_site, sandbox_ehr, focus))

    assert (row.status, row.result) == ("done", "failed") and recorder.given == []
    assert intake_message(row).error_text == f"{focus}: the request is revoked in the EHR; nothing to order"


def test_a_request_signed_by_a_practitioner_role_names_the_roles_practitioner(
    client, notify_site, sandbox_ehr, recorder
) -> None:
    focus = sandbox_request(sandbox_ehr, "kit-sr-role-notify", requester={"reference": "PractitionerRole/prarol1234"})

    deliver(notify(client, notify_site, sandbox_ehr, focus))

    [incoming] = recorder.given
    practitioner = fixture_resource("Practitioner", "pra1234")
    expected = fields.prefill_values("Practitioner", practitioner, extract.Notes("Practitioner"))
    assert incoming.signer == {
        "reference": "PractitionerRole/prarol1234",
        "name": expected["practitioner_name"],
        "npi": expected["practitioner_npi"],
    }
