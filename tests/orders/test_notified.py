"""Notify-then-pull, the worker (issue 20 "FHIR notify-then-pull"), end to end: a notification posted to the intake
endpoint is handed to ``orders.notified`` through the outbox, which reads the named request, its patient, coverage and
requester from the sandbox EHR over HTTP with SMART Backend Services and creates the order through
``orders.intake.order_from_intake``. An active request with a requester and a patient who can get the purchase link
is signed (``order.signed`` in the outbox); anything else is held with its hold reasons; the same request twice makes
one order; a 404 records the notification as failed, a 5xx retries, a 403 dead-letters.

The sandbox's fixture patients have no email, so every fixture request is held for it; the signed path stores in the
sandbox a copy of a fixture patient with an email and a copy of a fixture request naming that patient
(``sandbox_store``), under ids of their own.
"""

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.notify import NOTIFY_SCOPES
from healthcommerce.orders import extract, fields
from healthcommerce.orders.intake import HOLD_LABELS, UNSIGNED
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import content_hash
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from healthcommerce.sandbox.loader import default_fixture_dirs, sandbox_resources_load
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.notify import notification_bundle
from tests.backend_site import backend_site_enable
from tests.conftest import SandboxEHR

pytestmark = pytest.mark.django_db
TOKEN = "sandbox-notify-token-31c9"
FIXTURES = Path(settings.BASE_DIR) / "healthcommerce" / "sandbox" / "fixtures"
KIT = "ServiceRequest/kit-sr-fit-koepp"  # active, requester Practitioner/f4bf5265-..., LOINC 29771-3 (KIT-FIT)
KOEPP = "018f428e-34f6-4707-8009-5ad742f901e7"  # its patient: an address, no email
PRESCRIBER = "Practitioner/f4bf5265-8d8e-4055-a4e5-b34853f1099f"
DRAFT = "DeviceRequest/devreq-015-e0250"  # draft, requester Practitioner/pra-hfairchild, HCPCS E0250
EMAIL = "abdul.koepp@example.org"
EMAIL_LACKING = HOLD_LABELS["contact_email"]


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


def sandbox_store(sandbox: SandboxEHR, *resources: dict[str, Any]) -> None:
    """Store ``resources`` (FHIR JSON) in the sandbox's own database, as its loader does (compartment, status)."""
    code = (
        "import json\n"
        "from healthcommerce.sandbox.loader import compartment_patient_id\n"
        "from healthcommerce.sandbox.models import FhirResource\n"
        f"for d in json.loads({json.dumps(json.dumps(resources))}):\n"
        "    FhirResource.objects.update_or_create(resource_type=d['resourceType'], fhir_id=d['id'], defaults={\n"
        "        'data': d, 'status': d.get('status', ''), 'patient_id': compartment_patient_id(d)})\n"
    )
    sandbox.manage("shell", "-c", code)


