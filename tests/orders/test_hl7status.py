"""Status back over HL7 v2 (issue 20 "Status back"): an order that came as HL7 v2 tells its site's interface engine,
over a real MLLP connection on loopback, when it is submitted, shipped, delivered or cancelled (ORM^O01, ORC-1 SC,
ORC-5 from HL7 Table 0038); AE, AR, silence and a refused connection retry through the outbox with backoff, the
limit dead-letters with an order event, every try is counted per site and the monitoring rule alerts "<site>: HL7
status peer not acknowledging". TLS with our client certificate when configured."""

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import hl7
import pytest
from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import HCPCS, Product
from healthcommerce.core import metrics
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.models import IntakeSite
from healthcommerce.monitoring.models import Alert, IntegrationMinute
from healthcommerce.monitoring.services import alerts_evaluate
from healthcommerce.orders.events import (
    TOPIC_ORDER_CANCELLED,
    TOPIC_ORDER_STATUS_CHANGED,
    order_event_key,
    order_subject,
)
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.services import order_cancel
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver, outbox_publish
from tests.fulfillment.backends.webhook.conftest import make_pki
from tests.pipeline import deliver, signed

pytestmark = pytest.mark.django_db

START, END = b"\x0b", b"\x1c\x0d"
PLACER = "ORD-77123"
PATIENT_ID = "eX7Yw2n8Qk"
PATIENT_NAME = "Camila Lopez"


# --- a real MLLP receiver on loopback -------------------------------------------------------------------------


@dataclass
class MllpReceiver:
    """An interface engine's inbound MLLP port on ``127.0.0.1:<ephemeral>``: it keeps every message it reads
    (``messages``) and answers each with the next of ``answers`` (the last one repeats): ``AA``, ``AE``, ``AR``
    (an ACK with that MSA-1 and MSA-2 echoing MSH-10), ``other_id`` (an AA for another message), ``silent`` (no
    answer, the connection held open), ``close`` (closed without an answer) or ``junk`` (bytes that are no frame).
    ``peer_names`` holds the common name of each client certificate a TLS receiver saw."""

    answers: list[str] = field(default_factory=lambda: ["AA"])
    ssl_context: ssl.SSLContext | None = None
    messages: list[str] = field(default_factory=list)
    peer_names: list[str] = field(default_factory=list)
    server: Any = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def answer(self, message: str, kind: str) -> str:
        control_id = message.split("\r", 1)[0].split("|")[9]
        code, echoed = ("AA", "SOMETHING-ELSE") if kind == "other_id" else (kind, control_id)
        return (
            f"MSH|^~\\&|EPIC|SANDBOXHOSP|HEALTHCOMMERCE|HEALTHCOMMERCE|20261206120000||ACK^O01^ACK|ACK{len(self.messages)}|"
            f"P|2.5.1\rMSA|{code}|{echoed}|{'Received' if code == 'AA' else 'Refused by the test'}\r"
        )

    def start(self) -> "MllpReceiver":
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                sock.settimeout(10)
                if receiver.ssl_context is not None:
                    try:
                        sock = receiver.ssl_context.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                    subject = dict(item[0] for item in (sock.getpeercert() or {}).get("subject", ()))
                    receiver.peer_names.append(subject.get("commonName", ""))
                buffer = b""
                while END not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                message = buffer[buffer.index(START) + 1 : buffer.index(END)].decode("utf-8")
                kind = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                receiver.messages.append(message)
                if kind == "silent":
                    with contextlib.suppress(OSError):
                        sock.recv(1)  # until the client gives up and closes
                    return
                if kind == "close":
                    return
                if kind == "junk":
                    sock.sendall(b"HELLO" + END)  # not an MLLP frame
                    return
                sock.sendall(START + receiver.answer(message, kind).encode() + END)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[MllpReceiver]:
    running = MllpReceiver().start()
    yield running
    running.stop()


def closed_port() -> str:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


# --- orders -----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast(settings: Any) -> None:
    settings.HL7_STATUS_TIMEOUT_SECONDS = 0.5
    metrics.pending_clear()


