"""The intake's operations: receive an HL7 v2 message and answer it (store first, then answer), and purge raw copies.

The rules (issue 20 "HL7 v2 intake"; docs/interface-hl7.md; HL7 v2.5.1 2.9 "Message processing rules"):
- a message whose MSH cannot be trusted (not HL7, wrong delimiters, no MSH-10) creates nothing: answered AR when
  its MSH-10 can still be read, else the connection is closed;
- the sender is identified by MSH-3 and MSH-4 (``IntakeSite``, HL7 enabled); over TLS the client certificate must
  be the one the site allows;
- a message already stored under the same sender and MSH-10 gets the stored answer again and creates nothing;
- AR (stored): unknown sender, wrong certificate, a message type no stage handles, a version other than 2.3 to
  2.5.1, a processing id other than P (T too outside production);
- else the message is stored and the stage's handler runs in a savepoint of the same transaction; its outcome
  (AA, AE, AR) is the answer, stored with the message, committed before it is sent;
- enhanced mode (MSH-15 or MSH-16 valued): the answer is the commit acknowledgment (CA after the commit, CR for the
  refusals above, CE when nothing could be stored), sent as MSH-15 asks (AL, NE, ER, SU); the handler's outcome is
  recorded on the message.
"""

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record, audit_retention
from healthcommerce.core import metrics
from healthcommerce.intake.hl7msg import (
    ERROR_CODES,
    Header,
    HeaderError,
    ack_build,
    header_read,
    hl7_decode,
    hl7_parse,
)
from healthcommerce.intake.models import IntakeMessage, IntakeSite
from healthcommerce.intake.registry import (
    ACCEPT,
    ERROR,
    REJECT,
    Hl7Context,
    Outcome,
    intake_handler_for,
    intake_message_types,
)

logger = logging.getLogger(__name__)

VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")  # MSH-12 accepted (issue 20: ORM^O01 v2.3 to v2.5.1)
METRIC_KIND = "hl7_receive"  # core.metrics endpoint kind
# Enhanced mode's commit acknowledgments (Table 0008) for an original mode code.
_COMMIT = {ACCEPT: "CA", ERROR: "CA", REJECT: "CR"}
INTERNAL_ERROR = "Internal error: the message is kept and will be looked at; do not resend it."


@dataclass(frozen=True)
class Answer:
    """What the listener sends back: ``ack`` (ER7 bytes, ``b""`` when nothing is to be sent) and ``close`` (close
    the connection: nothing could be answered, or the message could not be stored)."""

    ack: bytes
    close: bool = False


@dataclass(frozen=True)
class _Refusal:
    location: str
    text: str
    error: tuple[str, str]
    metric: str = "4xx"


def intake_hl7_receive(raw: bytes, *, peer_certificate_sha256: str = "", peer: str = "") -> bytes:
    """Receive one HL7 v2 message (the bytes of one MLLP frame, without the frame) and return its ACK in ER7
    (``b""``: nothing is sent; ``intake_hl7_answer`` says when to close). ``peer_certificate_sha256`` is the
    SHA-256 of the client's TLS certificate (hex, colons optional; ``""`` over plain TCP) and ``peer`` its address
    (``"127.0.0.1:50312"``, for the audit row). Idempotent per (MSH-3^MSH-4, MSH-10). Never raises for what a peer
    sends. The rules: this module's docstring."""
    return intake_hl7_answer(raw, peer_certificate_sha256=peer_certificate_sha256, peer=peer).ack