def kit_copy(fhir_id: str, *, drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """Return a copy of the fixture kit ServiceRequest with id ``fhir_id``, ``changes`` and without ``drop``."""
    resource = fixture_resource("ServiceRequest", "kit-sr-fit-koepp") | {"id": fhir_id} | changes
    return {name: value for name, value in resource.items() if name not in drop}


def patient_with_email(fhir_id: str) -> dict[str, Any]:
    """Return a copy of the kit's fixture patient with id ``fhir_id`` and an email address."""
    patient = fixture_resource("Patient", KOEPP)
    telecom = [*patient.get("telecom", []), {"system": "email", "value": EMAIL}]
    return patient | {"id": fhir_id, "telecom": telecom}


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
    message = IntakeMessage.objects.get(control_id__endswith=f"#{event}")
    return OutboxMessage.objects.get(topic="intake.fhir_notification", subject=f"IntakeMessage/{message.pk}")


def deliver(row: OutboxMessage) -> OutboxMessage:
    OutboxMessage.objects.filter(pk=row.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=row.pk)
    return OutboxMessage.objects.get(pk=row.pk)


def intake_message(row: OutboxMessage) -> IntakeMessage:
    return IntakeMessage.objects.get(pk=row.subject.removeprefix("IntakeMessage/"))


def topics(order: Order) -> set[str]:
    return set(OutboxMessage.objects.filter(subject=f"Order/{order.pk}").values_list("topic", flat=True))


@pytest.fixture
def signable(sandbox_ehr: SandboxEHR) -> str:
    """An active kit request signed by its requester, for a patient with an address and an email; its reference."""
    sandbox_store(
        sandbox_ehr,
        patient_with_email("notify-koepp-email"),
        kit_copy("kit-sr-notify-signed", subject={"reference": "Patient/notify-koepp-email"}),
    )
    return "ServiceRequest/kit-sr-notify-signed"


def test_an_active_request_with_a_requester_and_complete_contact_becomes_a_signed_order(
    client, notify_site, sandbox_ehr, signable
) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, signable))

    order = Order.objects.get()
    assert (order.source, order.status, order.hold_reasons) == (Order.Source.FHIR_NOTIFICATION, "signed", [])
    assert (order.site, order.placer_order_number, order.request_reference) == (notify_site, signable, signable)
    assert (order.signed_by, order.signed_at) == (PRESCRIBER, datetime(2026, 11, 1, 9, 0, tzinfo=UTC))  # authoredOn
    signer = fields.prefill_values(
        "Practitioner", fixture_resource("Practitioner", PRESCRIBER.split("/")[1]), extract.Notes("Practitioner")
    )
    assert (order.practitioner_reference, order.practitioner_name, order.practitioner_npi) == (
        PRESCRIBER,
        signer["practitioner_name"],
        signer["practitioner_npi"],
    )
    patient = fields.prefill_values("Patient", patient_with_email("notify-koepp-email"), extract.Notes("Patient"))
    assert {name: getattr(order, name) for name in patient} == patient  # the same extractors as pre-fill
    assert (order.patient_fhir_id, order.contact_email) == ("notify-koepp-email", EMAIL)
    assert (order.request_system, order.request_code, order.quantity) == ("http://loinc.org", "29771-3", 1)
    assert order.request_display == "FIT colorectal cancer screening kit"
    assert order.product == Product.objects.get(sku="KIT-FIT")
    assert order.content_hash == content_hash(order)
    assert topics(order) == {"order.signed"}
    message = intake_message(row)
    assert order.intake_message == message
    assert (message.order_reference, message.ack_code, message.error_text) == (order.reference, "AA", "")
    assert (row.status, row.result) == ("done", f"Order/{order.pk}")
    done = AuditEvent.objects.get(action="intake.fhir_notification_done")
    assert (done.outcome, done.detail["order"]) == ("success", order.reference)
    assert AuditEvent.objects.get(action="order.intake").outcome == "signed"


def test_it_reads_only_the_request_its_patient_coverage_and_requester_and_audits_each(
    client, notify_site, sandbox_ehr
) -> None:
    deliver(notify(client, notify_site, sandbox_ehr, KIT))

    reads = AuditEvent.objects.filter(action="fhir.read", actor__startswith="backend:").order_by("created_at")
    assert [(a.target, a.outcome) for a in reads] == [
        (KIT, "success"),
        (f"Patient/{KOEPP}", "success"),
        (f"Coverage?beneficiary={KOEPP}", "success"),
        (f"{PRESCRIBER}", "success"),
    ]
    assert all(a.detail.get("for") == "fhir_notification" for a in reads)


def test_the_fixture_kit_request_is_signed_in_the_ehr_but_held_for_the_patients_email(
    client, notify_site, sandbox_ehr
) -> None:
    deliver(notify(client, notify_site, sandbox_ehr, KIT))

    order = Order.objects.get()
    assert (order.status, order.hold_reasons) == ("held", [EMAIL_LACKING])
    assert order.signed_by == PRESCRIBER and order.signed_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert (order.patient_fhir_id, order.product) == (KOEPP, Product.objects.get(sku="KIT-FIT"))
    assert order.ship_to["postal_code"] and order.contact_email == ""
    assert topics(order) == set()  # nothing goes on until staff add the email and release it
    assert AuditEvent.objects.get(action="order.intake").outcome == "held"