@pytest.fixture
def site(db: None) -> EHRSite:
    return EHRSite.objects.create(name="Sandbox EHR", iss="https://ehr.example/api/FHIR/R4", client_id="hc")


@pytest.fixture
def hl7_site(site: EHRSite, receiver: MllpReceiver) -> EHRSite:
    intake = IntakeSite.of(site)
    intake.hl7_enabled = True
    intake.hl7_sending_application, intake.hl7_sending_facility = "EPIC", "SANDBOXHOSP"
    intake.hl7_status_endpoint = receiver.endpoint
    intake.save()
    return site


@pytest.fixture
def make_order(site: EHRSite) -> Callable[..., Order]:
    product = Product.objects.create(sku="CPAP-1", name="CPAP", kind=Product.Kind.DEVICE, hcpcs_code="E0601")

    def make(**overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "site": site,
            "source": Order.Source.HL7V2,
            "placer_order_number": PLACER,
            "status": Order.Status.SIGNED,
            "patient_fhir_id": PATIENT_ID,
            "request_system": HCPCS,
            "request_code": "E0601",
            "product": product,
            "order_date": date(2026, 12, 1),
            "patient_name": PATIENT_NAME,
            "patient_birth_date": date(1987, 9, 12),
            "practitioner_name": "Ann Hale",
            "practitioner_npi": "1234567893",
            "ship_to": {"line": ["7525 Colshire Dr"], "city": "McLean", "state": "VA", "postal_code": "22102"},
            "contact_email": "camila.lopez@example.org",
            "payer_name": "Blue Ridge Health Plan",
            "payer_member_id": "BRH987654321",
            "signed_by": "1234567893",
            "signed_at": timezone.now(),
            "content_hash": "a" * 64,
        }
        return Order.objects.create(**(fields | overrides))

    return make


def publish(order: Order, topic: str, payload: dict[str, str] | None = None) -> OutboxMessage:
    """Publish ``topic`` for ``order`` as the stage that owns it does; return the status back's row."""
    key = order_event_key(order) + (f":{payload['status']}" if payload else "")
    with transaction.atomic():
        rows = outbox_publish(topic=topic, key=key, subject=order_subject(order), payload=payload)
    return next(row for row in rows if row.subscriber.startswith("orders.hl7_status"))


def deliver_now(message: OutboxMessage) -> OutboxMessage:
    """Deliver ``message`` now, whatever its backoff; return it reloaded."""
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=message.pk)
    return OutboxMessage.objects.get(pk=message.pk)


def status_row(order: Order) -> OutboxMessage:
    return OutboxMessage.objects.get(subject=order_subject(order), subscriber="orders.hl7_status_submitted")


def sent(receiver: MllpReceiver, index: int = -1) -> hl7.Message:
    return hl7.parse(receiver.messages[index])


def counted(outcome: str) -> int:
    return sum(b.count for (_, _, kind, o), b in metrics._pending.items() if kind == "hl7_status" and o == outcome)


# --- the message and the hand-over ------------------------------------------------------------------------------