def intake_hl7_answer(raw: bytes, *, peer_certificate_sha256: str = "", peer: str = "") -> Answer:
    """``intake_hl7_receive`` with whether to close the connection (``Answer``). Not one transaction: a message
    whose MSH cannot be trusted is audited outside any; the message, its handler's work, its ACK and its audit row
    commit together (``_store_and_answer``). A database failure answers nothing (original mode: the peer resends)
    or CE (enhanced mode), and closes the connection."""
    started = time.perf_counter()
    try:
        text = hl7_decode(raw)
        header = header_read(text)
        parsed = hl7_parse(text)
    except HeaderError as exc:
        return _untrusted(exc, peer=peer, started=started)
    site_settings: IntakeSite | None = None
    try:
        site_settings = _site_for(header)
        fingerprint = fingerprint_normalize(peer_certificate_sha256)
        refusal = _refusal(header, site_settings, fingerprint)
        sender = header.sender
        if refusal is not None and refusal.metric == "403" and site_settings is not None:
            # A foreign certificate's messages are kept apart: they can never take a control ID of the real sender's.
            sender = f"{sender} cert:{fingerprint[:16]}"
        answer, code = _store_once(
            header=header,
            parsed=parsed,
            text=text,
            sender=sender,
            site_settings=site_settings,
            refusal=refusal,
            peer=peer,
        )
    except DatabaseError as exc:
        logger.warning("intake: %s could not be stored (%s)", header.message_type, type(exc).__name__)
        _metric(site_settings, "5xx", started)
        if header.enhanced:
            ack = ack_build(header=header, code="CE", text="The message could not be stored; send it again.")
            return Answer(ack=ack.encode(), close=True)
        return Answer(ack=b"", close=True)
    _metric(site_settings, _metric_outcome(code, refusal), started)
    return answer


def fingerprint_normalize(value: str) -> str:
    """Return a SHA-256 fingerprint as 64 lower-case hex digits without separators (``"AB:CD:..."`` ->
    ``"abcd..."``); ``""`` for ``""``."""
    return re.sub(r"[^0-9a-f]", "", value.lower())


def _site_for(header: Header) -> IntakeSite | None:
    """Return the HL7-enabled intake settings of the active site whose MSH-3 and MSH-4 match (case-insensitive)."""
    if not header.sending_application and not header.sending_facility:
        return None
    return (
        IntakeSite.objects.filter(
            hl7_enabled=True,
            site__is_active=True,
            hl7_sending_application__iexact=header.sending_application,
            hl7_sending_facility__iexact=header.sending_facility,
        )
        .select_related("site")
        .order_by("created_at")
        .first()
    )


def _refusal(header: Header, site_settings: IntakeSite | None, fingerprint: str) -> _Refusal | None:
    """Return why the message is rejected before its content is read (AR), None when it goes to its handler."""
    if site_settings is None:
        return _Refusal("MSH-4", "Unknown sender: MSH-3/MSH-4 match no site.", ERROR_CODES["key"], "403")
    if fingerprint and fingerprint_normalize(site_settings.hl7_client_certificate) != fingerprint:
        return _Refusal("", "The client certificate is not the one allowed for this sender.", ERROR_CODES["key"], "403")
    if intake_handler_for(header.message_type) is None:
        accepted = ", ".join(intake_message_types()) or "none"
        text = f"Message type {header.message_type} is not accepted (accepted: {accepted})."
        return _Refusal("MSH-9", text, ERROR_CODES["message_type"])
    if header.version not in VERSIONS:
        return _Refusal(
            "MSH-12", f"Version {header.version or '(empty)'} is not accepted (2.3 to 2.5.1).", ERROR_CODES["version"]
        )
    allowed = ("P",) if settings.APP_ENVIRONMENT == "production" else ("P", "T")
    if header.processing_id not in allowed:
        text = f"Processing ID {header.processing_id or '(empty)'} is not accepted here ({' or '.join(allowed)})."
        return _Refusal("MSH-11", text, ERROR_CODES["processing"])
    return None


def _store_once(**kwargs: Any) -> tuple[Answer, str]:
    """``_store_and_answer``; when a message with the same key committed meanwhile (another connection sent it at
    the same moment), its stored answer."""
    try:
        return _store_and_answer(**kwargs)
    except IntegrityError:
        header: Header = kwargs["header"]
        with transaction.atomic():
            stored = IntakeMessage.objects.get(
                kind=IntakeMessage.Kind.HL7V2, sender=kwargs["sender"], control_id=header.control_id
            )
            return _resend(stored, header, kwargs["peer"]), stored.ack_code