def test_a_draft_request_is_held_unsigned_naming_its_requester(client, notify_site, sandbox_ehr) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, DRAFT))

    order = Order.objects.get()
    assert (order.source, order.status, order.placer_order_number) == ("fhir_notification", "held", DRAFT)
    assert (order.signed_by, order.signed_at) == ("", None)
    assert order.practitioner_reference == "Practitioner/pra-hfairchild" and order.practitioner_name
    assert UNSIGNED in order.hold_reasons and EMAIL_LACKING in order.hold_reasons
    assert (order.patient_fhir_id, order.request_reference) == ("pat015", DRAFT)
    assert (order.request_code, order.product) == ("E0250", Product.objects.get(sku="DME-BED-FIXED"))
    assert topics(order) == set()
    assert intake_message(row).order_reference == order.reference
    done = AuditEvent.objects.get(action="intake.fhir_notification_done")
    assert any("draft in the EHR, not active" in warning for warning in done.detail["warnings"])


def test_an_active_request_without_a_practitioner_requester_is_held_unsigned(client, notify_site, sandbox_ehr) -> None:
    sandbox_store(sandbox_ehr, kit_copy("kit-sr-notify-no-requester", drop=("requester",)))

    deliver(notify(client, notify_site, sandbox_ehr, "ServiceRequest/kit-sr-notify-no-requester"))

    order = Order.objects.get()
    assert (order.status, order.signed_by, order.practitioner_reference) == ("held", "", "")
    assert HOLD_LABELS["practitioner_name"] in order.hold_reasons
    done = AuditEvent.objects.get(action="intake.fhir_notification_done")
    assert any("no Practitioner or PractitionerRole as its requester" in w for w in done.detail["warnings"])


def test_a_later_notification_of_the_request_once_active_signs_the_held_order(client, notify_site, sandbox_ehr) -> None:
    focus = "ServiceRequest/kit-sr-notify-later"
    patient = patient_with_email("notify-koepp-later")
    subject = {"reference": "Patient/notify-koepp-later"}
    sandbox_store(sandbox_ehr, patient, kit_copy("kit-sr-notify-later", status="draft", subject=subject))
    deliver(notify(client, notify_site, sandbox_ehr, focus, event=1))
    held = Order.objects.get()
    assert (held.status, held.hold_reasons) == ("held", [UNSIGNED])

    sandbox_store(sandbox_ehr, kit_copy("kit-sr-notify-later", subject=subject))  # signed in the EHR: active
    row = deliver(notify(client, notify_site, sandbox_ehr, focus, event=2))

    order = Order.objects.get()
    assert (order.pk, order.status, order.hold_reasons) == (held.pk, "signed", [])
    assert (order.signed_by, order.signed_at) == (PRESCRIBER, datetime(2026, 11, 1, 9, 0, tzinfo=UTC))
    assert topics(order) == {"order.signed"}
    assert intake_message(row).order_reference == order.reference
    assert AuditEvent.objects.filter(action="order.intake", outcome="signed_in_ehr_signed").count() == 1


def test_the_same_notification_twice_makes_one_order(client, notify_site, sandbox_ehr, signable) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, signable))
    OutboxMessage.objects.filter(pk=row.pk).update(status="pending")  # as if re-driven from the admin

    again = deliver(row)

    assert Order.objects.count() == 1
    assert (again.status, again.result) == ("done", "skipped:done")
    assert OutboxMessage.objects.filter(topic="order.signed").count() == 1


def test_two_notifications_of_the_same_request_make_one_order_both_name(
    client, notify_site, sandbox_ehr, signable
) -> None:
    first = deliver(notify(client, notify_site, sandbox_ehr, signable, event=1))
    second = deliver(notify(client, notify_site, sandbox_ehr, signable, event=2))

    order = Order.objects.get()
    assert order.status == "signed" and OutboxMessage.objects.filter(topic="order.signed").count() == 1
    assert intake_message(first).order_reference == intake_message(second).order_reference == order.reference
    assert (second.status, second.result) == ("done", f"Order/{order.pk}")
    assert AuditEvent.objects.filter(action="order.intake", outcome="duplicate").count() == 1