def test_a_submitted_hl7_order_tells_the_ehr_in_process_and_is_done_on_aa(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order()

    deliver(signed(order))  # the local backend takes it; order.submitted goes to the status back (and the link)

    order.refresh_from_db()
    row = status_row(order)
    msg = sent(receiver)
    assert order.status == Order.Status.SUBMITTED
    assert len(receiver.messages) == 1
    assert (row.status, row.result) == (OutboxMessage.Status.DONE, f"AA:{order.reference}.SUB")
    assert str(msg.segment("MSH")[9]) == "ORM^O01^ORM_O01"
    assert [str(msg.segment("MSH")[n]) for n in (3, 4, 5, 6)] == [
        "HEALTHCOMMERCE",
        "HEALTHCOMMERCE",
        "EPIC",
        "SANDBOXHOSP",
    ]
    assert (str(msg.segment("MSH")[10]), str(msg.segment("MSH")[12])) == (f"{order.reference}.SUB", "2.5.1")
    assert [str(msg.segment("ORC")[n]) for n in (1, 2, 3, 5)] == [
        "SC",
        f"{PLACER}^EPIC",
        f"{order.reference}^HEALTHCOMMERCE",
        "IP",
    ]
    assert str(msg.segment("PID")[3]) == f"{PATIENT_ID}^^^^FHIR"
    event = OrderEvent.objects.get(order=order, kind="hl7_status_sent")
    assert event.detail == {
        "status": "submitted",
        "order_status": "IP",
        "control_id": f"{order.reference}.SUB",
        "ack": "AA",
    }
    assert event.label == "Status sent to the EHR"
    assert AuditEvent.objects.filter(action="intake.hl7_status", target=f"Order/{order.pk}").count() == 1
    assert counted("ok") == 1


def test_the_message_names_the_order_and_nothing_else_about_the_patient(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order(status=Order.Status.SUBMITTED)

    deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    text = receiver.messages[0]
    assert [line.split("|", 1)[0] for line in text.strip("\r").split("\r")] == ["MSH", "PID", "ORC"]
    for value in ("Camila", "Lopez", "1987", "Colshire", "22102", "camila", "Blue Ridge", "BRH987654321", "E0601",
                  "CPAP", "Hale", "1234567893"):  # fmt: skip
        assert value not in text


def test_an_order_without_the_patients_fhir_id_sends_no_pid(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order(status=Order.Status.SUBMITTED, patient_fhir_id="")

    deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert [line.split("|", 1)[0] for line in receiver.messages[0].strip("\r").split("\r")] == ["MSH", "ORC"]


def test_shipped_delivered_and_cancelled_map_to_table_0038_each_with_its_own_control_id(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    shipped_then_delivered = make_order(status=Order.Status.FULFILLED)
    cancelled = make_order(status=Order.Status.SUBMITTED, placer_order_number="ORD-2")

    deliver_now(publish(shipped_then_delivered, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))
    deliver_now(publish(shipped_then_delivered, TOPIC_ORDER_STATUS_CHANGED, {"status": "delivered"}))
    order_cancel(order=cancelled, actor="admin:test")
    deliver_now(OutboxMessage.objects.get(subject=order_subject(cancelled), subscriber="orders.hl7_status_cancelled"))

    seen = [
        (str(m.segment("MSH")[10]), str(m.segment("ORC")[5]), str(m.segment("ORC")[16]))
        for m in map(hl7.parse, receiver.messages)
    ]
    ref, other = shipped_then_delivered.reference, cancelled.reference
    assert seen == [
        (f"{ref}.SHP", "IP", "shipped^Shipped by the supplier^L"),
        (f"{ref}.DLV", "CM", "delivered^Delivered^L"),
        (f"{other}.CAN", "CA", "cancelled^Cancelled^L"),
    ]
    assert all(str(hl7.parse(m).segment("ORC")[1]) == "SC" for m in receiver.messages)


def test_a_status_that_arrives_after_a_later_one_was_sent_is_not_sent(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order(status=Order.Status.FULFILLED)
    deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "delivered"}))

    late = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert (late.status, late.result) == (OutboxMessage.Status.DONE, "skipped:superseded")
    assert len(receiver.messages) == 1


def test_orders_from_the_app_and_sites_without_an_endpoint_get_no_status_row(
    site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    from_app = make_order(source=Order.Source.APP, status=Order.Status.SUBMITTED)
    no_endpoint = make_order(status=Order.Status.SUBMITTED)  # the site's IntakeSite has no status endpoint

    with transaction.atomic():
        for order in (from_app, no_endpoint):
            key = order_event_key(order) + ":shipped"
            rows = outbox_publish(
                topic=TOPIC_ORDER_STATUS_CHANGED, key=key, subject=order_subject(order), payload={"status": "shipped"}
            )
            assert [row.subscriber for row in rows] == ["purchaselinks.notify_status"]

    assert not OutboxMessage.objects.filter(subscriber__startswith="orders.hl7_status").exists()


def test_a_row_whose_site_lost_its_endpoint_since_is_done_without_sending(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order(status=Order.Status.SUBMITTED)
    row = publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"})
    IntakeSite.objects.filter(site=hl7_site).update(hl7_status_endpoint="")

    done = deliver_now(row)

    assert (done.status, done.result) == (OutboxMessage.Status.DONE, "skipped:no_endpoint")
    assert receiver.messages == []
    assert counted("ok") == 0


def test_delimiters_in_the_placer_number_are_escaped(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver
) -> None:
    order = make_order(status=Order.Status.SUBMITTED, placer_order_number="A|B^C&D~E\\F")

    deliver_now(publish(order, TOPIC_ORDER_CANCELLED))

    assert receiver.messages[0].split("\r")[2].split("|")[2] == "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F^EPIC"


# --- retries, dead letters, the alert --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("AE", "hl7_status_AE"),
        ("AR", "hl7_status_AR"),
        ("silent", "hl7_status_timeout"),
        ("close", "hl7_status_connection"),
        ("other_id", "hl7_status_other"),
        ("junk", "hl7_status_other"),
    ],
)
def test_anything_but_aa_is_retried_later_with_the_same_control_id(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver, answer: str, code: str
) -> None:
    order = make_order(status=Order.Status.SUBMITTED)
    receiver.answers = [answer, "AA"]

    first = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert (first.status, first.last_error, first.attempts) == (OutboxMessage.Status.PENDING, code, 1)
    assert first.available_at > timezone.now() - timedelta(seconds=1)
    assert not OrderEvent.objects.filter(order=order, kind="hl7_status_sent").exists()
    second = deliver_now(first)
    assert second.status == OutboxMessage.Status.DONE
    controls = [str(hl7.parse(m).segment("MSH")[10]) for m in receiver.messages]
    assert controls == [f"{order.reference}.SHP"] * 2  # the EHR recognises the resend
    assert counted("ok") == 1 and counted(code.removeprefix("hl7_status_")) == 1


def test_a_refused_connection_is_retried(site: EHRSite, make_order: Callable[..., Order]) -> None:
    intake = IntakeSite.of(site)
    intake.hl7_status_endpoint = closed_port()
    intake.save()
    order = make_order(status=Order.Status.SUBMITTED)

    row = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "delivered"}))

    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "hl7_status_connection")
    assert counted("connection") == 1


