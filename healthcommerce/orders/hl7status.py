"""Status back over HL7 v2: tell the EHR that sent an order (issue 20 "Status back", SPEC-20 H5) when it is
submitted, shipped, delivered or cancelled, with an ORM^O01 whose ORC-1 is ``SC`` (status changed) sent over MLLP
to the site's inbound interface (``IntakeSite.hl7_status_endpoint``).

Only orders that came as HL7 v2 (``Order.Source.HL7V2``) at a site with an endpoint get one: the subscribers get
outbox rows for those orders only (``hl7_status_subjects``, their ``wants``), and a row whose order or site changed
since is done at once (result ``skipped:<why>``). The subscribers (``STATUS_SUBSCRIBERS``, registered in
``orders/apps.py``) follow ``order.submitted``, ``order.status_changed`` (payload ``{"status": ...}``) and
``order.cancelled`` through the outbox, so a peer that is down or answers AE/AR is retried with backoff and
dead-lettered after ``FULFILLMENT_MAX_ATTEMPTS`` (``hl7_status_dead``: an order event "Status not delivered to the
EHR"). Each try is counted per site as endpoint kind ``hl7_status`` (``core.metrics``); the monitoring rule
``hl7_status`` alerts "<site>: HL7 status peer not acknowledging".

The message (HL7 v2.5.1 chapter 4, ORM^O01; ``hl7_status_message``) carries what identifies the order and its status,
nothing else: MSH, a PID with PID-3 only (the patient's FHIR id, CX-5 ``FHIR``, when the order came with one; no
PID otherwise), and an ORC with ORC-1 ``SC``,
ORC-2 the placer order number, ORC-3 our reference, ORC-5 the order status (HL7 Table 0038, ``ORDER_STATUS``),
ORC-9 when it changed and ORC-16 our own status (``submitted^Sent to the supplier^L``...). No name, birth date,
address, item, payer or tracking number. MSH-10 is ``<reference>.<SUB|SHP|DLV|CAN>``: the same for a retry of the
same (order, status), so the receiver recognises a resend (HL7 v2.5.1 2.10.1 "original acknowledgment mode").
The interface team's description, with a sample: docs/interface-hl7-status.md.
"""

import logging
import ssl
import time
from datetime import UTC, datetime

import hl7
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.core import metrics
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.mllpclient import mllp_send
from healthcommerce.intake.models import IntakeSite
from healthcommerce.orders.events import (
    TOPIC_ORDER_CANCELLED,
    TOPIC_ORDER_STATUS_CHANGED,
    TOPIC_ORDER_SUBMITTED,
    order_for_subject,
    orders_for_subjects,
)
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done

logger = logging.getLogger(__name__)

ACTOR = "system:hl7status"
ENDPOINT_KIND = "hl7_status"
# Subscriber name -> topic (orders/apps.py registers each with ``hl7_status_send`` and ``hl7_status_dead``).
STATUS_SUBSCRIBERS = {
    "orders.hl7_status_submitted": TOPIC_ORDER_SUBMITTED,
    "orders.hl7_status_changed": TOPIC_ORDER_STATUS_CHANGED,
    "orders.hl7_status_cancelled": TOPIC_ORDER_CANCELLED,
}
# Our status -> ORC-5 (HL7 v2.5.1 Table 0038 "Order status"): IP "In process, unspecified" while the supplier has it
# (sent, then shipped: ORC-16 tells them apart), CM "Order is completed" once delivered, CA "Order was canceled".
ORDER_STATUS = {"submitted": "IP", "shipped": "IP", "delivered": "CM", "cancelled": "CA"}
# ORC-16 (CE, coding system L: local) and the MSH-10 suffix of each status.
STATUS_TEXT = {
    "submitted": "Sent to the supplier",
    "shipped": "Shipped by the supplier",
    "delivered": "Delivered",
    "cancelled": "Cancelled",
}
CONTROL_SUFFIX = {"submitted": "SUB", "shipped": "SHP", "delivered": "DLV", "cancelled": "CAN"}
# A status is not sent once a later one was (messages can be delivered out of order by the retries).
RANK = {"submitted": 1, "shipped": 2, "delivered": 3, "cancelled": 4}
ACCEPTED = frozenset({"AA", "CA"})  # CA: a peer in enhanced mode committed it
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"), ("\r", "\\.br\\"))