def test_the_site_code_mapping_may_match_any_coding_of_the_request(client, notify_site, sandbox_ehr) -> None:
    unmapped = fixture_resource("ServiceRequest", "kit-sr-fit-goldner-unmapped")["code"]["coding"][0]
    mapped = fixture_resource("ServiceRequest", "kit-sr-fit-koepp")["code"]["coding"][0]
    code = {"coding": [unmapped, mapped], "text": "FIT kit"}
    sandbox_store(sandbox_ehr, kit_copy("kit-sr-notify-codings", code=code))

    deliver(notify(client, notify_site, sandbox_ehr, "ServiceRequest/kit-sr-notify-codings"))

    order = Order.objects.get()
    assert order.product == Product.objects.get(sku="KIT-FIT")
    assert (order.request_system, order.request_code) == ("http://loinc.org", "29771-3")  # the coding that mapped
    assert HOLD_LABELS["product"] not in " ".join(order.hold_reasons)


def test_an_unmapped_request_is_held_naming_its_code(client, notify_site, sandbox_ehr) -> None:
    deliver(notify(client, notify_site, sandbox_ehr, "ServiceRequest/kit-sr-fit-goldner-unmapped"))

    order = Order.objects.get()
    assert order.status == "held" and order.product is None
    assert f"{HOLD_LABELS['product']} (http://loinc.org|2335-8)" in order.hold_reasons


def test_a_request_the_ehr_does_not_have_is_recorded_as_failed_without_retries(
    client, notify_site, sandbox_ehr
) -> None:
    row = deliver(notify(client, notify_site, sandbox_ehr, "DeviceRequest/no-such-request"))

    assert (row.status, row.result, row.attempts) == ("done", "failed", 1)
    message = intake_message(row)
    assert message.ack_code == "AE" and message.order_reference == ""
    assert message.error_text == "DeviceRequest/no-such-request: the EHR has no such resource (404 or 410)"
    assert not Order.objects.exists()
    audit = AuditEvent.objects.get(action="intake.fhir_notification_done")
    assert (audit.outcome, audit.target) == ("failed", f"IntakeMessage/{message.pk}")


def test_a_server_error_retries_through_the_outbox_and_the_retry_creates_the_order(
    client, notify_site, sandbox_faults
) -> None:
    row = notify(client, notify_site, sandbox_faults, KIT)
    sandbox_faults.fault("ServiceRequest", "503")

    row = deliver(row)

    assert (row.status, row.last_error, row.attempts) == ("pending", "server_error", 1)
    assert intake_message(row).ack_code == "AA" and intake_message(row).error_text == ""
    assert not Order.objects.exists()
    sandbox_faults.clear_faults()
    assert deliver(row).status == "done"
    assert Order.objects.get().placer_order_number == KIT


def test_a_malformed_request_is_recorded_as_failed(client, notify_site, sandbox_faults) -> None:
    row = notify(client, notify_site, sandbox_faults, KIT)
    sandbox_faults.fault("ServiceRequest", "truncated")

    row = deliver(row)

    assert (row.status, row.result) == ("done", "failed")
    assert "not the resource asked for" in intake_message(row).error_text and not Order.objects.exists()


def test_a_read_the_ehr_forbids_is_recorded_and_dead_lettered_for_staff(client, notify_site, sandbox_faults) -> None:
    row = notify(client, notify_site, sandbox_faults, KIT)
    sandbox_faults.fault("ServiceRequest", "403")

    row = deliver(row)

    assert (row.status, row.last_error) == ("dead", "forbidden") and not Order.objects.exists()
    message = intake_message(row)
    assert message.ack_code == "AE" and "(403)" in message.error_text and "system/ scopes" in message.error_text