@transaction.atomic
def _store_and_answer(
    *,
    header: Header,
    parsed: Any,
    text: str,
    sender: str,
    site_settings: IntakeSite | None,
    refusal: _Refusal | None,
    peer: str,
) -> tuple[Answer, str]:
    """Store the message, run its handler (unless refused), store the ACK and the audit row; return the answer and
    its MSA-1. A message already stored under (``sender``, MSH-10) gets its stored answer (``_resend``)."""
    stored = IntakeMessage.objects.filter(
        kind=IntakeMessage.Kind.HL7V2, sender=sender, control_id=header.control_id
    ).first()
    if stored is not None:
        return _resend(stored, header, peer), stored.ack_code
    message = IntakeMessage.objects.create(
        kind=IntakeMessage.Kind.HL7V2,
        site=site_settings.site if site_settings else None,
        sender=sender[:200],
        control_id=header.control_id,
        message_type=header.message_type,
        raw=text,
    )
    warnings: list[str] = []
    if refusal is not None:
        outcome = Outcome(REJECT, refusal.text, refusal.location)
        error = refusal.error
    else:
        assert site_settings is not None
        outcome = _handle(parsed, Hl7Context(message=message, settings=site_settings, warnings=warnings), header)
        error = _error_code(outcome)
    code = _COMMIT[outcome.code] if header.enhanced else outcome.code
    ack_text = "" if code == "CA" else outcome.text
    ack = ack_build(header=header, code=code, text=ack_text, location=outcome.location, error=error)
    message.ack_code, message.ack = code, ack
    message.error_location, message.error_text = outcome.location[:40], outcome.text[:500]
    message.order_reference = outcome.order[:20]
    message.save(update_fields=["ack_code", "ack", "error_location", "error_text", "order_reference", "updated_at"])
    audit_record(
        actor=f"hl7:{sender}"[:100],
        action="intake.receive",
        target=f"IntakeMessage/{message.pk}",
        outcome=code,
        detail={
            "message_type": header.message_type,
            "outcome": outcome.code,
            "location": outcome.location,
            "order": outcome.order,
            "warnings": warnings[:20],
            "peer": peer,
        },
        site=site_settings.site.iss if site_settings else "",
    )
    return Answer(ack=ack.encode() if _accept_ack_wanted(header, code) else b""), code


def _handle(parsed: Any, ctx: Hl7Context, header: Header) -> Outcome:
    """Run the message type's handler in a savepoint; an exception, or an answer that is not an ``Outcome`` with
    AA, AE or AR, rolls its work back and becomes AE ``INTERNAL_ERROR`` (the message stays stored)."""
    handler = intake_handler_for(header.message_type)
    assert handler is not None
    try:
        with transaction.atomic():
            outcome = handler(parsed, ctx)
            if not isinstance(outcome, Outcome) or outcome.code not in (ACCEPT, ERROR, REJECT):
                raise TypeError("the handler returned no Outcome")
    except Exception as exc:  # the boundary: a handler's bug costs this message only, never the listener
        logger.error("intake: the %s handler failed (%s)", header.message_type, type(exc).__name__)
        return Outcome(ERROR, INTERNAL_ERROR)
    return outcome


def _error_code(outcome: Outcome) -> tuple[str, str]:
    """Return ERR-3 (Table 0357) for a handler's AE or AR: 101 when the text says something is missing, 103 for
    another named field (a value the interface does not take), 207 otherwise."""
    if outcome.location and "missing" in outcome.text.lower():
        return ERROR_CODES["required"]
    if outcome.location:
        return ERROR_CODES["table"]
    return ERROR_CODES["rejected"]


def _resend(stored: IntakeMessage, header: Header, peer: str) -> Answer:
    """Answer a message stored before with its stored ACK (nothing else is created but the audit row)."""
    audit_record(
        actor=f"hl7:{stored.sender}"[:100],
        action="intake.receive",
        target=f"IntakeMessage/{stored.pk}",
        outcome=stored.ack_code,
        detail={"message_type": header.message_type, "resend": True, "peer": peer},
        site=stored.site.iss if stored.site_id else "",  # type: ignore[union-attr]
    )
    wanted = _accept_ack_wanted(header, stored.ack_code)
    return Answer(ack=stored.ack.encode() if wanted else b"")