class StatusNotAcknowledged(HealthcommerceError):
    """The site's interface engine did not accept the status message. ``code`` is ``hl7_status_<outcome>``:
    ``AE`` or ``AR`` (its ACK refused it), ``timeout``, ``connection`` (refused, reset, closed), ``other`` (TLS,
    an answer that is not an ACK or acknowledges another message). Always ``temporary``: the outbox retries with
    backoff and dead-letters after the limit."""

    code = "hl7_status_not_acknowledged"
    status = 502
    temporary = True
    message = "The EHR's interface did not acknowledge the status message."


class StatusNotSendable(StatusNotAcknowledged):
    """Production refuses to send a status message in clear text to a host that is not loopback (no
    ``HL7_STATUS_TLS_*`` set): ``hl7_status_tls_required``, permanent (dead-letters at once, "Status not delivered
    to the EHR"); configure TLS, then retry the row from the admin."""

    code = "hl7_status_tls_required"
    temporary = False
    message = "Status messages to the EHR need TLS in production."


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def hl7_escape(value: str) -> str:
    """Return ``value`` with the HL7 v2 delimiters ``|^&~\\`` escaped (HL7 v2.5.1 2.7.4) and line breaks as
    ``\\.br\\``; other characters as they are (the message is UTF-8, MSH-18)."""
    text = value.replace("\r\n", "\r").replace("\n", "\r")
    for char, escaped in _ESCAPES:
        text = text.replace(char, escaped)
    return text


