"""The sandbox EHR as the notification sender (issue 20 "Test ... with the sandbox EHR as the sender"): its "Send
notification" button next to a pending request posts a Subscriptions Backport IG event-notification to the app's
endpoint (the app as pytest-django's ``live_server``) with the subscription's bearer token, and shows the answer."""

import html
import json
import re

import pytest
import requests

from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.notify import notification_parse
from healthcommerce.outbox.models import OutboxMessage
from tests.conftest import SandboxEHR

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
TOKEN = "sandbox-button-token-5e0b"
DRAFT = "DeviceRequest/devreq-015-e0250"


@pytest.fixture
def subscribed(live_server, sandbox_ehr: SandboxEHR) -> EHRSite:
    """The sandbox as a site with FHIR notifications on, and the sandbox subscribed to the app's endpoint."""
    site = EHRSite.objects.create(name="Sandbox", iss=sandbox_ehr.fhir_base, client_id="test-app")
    site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": TOKEN})
    endpoint = f"{live_server.url}/intake/fhir/{site.pk}/notify"
    sandbox_ehr.manage("sandbox_subscription", "add", "--endpoint", endpoint, "--token", TOKEN)
    return site


def press(sandbox: SandboxEHR, request: str, **extra: str) -> requests.Response:
    """Open the EHR page and press "Send notification" on ``request``'s row (the page's own form and CSRF token)."""
    session = requests.Session()
    page = session.get(f"{sandbox.base}/sandbox/", timeout=10).text
    forms = re.findall(r'<form class="ehr-notify".*?</form>', page, flags=re.S)
    form = next(f for f in forms if f'value="{request}"' in f)
    assert "Send notification" in form
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf is not None
    data = {"csrfmiddlewaretoken": csrf.group(1), "request": request, "practitioner": "pra1234"} | extra
    return session.post(f"{sandbox.base}/sandbox/notify", data=data, timeout=20)


def test_send_notification_posts_an_id_only_event_for_the_request_and_shows_the_apps_answer(
    subscribed, sandbox_ehr
) -> None:
    response = press(sandbox_ehr, DRAFT)

    assert response.status_code == 200
    page = html.unescape(response.text)
    assert "HTTP <span data-status>200</span>" in page
    assert "1 event(s) stored" in page
    message = IntakeMessage.objects.get(site=subscribed)
    sent = json.loads(message.raw)
    parsed = notification_parse(message.raw.encode())  # the sandbox's bundle reads as a Backport IG notification
    assert parsed.type == "event-notification" and parsed.events[0].focus == f"{sandbox_ehr.fhir_base}/{DRAFT}"
    assert message.control_id == f"{sandbox_ehr.fhir_base}/Subscription/healthcommerce-orders#{parsed.events[0].number}"
    assert sent["type"] == "history" and sent["entry"][0]["resource"]["resourceType"] == "Parameters"
    assert json.dumps(sent, indent=2) in page  # the page shows the bundle it sent
    row = OutboxMessage.objects.get(topic="intake.fhir_notification")
    assert row.payload == {"focus": DRAFT, "site": str(subscribed.pk)}


def test_each_press_is_a_new_event(subscribed, sandbox_ehr) -> None:
    first = press(sandbox_ehr, DRAFT, format="json").json()
    second = press(sandbox_ehr, DRAFT, format="json").json()

    assert (first["status"], second["status"]) == (200, 200)
    numbers = [notification_parse(json.dumps(r["bundle"]).encode()).events[0].number for r in (first, second)]
    assert int(numbers[1]) == int(numbers[0]) + 1
    assert IntakeMessage.objects.filter(site=subscribed).count() == 2


def test_the_answer_to_a_wrong_token_is_shown_and_nothing_is_stored(subscribed, live_server, sandbox_ehr) -> None:
    endpoint = f"{live_server.url}/intake/fhir/{subscribed.pk}/notify"
    sandbox_ehr.manage("sandbox_subscription", "add", "--endpoint", endpoint, "--token", "not-the-sites-token")

    answer = press(sandbox_ehr, DRAFT, format="json").json()

    assert answer["status"] == 401 and json.loads(answer["body"])["resourceType"] == "OperationOutcome"
    assert not IntakeMessage.objects.exists()


def test_a_request_that_is_not_pending_is_refused_by_the_sandbox(subscribed, sandbox_ehr) -> None:
    session = requests.Session()
    page = session.get(f"{sandbox_ehr.base}/sandbox/", timeout=10).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert csrf is not None

    response = session.post(
        f"{sandbox_ehr.base}/sandbox/notify",
        data={"csrfmiddlewaretoken": csrf.group(1), "request": "DeviceRequest/no-such-request"},
        timeout=10,
    )

    assert response.status_code == 400 and "Unknown or not pending request" in response.text
    assert not IntakeMessage.objects.exists()


def test_the_sandbox_never_serves_a_subscription_with_its_token(subscribed, sandbox_ehr) -> None:
    response = requests.get(f"{sandbox_ehr.fhir_base}/Subscription/healthcommerce-orders", timeout=10)

    assert response.status_code == 404 and TOKEN not in response.text
    assert "Subscription" not in requests.get(f"{sandbox_ehr.fhir_base}/metadata", timeout=10).text
