"""The FHIR notification endpoint (issue 20 "FHIR notify-then-pull"): the Subscriptions Backport IG's own example
bundles (tests/intake/examples, with their source), the per-site bearer token, handshake and heartbeat, a resend
that creates nothing, malformed bundles answered 400 naming the element, and the token as a secret of the site
record."""

import copy
import io
import json
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_backend_needs, site_settings_secret, site_settings_update
from healthcommerce.golive.siterecord import site_record_export, site_record_import, site_record_validate
from healthcommerce.intake.events import TOPIC_FHIR_NOTIFICATION
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.notify import MAX_BODY, NOTIFY_SCOPES
from healthcommerce.outbox.models import OutboxMessage
from tests.fulfillment.test_encryption_at_rest import plaintext_found

pytestmark = pytest.mark.django_db
EXAMPLES = Path(__file__).with_name("examples")
TOKEN = "notify-token-7d1f0c9e2b"
ISS = "https://ehr.example.org/fhir/r4"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"Bundle-r4-notification-{name}.json").read_text())


def naming(focus: str, *, event: int = 7, subscription: str = f"{ISS}/Subscription/orders") -> dict:
    """The IG's id-only example naming ``focus`` as event ``event`` of ``subscription``."""
    bundle = example("id-only")
    parameters = bundle["entry"][0]["resource"]["parameter"]
    for parameter in parameters:
        if parameter["name"] == "subscription":
            parameter["valueReference"]["reference"] = subscription
        if parameter["name"] == "notification-event":
            parameter["part"][0]["valueString"] = str(event)
            parameter["part"][2]["valueReference"]["reference"] = focus
    return bundle


@pytest.fixture
def site() -> EHRSite:
    site = EHRSite.objects.create(name="Harbor Health", iss=ISS, client_id="hc-harbor")
    site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": TOKEN})
    return site


def post(
    client, site: EHRSite, body: object, *, token: str | None = TOKEN, content_type: str = "application/fhir+json"
):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(f"/intake/fhir/{site.pk}/notify", data=data, content_type=content_type, headers=headers)


def notification_rows() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(topic=TOPIC_FHIR_NOTIFICATION))


@pytest.mark.parametrize("name", ["handshake", "heartbeat"])
def test_the_igs_handshake_and_heartbeat_are_answered_200_and_store_nothing(client, site: EHRSite, name: str) -> None:
    response = post(client, site, example(name))

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not IntakeMessage.objects.exists() and not notification_rows()
    audit = AuditEvent.objects.get(action="intake.fhir_notification")
    assert (audit.outcome, audit.detail["type"], audit.target) == ("success", name, f"EHRSite/{site.pk}")


def test_the_igs_id_only_example_is_stored_as_nothing_to_order_since_it_names_an_encounter(client, site) -> None:
    response = post(client, site, example("id-only"))

    assert response.status_code == 200
    message = IntakeMessage.objects.get()
    assert message.kind == IntakeMessage.Kind.FHIR_NOTIFICATION and message.site == site
    assert message.control_id == "https://example.org/fhir/Subscription/admission#2"
    assert (message.ack_code, message.error_location) == ("AR", "notification-event.focus")
    assert "Encounter" in message.error_text and "nothing to order" in message.error_text
    assert json.loads(message.raw) == example("id-only")  # kept as received, encrypted
    assert not notification_rows()


def test_an_event_naming_a_request_is_stored_once_and_handed_to_the_worker_in_the_same_transaction(
    client, site
) -> None:
    response = post(client, site, naming(f"{ISS}/DeviceRequest/dr-42"))

    assert response.status_code == 200
    message = IntakeMessage.objects.get()
    assert (message.control_id, message.ack_code, message.error_text) == (f"{ISS}/Subscription/orders#7", "AA", "")
    [row] = notification_rows()
    assert row.subscriber == "orders.fhir_notification"
    assert row.subject == f"IntakeMessage/{message.pk}"
    assert row.payload == {"focus": "DeviceRequest/dr-42", "site": str(site.pk)}  # ids only