def _ts(moment: datetime) -> str:
    """Return an HL7 DTM in UTC with its offset: ``YYYYMMDDHHMMSS+0000``."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def status_control_id(order: Order, status: str) -> str:
    """Return MSH-10 for ``order``'s ``status`` message: ``<reference>.<SUB|SHP|DLV|CAN>`` (17 characters, under
    the 20 of HL7 v2.5.1 ST), the same on every retry."""
    return f"{order.reference}.{CONTROL_SUFFIX[status]}"


def hl7_status_message(*, order: Order, status: str, intake: IntakeSite, at: datetime) -> str:
    """Return the ORM^O01 (v2.5.1, segments separated by CR) telling ``intake``'s site that ``order`` is now
    ``status`` (``submitted``, ``shipped``, ``delivered`` or ``cancelled``) as of ``at`` (an aware datetime).

    MSH-3/4 ours (``HL7_STATUS_SENDING_APPLICATION``/``_FACILITY``), MSH-5/6 the site's MSH-3/4, MSH-11 ``P`` in
    production else ``T``; PID-3 (when the order has the patient's FHIR id) and the ORC as the module says. Raises
    ``KeyError`` for another status.
    """
    app, facility = settings.HL7_STATUS_SENDING_APPLICATION, settings.HL7_STATUS_SENDING_FACILITY
    processing = "P" if settings.APP_ENVIRONMENT == "production" else "T"
    msh = [
        "MSH",
        "^~\\&",
        hl7_escape(app),
        hl7_escape(facility),
        hl7_escape(intake.hl7_sending_application),
        hl7_escape(intake.hl7_sending_facility),
        _ts(at),
        "",
        "ORM^O01^ORM_O01",
        hl7_escape(status_control_id(order, status)),
        processing,
        "2.5.1",
        "",
        "",
        "",
        "",
        "",
        "UNICODE UTF-8",
    ]
    placer = f"{hl7_escape(order.placer_order_number)}^{hl7_escape(intake.hl7_sending_application)}"
    orc = [
        "ORC",
        "SC",
        placer,
        f"{hl7_escape(order.reference)}^{hl7_escape(app)}",
        "",
        ORDER_STATUS[status],
        "",
        "",
        "",
        _ts(at),
        "",
        "",
        "",
        "",
        "",
        "",
        f"{status}^{STATUS_TEXT[status]}^L",
    ]
    if not order.patient_fhir_id:
        return _segments(msh, orc)  # the PATIENT group is optional in ORM_O01
    pid = ["PID", "1", "", f"{hl7_escape(order.patient_fhir_id)}^^^^FHIR"]
    return _segments(msh, pid, orc)


def _segments(msh: list[str], *others: list[str]) -> str:
    """Join segments: MSH's field 1 is the separator itself, so MSH-2 follows ``MSH|`` directly."""
    lines = ["MSH|" + "|".join(msh[1:])]
    lines.extend("|".join(fields) for fields in others)
    return "\r".join(lines) + "\r"


def hl7_status_subjects(subjects: list[str]) -> list[str]:
    """Return the subjects (``Order/<id>``) among ``subjects`` whose order came as HL7 v2 at a site with a status
    endpoint: the only ones these subscribers get outbox rows for (``Subscriber.wants``). One query."""
    orders = orders_for_subjects(subjects).filter(
        source=Order.Source.HL7V2, site__intakesite__hl7_status_endpoint__gt=""
    )
    return [f"Order/{pk}" for pk in orders.values_list("pk", flat=True)]


def _status(message: OutboxMessage) -> str:
    """Return the status a row announces: ``submitted`` or ``cancelled`` by its topic, else its payload's."""
    if message.topic == TOPIC_ORDER_SUBMITTED:
        return "submitted"
    if message.topic == TOPIC_ORDER_CANCELLED:
        return "cancelled"
    return str((message.payload or {}).get("status") or "")


def _sent(order: Order) -> set[str]:
    """The statuses already acknowledged by the site for ``order``."""
    events = OrderEvent.objects.filter(order=order, kind="hl7_status_sent")
    return {str(event.detail.get("status")) for event in events}


def _skip_reason(order: Order, status: str, intake: IntakeSite) -> str:
    """Why no message goes for this row (``""``: one goes)."""
    if order.source != Order.Source.HL7V2:
        return "not_hl7v2"
    if not intake.hl7_status_endpoint.strip():
        return "no_endpoint"
    if status not in ORDER_STATUS:
        return f"status_{status or 'missing'}"[:40]
    sent = _sent(order)
    if any(RANK[done] >= RANK[status] for done in sent if done in RANK):
        return "already_sent" if status in sent else "superseded"
    return ""


def _ssl_context() -> ssl.SSLContext | None:
    """Return the TLS context for status messages, or None (plain TCP) when no ``HL7_STATUS_TLS_*`` is set: the
    peers' server certificates checked against ``HL7_STATUS_TLS_CA`` (else the system's trust store) with their
    host name, and our client certificate ``HL7_STATUS_TLS_CERT`` with its key ``HL7_STATUS_TLS_KEY``."""
    cert, key, ca = settings.HL7_STATUS_TLS_CERT, settings.HL7_STATUS_TLS_KEY, settings.HL7_STATUS_TLS_CA
    if not (cert or key or ca):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(certfile=cert, keyfile=key or None)
    return context


def _outcome(exc: BaseException) -> str:
    """The outcome class of a failed send: ``timeout``, ``connection`` or ``other`` (TLS, framing, anything),
    from the exception or, for a client that wraps the socket's error in its own (``intake.mllpclient.MllpError``), the
    error it wraps."""
    for error in (exc, exc.__cause__ or exc.__context__):
        if isinstance(error, ssl.SSLError) or getattr(error, "kind", "") in ("tls", "frame"):
            return "other"
        if isinstance(error, TimeoutError):
            return "timeout"
        if isinstance(error, OSError):
            return "connection"
    return "other"


def _ack_read(ack: str, control_id: str) -> tuple[str, str]:
    """Return ``(MSA-1, MSA-3)`` of ``ack``; MSA-1 ``other`` when it is no ACK or its MSA-2 is not ``control_id``."""
    try:
        parsed = hl7.parse(ack.replace("\n", "\r"))
        msa = parsed.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException):
        return "other", ""
    code = str(msa(1) if len(msa) > 1 else "").strip().upper()
    echoed = str(msa(2) if len(msa) > 2 else "").strip()
    text = str(msa(3) if len(msa) > 3 else "").strip()
    if echoed != control_id:
        return "other", text
    return code, text