def test_backend_credentials_the_ehr_refuses_are_recorded_and_dead_lettered(client, ehr_site, sandbox_ehr) -> None:
    granted = " ".join(s for s in NOTIFY_SCOPES.split() if s != "system/ServiceRequest.rs")
    site = backend_site_enable(ehr_site, sandbox_ehr, scopes=NOTIFY_SCOPES, granted=granted)  # invalid_scope
    site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": TOKEN})

    row = deliver(notify(client, site, sandbox_ehr, KIT))

    assert (row.status, row.last_error) == ("dead", "backend_token_refused") and not Order.objects.exists()
    message = intake_message(row)
    assert message.ack_code == "AE" and "backend-services credentials" in message.error_text


def test_a_revoked_request_is_recorded_as_nothing_to_order(client, notify_site, sandbox_ehr) -> None:
    sandbox_store(sandbox_ehr, kit_copy("kit-sr-revoked-notify", status="revoked"))
    focus = "ServiceRequest/kit-sr-revoked-notify"

    row = deliver(notify(client, notify_site, sandbox_ehr, focus))

    assert (row.status, row.result) == ("done", "failed") and not Order.objects.exists()
    assert intake_message(row).error_text == f"{focus}: the request is revoked in the EHR; nothing to order"


def test_a_request_signed_by_a_practitioner_role_names_the_roles_practitioner(client, notify_site, sandbox_ehr) -> None:
    role = {"reference": "PractitionerRole/prarol1234"}
    sandbox_store(sandbox_ehr, kit_copy("kit-sr-role-notify", requester=role))

    deliver(notify(client, notify_site, sandbox_ehr, "ServiceRequest/kit-sr-role-notify"))

    order = Order.objects.get()
    expected = fields.prefill_values("Practitioner", fixture_resource("Practitioner", "pra1234"), extract.Notes("P"))
    assert (order.signed_by, order.practitioner_reference) == ("PractitionerRole/prarol1234",) * 2
    assert (order.practitioner_name, order.practitioner_npi) == (
        expected["practitioner_name"],
        expected["practitioner_npi"],
    )
    assert order.hold_reasons == [EMAIL_LACKING]  # signed in the EHR; the fixture patient has no email


def press_send_notification(base: str, request: str) -> dict[str, Any]:
    """Open the sandbox EHR's page and press "Send notification" on ``request``'s row; return its JSON answer."""
    session = requests.Session()
    page = session.get(f"{base}/sandbox/", timeout=10).text
    form = next(f for f in re.findall(r'<form class="ehr-notify".*?</form>', page, flags=re.S) if request in f)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf is not None
    data = {"csrfmiddlewaretoken": csrf.group(1), "request": request, "format": "json"}
    return session.post(f"{base}/sandbox/notify", data=data, timeout=20).json()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_demo_sandbox_sites_send_notification_makes_the_order(live_server, settings) -> None:
    """The demo's path (``make demo``): ``demo_setup`` registers the sandbox site (golive/sites/sandbox.json) and
    subscribes the embedded sandbox EHR; its "Send notification" posts to the app, the worker reads and orders."""
    if not FhirResource.objects.filter(resource_type="Patient").exists():
        sandbox_resources_load(dirs=default_fixture_dirs())  # make demo-setup's sandbox_load
    settings.APP_BASE_URL = live_server.url
    call_command("demo_setup", stdout=io.StringIO())
    site = EHRSite.objects.get(name="Sandbox EHR", iss=f"{live_server.url}/sandbox/fhir")

    answer = press_send_notification(live_server.url, KIT)
    row = deliver(OutboxMessage.objects.get(topic="intake.fhir_notification", payload__focus=KIT))

    assert answer["status"] == 200 and row.status == "done"
    order = Order.objects.get(site=site)
    assert (order.source, order.placer_order_number, order.signed_by) == ("fhir_notification", KIT, PRESCRIBER)
    assert (order.status, order.hold_reasons) == ("held", [EMAIL_LACKING])  # the fixture patient has no email
    assert IntakeMessage.objects.get(site=site).order_reference == order.reference