def _accept_ack_wanted(header: Header, code: str) -> bool:
    """Whether MSH-15 asks for this commit acknowledgment (Table 0155: AL always, NE never, ER on error, SU on
    success); original mode always answers."""
    if not header.enhanced:
        return True
    mode = header.accept_ack.upper() or "AL"
    return mode == "AL" or (mode == "ER" and code != "CA") or (mode == "SU" and code == "CA")


def _untrusted(exc: HeaderError, *, peer: str, started: float) -> Answer:
    """Answer a message whose MSH cannot be trusted: AR echoing MSH-10 when it could be read, else close. Nothing
    is stored; one audit row (no content)."""
    audit_record(
        actor="hl7:unknown",
        action="intake.receive",
        outcome="AR" if exc.control_id else "closed",
        detail={"refused": exc.location or "message", "peer": peer},
    )
    _metric(None, "4xx", started)
    if not exc.control_id:
        return Answer(ack=b"", close=True)
    ack = ack_build(
        header=exc.header,
        code="CR" if exc.header and exc.header.enhanced else REJECT,
        text=exc.text,
        location=exc.location,
        error=ERROR_CODES["required"] if exc.location == "MSH-9" else ERROR_CODES["type"],
        control_id=exc.control_id,
    )
    return Answer(ack=ack.encode())


def _metric_outcome(code: str, refusal: _Refusal | None) -> str:
    if refusal is not None:
        return refusal.metric
    return {"AA": "ok", "CA": "ok", "AE": "422"}.get(code, "4xx")


def _metric(site_settings: IntakeSite | None, outcome: str, started: float) -> None:
    """Count one received message for the site's integration health (``core.metrics``, kind ``hl7_receive``):
    ``ok`` accepted, ``422`` content error (AE), ``403`` unknown sender or certificate, ``4xx`` other refusals,
    ``5xx`` not stored."""
    label = site_settings.site.name if site_settings else "unknown"
    metrics.record(site=label, endpoint=METRIC_KIND, outcome=outcome, seconds=time.perf_counter() - started)


def intake_raw_purge(message_ids: Iterable[Any]) -> int:
    """Blank the raw copy of the intake messages ``message_ids`` (``IntakeMessage`` ids) and set
    ``raw_purged_at``; return how many were purged now. Called with the order's PHI purge
    (``orders_phi_purge``); idempotent (a purged message is not purged again). Ids, sender, MSH-10, message type and
    the ACK stay, so a resend is still answered and creates nothing."""
    ids = list(message_ids)
    if not ids:
        return 0
    return IntakeMessage.objects.filter(pk__in=ids, raw_purged_at__isnull=True).update(
        raw="", raw_purged_at=timezone.now(), updated_at=timezone.now()
    )


@transaction.atomic
def intake_raw_retention() -> int:
    """Blank the raw copy of intake messages that made no order (none links to them) and arrived more than
    ``ORDER_PHI_RETENTION_DAYS`` ago; return how many. One ``retention.purge`` audit row with the count
    (docs/reliability.md "Retention"). Run daily by beat (``healthcommerce.intake.tasks.purge``); idempotent."""
    cutoff = timezone.now() - timedelta(days=settings.ORDER_PHI_RETENTION_DAYS)
    due = IntakeMessage.objects.filter(created_at__lt=cutoff, raw_purged_at__isnull=True, orders__isnull=True)
    purged = intake_raw_purge(list(due.values_list("pk", flat=True)))
    audit_retention(
        target="IntakeMessage.raw", counts={"messages": purged, "retention_days": settings.ORDER_PHI_RETENTION_DAYS}
    )
    if purged:
        logger.info("retention: purged the raw copy of %d intake message(s) that made no order", purged)
    return purged