def test_after_the_last_attempt_the_row_is_dead_and_the_order_says_the_status_did_not_reach_the_ehr(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver, settings: Any
) -> None:
    settings.FULFILLMENT_MAX_ATTEMPTS = 3
    receiver.answers = ["AR"]
    order = make_order(status=Order.Status.SUBMITTED)
    row = publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"})

    for _ in range(3):
        row = deliver_now(row)

    assert (row.status, row.last_error) == (OutboxMessage.Status.DEAD, "hl7_status_AR")
    failed = OrderEvent.objects.get(order=order, kind="hl7_status_failed")
    assert failed.detail == {"status": "shipped", "code": "hl7_status_AR", "attempts": 3}
    assert failed.label == "Status not delivered to the EHR"
    assert AuditEvent.objects.filter(action="outbox.dead_letter", target=order_subject(order)).count() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED  # the order itself is untouched
    assert len(receiver.messages) == 3


def test_a_peer_that_stops_acknowledging_opens_an_alert_naming_the_site(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver, settings: Any
) -> None:
    settings.ALERT_RULES = ["hl7_status"]
    settings.ALERT_EMAILS = ["oncall@example-health.org"]
    receiver.answers = ["AE"]
    for n in range(6):
        order = make_order(status=Order.Status.SUBMITTED, placer_order_number=f"ORD-{n}")
        deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))
    assert metrics.flush(force=True) >= 1
    assert IntegrationMinute.objects.filter(site="Sandbox EHR", endpoint="hl7_status", outcome="AE").exists()

    assert alerts_evaluate() == []  # the first breach is pending (hysteresis)
    (opened,) = alerts_evaluate()

    assert (opened.rule, opened.site, opened.status) == ("hl7_status", "Sandbox EHR", Alert.Status.OPEN)
    assert opened.text.startswith("Sandbox EHR: HL7 status peer not acknowledging: 6 of 6 status messages")
    assert "(AE 6;" in opened.text