def test_an_event_is_answered_well_within_the_two_seconds_an_ehr_waits(client, site) -> None:
    started = time.monotonic()
    response = post(client, site, naming(f"{ISS}/DeviceRequest/dr-42"))

    assert response.status_code == 200 and time.monotonic() - started < 2.0


def test_a_resend_of_the_same_event_answers_200_and_creates_nothing(client, site) -> None:
    bundle = naming("ServiceRequest/sr-1")  # a relative reference: on the site's own server
    assert post(client, site, bundle).status_code == 200

    again = post(client, site, bundle)

    assert again.status_code == 200
    assert "1 already received" in again.json()["issue"][0]["diagnostics"]
    assert IntakeMessage.objects.count() == 1 and len(notification_rows()) == 1
    # the next event of the same subscription is new
    assert post(client, site, naming("ServiceRequest/sr-1", event=8)).status_code == 200
    assert IntakeMessage.objects.count() == 2 and len(notification_rows()) == 2


def test_a_request_on_another_fhir_server_is_refused_and_not_handed_on(client, site) -> None:
    assert post(client, site, naming("https://elsewhere.example/fhir/DeviceRequest/dr-42")).status_code == 200

    assert IntakeMessage.objects.get().ack_code == "AR" and not notification_rows()


@pytest.mark.parametrize(
    "token", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1]], ids=["none", "empty", "wrong", "longer", "shorter"]
)
def test_a_missing_or_wrong_bearer_token_is_401_with_an_operation_outcome(client, site, token) -> None:
    response = post(client, site, naming("DeviceRequest/dr-42"), token=token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["code"] == "login"
    assert not IntakeMessage.objects.exists() and not notification_rows()
    assert AuditEvent.objects.get(action="intake.fhir_notification").outcome == "unauthorized"


def test_another_sites_token_does_not_open_this_sites_endpoint(client, site) -> None:
    other = EHRSite.objects.create(name="Other", iss="https://other.example/fhir", client_id="o")
    site_settings_update(other, {"fhir_notify_enabled": True, "fhir_notify_token": "the-other-sites-token"})

    assert post(client, site, naming("DeviceRequest/dr-42"), token="the-other-sites-token").status_code == 401


def test_an_unknown_site_or_one_with_notifications_off_is_404(client, site) -> None:
    unknown = EHRSite(pk="00000000-0000-0000-0000-000000000000", name="x", iss="https://x.example", client_id="x")
    assert post(client, unknown, example("heartbeat")).status_code == 404

    site_settings_update(site, {"fhir_notify_enabled": False})
    response = post(client, site, example("heartbeat"))

    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"
    audit = AuditEvent.objects.filter(action="intake.fhir_notification").latest("created_at")
    assert (audit.outcome, audit.detail) == ("not_found", {"site_id": str(site.pk)})
    site_settings_update(site, {"fhir_notify_enabled": True})
    site.is_active = False
    site.save(update_fields=["is_active", "updated_at"])
    assert post(client, site, example("heartbeat")).status_code == 404


def _without_type(bundle: dict) -> dict:
    params = bundle["entry"][0]["resource"]["parameter"]
    bundle["entry"][0]["resource"]["parameter"] = [p for p in params if p["name"] != "type"]
    return bundle


def _without_event_number(bundle: dict) -> dict:
    for parameter in bundle["entry"][0]["resource"]["parameter"]:
        if parameter["name"] == "notification-event":
            parameter["part"] = parameter["part"][1:]
    return bundle


def _without_events(bundle: dict) -> dict:
    params = bundle["entry"][0]["resource"]["parameter"]
    bundle["entry"][0]["resource"]["parameter"] = [p for p in params if p["name"] != "notification-event"]
    return bundle


MALFORMED = {
    "not JSON": (lambda b: "{not json", "Bundle"),
    "not a Bundle": (lambda b: {"resourceType": "Parameters"}, "Bundle.resourceType"),
    "not history": (lambda b: b | {"type": "collection"}, "Bundle.type"),
    "no entry": (lambda b: b | {"entry": []}, "Bundle.entry[0].resource"),
    "first entry not Parameters": (
        lambda b: b | {"entry": [{"resource": {"resourceType": "Encounter", "id": "e"}}]},
        "Bundle.entry[0].resource",
    ),
    "no type": (_without_type, "Parameters.parameter[type]"),
    "no event number": (_without_event_number, "Parameters.parameter[notification-event].part[event-number]"),
    "no event": (_without_events, "Parameters.parameter[notification-event]"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_bundle_is_400_naming_what_is_wrong(client, site, case: str) -> None:
    change, where = MALFORMED[case]
    response = post(client, site, change(copy.deepcopy(naming("DeviceRequest/dr-42"))))

    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert (issue["severity"], issue["code"], issue["expression"]) == ("error", "structure", [where])
    assert issue["diagnostics"].startswith(where)
    assert not IntakeMessage.objects.exists() and not notification_rows()
    assert AuditEvent.objects.get(action="intake.fhir_notification").detail == {"where": where}


def test_an_unknown_notification_type_is_named(client, site) -> None:
    bundle = example("heartbeat")
    bundle["entry"][0]["resource"]["parameter"][3]["valueCode"] = "poke"

    response = post(client, site, bundle)

    assert response.status_code == 400
    assert "'poke' is not one of handshake" in response.json()["issue"][0]["diagnostics"]


def test_only_fhir_json_within_the_size_limit_is_read(client, site) -> None:
    assert post(client, site, example("heartbeat"), content_type="application/json").status_code == 200
    assert post(client, site, "a=b", content_type="application/x-www-form-urlencoded").status_code == 415

    too_big = json.dumps(example("heartbeat") | {"padding": "x" * MAX_BODY})
    response = post(client, site, too_big)

    assert response.status_code == 413 and response.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/intake/fhir/{site.pk}/notify").status_code == 405


def test_the_endpoint_needs_no_csrf_token(site) -> None:
    from django.test import Client

    response = post(Client(enforce_csrf_checks=True), site, example("handshake"))

    assert response.status_code == 200


def test_no_audit_row_of_a_notification_holds_the_token_or_the_focus(client, site) -> None:
    post(client, site, naming(f"{ISS}/DeviceRequest/dr-42"))
    post(client, site, naming(f"{ISS}/DeviceRequest/dr-42"), token="bad")

    for audit in AuditEvent.objects.filter(action="intake.fhir_notification"):
        text = json.dumps([audit.target, audit.detail, audit.where, audit.actor])
        assert TOKEN not in text and "dr-42" not in text and "bad" not in text


def test_the_token_is_encrypted_at_rest(site) -> None:
    assert site_settings_secret(site, "fhir_notify_token") == TOKEN
    assert plaintext_found([TOKEN]) == []


def test_notify_then_pull_asks_for_its_backend_scopes_only_when_on(site) -> None:
    assert site_backend_needs(site)["FHIR notifications (notify-then-pull)"] == NOTIFY_SCOPES
    for scope in ("system/DeviceRequest.rs", "system/ServiceRequest.rs", "system/Patient.rs", "system/Coverage.rs"):
        assert scope in NOTIFY_SCOPES.split()

    site_settings_update(site, {"fhir_notify_enabled": False})

    assert "FHIR notifications (notify-then-pull)" not in site_backend_needs(site)


# --- the token in the site record: a reference to an environment variable, never the value ---------------------


def test_the_site_record_names_the_tokens_variable_never_the_token(site) -> None:
    record = site_record_export(site=site)

    assert record["fhir_notify_enabled"] is True
    assert record["fhir_notify_token"] == {"secret_ref": "env:HC_SITE_HARBOR_HEALTH_FHIR_NOTIFY_TOKEN"}
    assert TOKEN not in json.dumps(record)
    site_record_validate(record)
    out = io.StringIO()
    call_command("ehr_site", "export", "Harbor Health", stdout=out)
    assert TOKEN not in out.getvalue()


def stored_token(site: EHRSite) -> str:
    return site_settings_secret(EHRSite.objects.get(pk=site.pk), "fhir_notify_token")


def test_importing_a_record_takes_the_token_from_its_variable(site, monkeypatch) -> None:
    record = site_record_export(site=site)
    monkeypatch.setenv("HC_SITE_HARBOR_HEALTH_FHIR_NOTIFY_TOKEN", "a-new-token-from-the-vault")

    result = site_record_import(record=record, source="harbor.json")

    assert "fhir_notify_token: set from HC_SITE_HARBOR_HEALTH_FHIR_NOTIFY_TOKEN" in result.changes
    assert stored_token(site) == "a-new-token-from-the-vault"
    monkeypatch.delenv("HC_SITE_HARBOR_HEALTH_FHIR_NOTIFY_TOKEN")
    site_record_import(record=record, source="harbor.json")  # variable unset: the stored token is kept
    assert stored_token(site) == "a-new-token-from-the-vault"
    site_record_import(record=record | {"fhir_notify_token": None}, source="harbor.json")  # null removes it
    assert stored_token(site) == ""


def test_a_record_with_a_token_value_or_a_foreign_variable_is_refused(site) -> None:
    from healthcommerce.golive.siterecord import SiteRecordInvalid

    record = site_record_export(site=site)
    with pytest.raises(SiteRecordInvalid) as raised:
        site_record_validate(record | {"fhir_notify_token": TOKEN})
    assert any(line.startswith("$.fhir_notify_token") for line in raised.value.errors)
    with pytest.raises(SiteRecordInvalid) as raised:
        site_record_validate(record | {"fhir_notify_token": {"secret_ref": "env:HC_SITE_OTHER_FHIR_NOTIFY_TOKEN"}})
    assert raised.value.errors == [
        "$.fhir_notify_token.secret_ref: for the site named 'Harbor Health' it is"
        " 'env:HC_SITE_HARBOR_HEALTH_FHIR_NOTIFY_TOKEN'"
    ]


# --- the token in the admin: write-only, like the site's client secret ----------------------------------------


def change_form(site: EHRSite, **secret_fields: str) -> dict:
    from tests.site_settings import settings_form

    data = {
        "name": site.name,
        "iss": site.iss,
        "client_id": site.client_id,
        "auth_method": site.auth_method,
        "key_id": site.key_id,
        "signing_alg": site.signing_alg,
        "scopes": site.scopes,
        "other_quirks": "{}",
        "frame_origins": "",
        "is_active": "on",
        "vendor": site.vendor,
        "vendor_version": site.vendor_version,
        "backend_client_id": site.backend_client_id,
        "backend_scopes": site.backend_scopes,
    }
    return data | settings_form(site) | {f"intakesite-0-{name}": value for name, value in secret_fields.items()}


def test_the_admin_never_shows_the_token_and_can_replace_or_remove_it(admin_client, site) -> None:
    url = f"/admin/ehr/ehrsite/{site.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "Replace FHIR notification bearer token" in page and TOKEN not in page

    response = admin_client.post(url, change_form(site))  # left empty: kept
    assert response.status_code == 302, response.content.decode()[:2000]
    assert stored_token(site) == TOKEN

    admin_client.post(url, change_form(site, new_fhir_notify_token="a-token-typed-by-staff"))
    assert stored_token(site) == "a-token-typed-by-staff"
    assert "a-token-typed-by-staff" not in admin_client.get(url).content.decode()

    admin_client.post(url, change_form(site, remove_fhir_notify_token="on"))
    assert stored_token(site) == ""


def test_the_token_gets_no_historical_copy(site) -> None:
    from healthcommerce.intake.models import IntakeSite

    history = IntakeSite.history.model
    assert "fhir_notify_token" not in {f.name for f in history._meta.fields}
    assert "fhir_notify_enabled" in {f.name for f in history._meta.fields}
    assert history.objects.filter(site=site).exists()  # the change of the flag is kept
