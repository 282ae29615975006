"""Alert rules run by beat over the per-minute buckets: specific texts, hysteresis (each alert opens once and
resolves once), silence in working hours, delivery by email and a signed webhook through the outbox
(docs/reliability.md "Integration health")."""

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import transaction
from standardwebhooks import Webhook

from healthcommerce.monitoring import rules
from healthcommerce.monitoring.models import Alert, IntegrationMinute
from healthcommerce.monitoring.services import alerts_evaluate
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver

SECRET = "whsec_" + "aGVhbHRoY29tbWVyY2UtYWxlcnRzLXRlc3Qtc2VjcmV0"


@pytest.fixture(autouse=True)
def only_rate_rules(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALERT_RULES = ["auth_failures", "fhir_errors", "commerce_errors"]
    settings.ALERT_EMAILS = ["oncall@example-health.org"]


def token_calls(calls: Callable[..., None], *, failed: int, ok: int, site: str = "Clinic A") -> None:
    IntegrationMinute.objects.filter(site=site).delete()
    calls(site, "token", "401", failed)
    calls(site, "token", "ok", ok)


def test_authentication_failures_open_after_two_evaluations_with_a_specific_text(calls) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=18, ok=82)
    assert alerts_evaluate() == []  # first breach: pending, nobody told
    assert Alert.objects.get().status == Alert.Status.PENDING
    (opened,) = alerts_evaluate()
    assert opened.status == Alert.Status.OPEN
    assert opened.text == (
        "Authentication failures on Clinic A token endpoint at 18% over the last 10 minutes (threshold 15%): "
        "18 of 100 calls (401 18)"
    )
    assert alerts_evaluate() == []  # still open: not again
    assert Alert.objects.filter(status=Alert.Status.OPEN).count() == 1


def test_a_single_spike_never_opens(calls) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=30, ok=70)
    alerts_evaluate()
    token_calls(calls, failed=0, ok=100)
    alerts_evaluate()
    assert not Alert.objects.exists()


def test_it_resolves_once_after_three_clear_evaluations_and_does_not_flap(calls) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=20, ok=80)
    alerts_evaluate(), alerts_evaluate()
    # Hovering just under the threshold (above 80% of it) keeps it open; it never resolves and reopens.
    for failed in (14, 16, 14, 13, 16, 14):
        token_calls(calls, failed=failed, ok=100 - failed)
        assert alerts_evaluate() == []
    token_calls(calls, failed=2, ok=98)
    assert alerts_evaluate() == [] and alerts_evaluate() == []
    (resolved,) = alerts_evaluate()
    assert resolved.status == Alert.Status.RESOLVED and resolved.resolved_at
    assert alerts_evaluate() == []
    topics = list(OutboxMessage.objects.order_by("created_at").values_list("subscriber", "payload"))
    assert topics == [
        ("monitoring.alert_email", {"event": "opened"}),
        ("monitoring.alert_webhook", {"event": "opened"}),
        ("monitoring.alert_email", {"event": "resolved"}),
        ("monitoring.alert_webhook", {"event": "resolved"}),
    ]


def test_too_few_calls_say_nothing(calls) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=2, ok=1)
    alerts_evaluate(), alerts_evaluate()
    assert not Alert.objects.exists()


def test_fhir_errors_leave_out_not_found_and_commerce_errors_are_per_backend(calls) -> None:  # type: ignore[no-untyped-def]
    calls("Clinic A", "fhir:Patient", "404", 50)
    calls("Clinic A", "fhir:Coverage", "ok", 40)
    calls("Clinic A", "fhir:Coverage", "timeout", 5)
    calls("Clinic A", "fhir:Patient", "5xx", 10)
    calls("commerce:webhook", "commerce_submit", "429", 3)
    calls("commerce:webhook", "commerce_submit", "ok", 7)
    alerts_evaluate()
    opened = {a.rule: a.text for a in alerts_evaluate()}
    assert opened == {
        "fhir_errors": "FHIR errors on Clinic A at 14% over the last 10 minutes (threshold 10%): "
        "15 of 105 calls (5xx 10, timeout 5)",
        "commerce_errors": "Commerce errors on commerce:webhook at 30% over the last 10 minutes (threshold 10%): "
        "3 of 10 calls (429 3)",
    }


def test_calls_outside_the_window_do_not_count(calls) -> None:  # type: ignore[no-untyped-def]
    calls("Clinic A", "token", "401", 50, minutes_ago=11)
    calls("Clinic A", "token", "ok", 50, minutes_ago=2)
    alerts_evaluate(), alerts_evaluate()
    assert not Alert.objects.exists()


# --- silence -------------------------------------------------------------------------------------------------


def at(hour: int, *, weekday: int = 2) -> datetime:
    """A Wednesday (weekday 2) in December 2026 at ``hour`` o'clock, New York time."""
    return datetime(2026, 12, 7 + weekday, hour, 5, tzinfo=ZoneInfo("America/New_York"))