def test_an_acknowledging_peer_opens_no_alert_and_status_messages_do_not_count_for_silence(
    hl7_site: EHRSite, make_order: Callable[..., Order], receiver: MllpReceiver, settings: Any
) -> None:
    from healthcommerce.monitoring.rules import silence

    settings.ALERT_RULES = ["hl7_status"]
    for n in range(6):
        order = make_order(status=Order.Status.SUBMITTED, placer_order_number=f"ORD-{n}")
        deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))
    metrics.flush(force=True)

    assert alerts_evaluate() == [] and alerts_evaluate() == []
    assert not Alert.objects.exists()
    IntegrationMinute.objects.update(minute=timezone.now() - timedelta(hours=1))  # traffic an hour ago, none since
    assert silence(timezone.now(), {}).observations == []


# --- TLS --------------------------------------------------------------------------------------------------------


def tls_receiver(pki: Any) -> MllpReceiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(certfile=str(pki.server_cert), keyfile=str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED
    return MllpReceiver(ssl_context=context).start()


def test_over_tls_we_present_our_client_certificate_and_check_the_peer(
    site: EHRSite, make_order: Callable[..., Order], settings: Any, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    peer = tls_receiver(pki)
    try:
        intake = IntakeSite.of(site)
        intake.hl7_sending_application, intake.hl7_status_endpoint = "EPIC", peer.endpoint
        intake.save()
        settings.HL7_STATUS_TLS_CERT, settings.HL7_STATUS_TLS_KEY = str(pki.client_cert), str(pki.client_key)
        settings.HL7_STATUS_TLS_CA = str(pki.ca)
        order = make_order(status=Order.Status.SUBMITTED)

        done = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

        assert done.status == OutboxMessage.Status.DONE
        assert peer.peer_names == ["healthcommerce client"]
        settings.HL7_STATUS_TLS_CA = str(pki.other_ca)  # a peer we cannot verify gets nothing
        retried = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "delivered"}))
        assert (retried.status, retried.last_error) == (OutboxMessage.Status.PENDING, "hl7_status_other")
        assert len(peer.messages) == 1
    finally:
        peer.stop()


def test_should_the_subject_filter_break_the_event_still_publishes_and_the_handler_skips(
    site: EHRSite, make_order: Callable[..., Order], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(subjects: list[str]) -> list[str]:
        raise RuntimeError("bug")

    monkeypatch.setattr("healthcommerce.orders.hl7status.hl7_status_subjects", broken)
    from_app = make_order(source=Order.Source.APP, status=Order.Status.SUBMITTED)

    row = deliver_now(publish(from_app, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert (row.status, row.result) == (OutboxMessage.Status.DONE, "skipped:not_hl7v2")


def test_production_sends_nothing_in_clear_text_to_another_host(
    site: EHRSite, make_order: Callable[..., Order], settings: Any
) -> None:
    settings.PRODUCTION = True
    intake = IntakeSite.of(site)
    intake.hl7_status_endpoint = "ehr-interface.example:2575"
    intake.save()
    order = make_order(status=Order.Status.SUBMITTED)

    row = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert (row.status, row.last_error) == (OutboxMessage.Status.DEAD, "hl7_status_tls_required")
    assert OrderEvent.objects.get(order=order, kind="hl7_status_failed").detail["code"] == "hl7_status_tls_required"
    assert counted("connection") == counted("other") == 0  # nothing was even tried


def test_unreadable_tls_files_retry_with_a_code_that_says_so(
    hl7_site: EHRSite, make_order: Callable[..., Order], settings: Any, tmp_path: Path
) -> None:
    settings.HL7_STATUS_TLS_CERT = str(tmp_path / "missing.pem")
    order = make_order(status=Order.Status.SUBMITTED)

    row = deliver_now(publish(order, TOPIC_ORDER_STATUS_CHANGED, {"status": "shipped"}))

    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "hl7_status_tls_config")