def _send(site: EHRSite, endpoint: str, text: str, control_id: str) -> str:
    """Send ``text`` to ``endpoint`` and return the ACK's MSA-1 when it is AA or CA; count the try for ``site``
    (``core.metrics``). Raises ``StatusNotAcknowledged`` (temporary) for anything else, and ``StatusNotSendable``
    (permanent) before sending in clear text to another host than loopback in production; ``hl7_status_tls_config``
    (temporary: fix the files, the retries pick them up) when the ``HL7_STATUS_TLS_*`` files cannot be loaded."""
    try:
        context = _ssl_context()
    except (OSError, ValueError) as exc:  # a certificate, key or CA file missing or unreadable (ssl.SSLError too)
        logger.error("hl7 status TLS files not usable (%s): check HL7_STATUS_TLS_*", type(exc).__name__)
        raise StatusNotAcknowledged(code="hl7_status_tls_config") from exc
    if context is None and settings.PRODUCTION and endpoint.rpartition(":")[0].strip("[]") not in _LOOPBACK:
        raise StatusNotSendable()
    started = time.perf_counter()
    try:
        ack = mllp_send(endpoint, text, timeout=settings.HL7_STATUS_TIMEOUT_SECONDS, ssl_context=context)
    except Exception as exc:  # the network boundary: whatever the client raises is a failed try, retried
        outcome = _outcome(exc)
        metrics.record(site=site.name[:100], endpoint=ENDPOINT_KIND, outcome=outcome, seconds=_since(started))
        logger.warning("hl7 status to site=%s not sent: %s (%s)", site.pk, outcome, type(exc).__name__)
        raise StatusNotAcknowledged(code=f"hl7_status_{outcome}") from exc
    code, _ = _ack_read(ack, control_id)
    outcome = "ok" if code in ACCEPTED else (code if code in ("AE", "AR") else "other")
    metrics.record(site=site.name[:100], endpoint=ENDPOINT_KIND, outcome=outcome, seconds=_since(started))
    if outcome != "ok":
        logger.warning("hl7 status to site=%s control_id=%s answered %s", site.pk, control_id, outcome)
        raise StatusNotAcknowledged(code=f"hl7_status_{outcome}")
    return code


def _since(started: float) -> float:
    return time.perf_counter() - started


def hl7_status_send(message: OutboxMessage) -> None:
    """Handle a row of ``STATUS_SUBSCRIBERS``: send the order's status to its site as an ORM^O01 (``SC``) over MLLP,
    and once the site answers AA (or CA), in one transaction, mark the row done (result ``<MSA-1>:<MSH-10>``), add
    an ``hl7_status_sent`` order event and an ``intake.hl7_status`` audit row (no PHI).

    Done with nothing sent (``skipped:<why>``) for an order not from HL7 v2, a site without a status endpoint, an
    unknown status, or a status already sent or superseded by a later one. Idempotent in effect: a retry sends the
    same MSH-10, which the receiver recognises. Not one transaction on purpose (the MLLP call runs outside any).
    Raises ``StatusNotAcknowledged`` (temporary) for an AE, AR, no answer or no connection; ``StatusNotSendable``
    (permanent) in production without TLS to a host that is not loopback.
    """
    order = order_for_subject(message.subject).select_related("site").get()
    status = _status(message)
    intake = IntakeSite.of(order.site)
    skipped = _skip_reason(order, status, intake)
    if skipped:
        message_done(message, result=f"skipped:{skipped}")
        return
    control_id = status_control_id(order, status)
    text = hl7_status_message(order=order, status=status, intake=intake, at=message.created_at or timezone.now())
    code = _send(order.site, intake.hl7_status_endpoint.strip(), text, control_id)
    detail = {"status": status, "order_status": ORDER_STATUS[status], "control_id": control_id, "ack": code}
    with transaction.atomic():
        if not message_done(message, result=f"{code}:{control_id}"):
            return
        order_event_add(order=order, kind="hl7_status_sent", actor=ACTOR, detail=detail)
        audit_record(
            actor=ACTOR, action="intake.hl7_status", target=f"Order/{order.pk}", where=order.site.iss, detail=detail
        )
    logger.info("hl7 status order=%s %s acknowledged %s", order.reference, status, code)


def hl7_status_dead(*, message: OutboxMessage, code: str) -> str:
    """On a dead-lettered status row (in its transaction): add an ``hl7_status_failed`` order event ("Status not
    delivered to the EHR") with the status, the last error ``code`` and the attempts. Returns the alert's context,
    ``order=<reference> site=<id>``."""
    order = order_for_subject(message.subject).select_related("site").get()
    detail = {"status": _status(message), "code": code, "attempts": message.attempts}
    order_event_add(order=order, kind="hl7_status_failed", actor=ACTOR, detail=detail)
    return f"order={order.reference} site={order.site_id}"