def test_a_site_that_goes_quiet_in_working_hours_is_reported(calls, settings) -> None:  # type: ignore[no-untyped-def]
    now = at(11)
    calls("Clinic A", "fhir:Patient", "ok", 40, minutes_ago=90, now=now)
    calls("Clinic A", "token", "ok", 10, minutes_ago=60, now=now)
    calls("Clinic B", "token", "ok", 3, minutes_ago=60, now=now)  # too little traffic to miss
    calls("Clinic C", "token", "ok", 30, minutes_ago=60, now=now)
    calls("Clinic C", "token", "ok", 1, minutes_ago=5, now=now)  # still talking
    found = rules.silence(now, {})
    assert [(o.site, o.value) for o in found.observations] == [("Clinic A", 1.0), ("Clinic C", 0.0)]
    assert found.observations[0].text == (
        "No calls to Clinic A for 30 minutes in working hours (50 calls in the 3 hours before)"
    )


def test_silence_at_night_or_at_the_weekend_is_held_not_reported(calls) -> None:  # type: ignore[no-untyped-def]
    for now in (at(22), at(11, weekday=5)):
        calls("Clinic A", "token", "ok", 40, minutes_ago=60, now=now)
        found = rules.silence(now, {})
        assert found.observations == [] and found.held == {"Clinic A"}


def test_an_open_silence_alert_is_neither_resolved_nor_reopened_overnight(calls, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.ALERT_RULES = ["silence"]
    Alert.objects.create(rule="silence", site="Clinic A", status=Alert.Status.OPEN, text="No calls ...", breaches=2)
    monkeypatch.setattr(rules, "working_hours", lambda now: False)
    calls("Clinic A", "token", "ok", 40, minutes_ago=60)
    for _ in range(5):
        assert alerts_evaluate() == []
    assert Alert.objects.get().status == Alert.Status.OPEN


# --- delivery ------------------------------------------------------------------------------------------------


class Receiver:
    """A loopback webhook receiver that answers ``status`` and keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:  # type: ignore[no-untyped-def]
    server = Receiver()
    settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET = server.url, SECRET
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def deliver_all() -> None:
    for pk in OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).values_list("pk", flat=True):
        outbox_deliver(message_id=pk)


def test_an_alert_is_emailed_and_posted_signed_once_when_it_opens_and_once_when_it_resolves(calls, receiver) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=18, ok=82)
    alerts_evaluate(), alerts_evaluate()
    deliver_all()
    token_calls(calls, failed=0, ok=100)
    for _ in range(4):
        alerts_evaluate()
    deliver_all()
    deliver_all()  # nothing left to send twice

    assert [m.subject for m in mail.outbox] == [
        "[healthcommerce] ALERT auth_failures on Clinic A",
        "[healthcommerce] RESOLVED auth_failures on Clinic A",
    ]
    assert mail.outbox[0].to == ["oncall@example-health.org"]
    assert mail.outbox[0].body.startswith(
        "Authentication failures on Clinic A token endpoint at 18% over the last 10 minutes (threshold 15%)"
    )
    assert [json.loads(body)["type"] for _, body in receiver.got] == ["alert.opened", "alert.resolved"]
    for headers, body in receiver.got:
        verified = Webhook(SECRET).verify(body, headers)  # raises on a bad signature
        assert verified["data"]["rule"] == "auth_failures" and verified["data"]["site"] == "Clinic A"
    opened = json.loads(receiver.got[0][1])
    assert set(opened["data"]) == {
        "id",
        "rule",
        "site",
        "status",
        "text",
        "value",
        "threshold",
        "opened_at",
        "resolved_at",
    }
    assert receiver.got[0][0]["webhook-id"].endswith(":opened")
    print("\nEMAIL:\n" + mail.outbox[0].subject + "\n\n" + mail.outbox[0].body)  # shown with -s
    print("WEBHOOK:\n" + json.dumps({k: v for k, v in receiver.got[0][0].items() if k.startswith("webhook")}))
    print(receiver.got[0][1].decode())


def test_a_webhook_that_answers_503_is_retried_by_the_outbox(calls, receiver, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALERT_EMAILS = []
    receiver.status = 503
    token_calls(calls, failed=18, ok=82)
    alerts_evaluate(), alerts_evaluate()
    deliver_all()
    row = OutboxMessage.objects.get(subscriber="monitoring.alert_webhook")
    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "alert_webhook_http_503")
    assert OutboxMessage.objects.get(subscriber="monitoring.alert_email").status == OutboxMessage.Status.DONE


def test_two_evaluations_at_once_open_the_alert_once(calls) -> None:  # type: ignore[no-untyped-def]
    token_calls(calls, failed=18, ok=82)
    alerts_evaluate()
    with transaction.atomic():
        first = alerts_evaluate()
    second = alerts_evaluate()
    assert len(first) == 1 and second == []
    assert OutboxMessage.objects.filter(subscriber="monitoring.alert_email").count() == 1
