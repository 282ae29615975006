"""HL7 v2 order messages: the orders stage's intake handler for ORM^O01 (v2.3 to v2.5.1; ORC with RQD or OBR) and
OML^O21 (ORC with OBR), registered in ``orders.apps`` (``intake.registry``; ADR 0024).

It runs inside the transaction that stored the message (the intake core answers with what it returns). Each order
group (an ORC and the segments up to the next ORC) is one order. ORC-1 ``NW``: the group is read and checked here
(what it cannot be without is answered AE), given its order reference, and handed over through the outbox
(``order.hl7_received``, in the same transaction): the ``orders.hl7_order`` subscriber (``order_hl7_create``)
creates the order from the stored message on a worker, signed or held (``order_from_intake``). So the ACK waits
for one commit of the message and its outbox row, never for the order's own writes, and a message acknowledged is
never lost. ``CA`` cancels through ``order_intake_cancel`` at once (creating first an order whose ``NW`` is still
waiting for its worker); anything else (``XO``, ``SC``, ``DC``...) is answered AE naming ORC-1 until amendments
exist. A missing segment or required field is answered AE naming it (``PID``, ``ORC-2``,
``RQD-2``...; the text says "missing", so the intake core's ERR-3 is 101 "required field missing"), and then
nothing of the message is kept but the stored message: the groups run in one savepoint. Readers are lenient
(``orders.hl7read``): one bad element costs only that element, with a warning in ``ctx.warnings``. DG1, NTE,
OBX and Z-segments are never read.

Sources: HL7 v2.5.1 chapter 4 (4.4.1 ORM^O01, 4.4.6 OML^O21, 4.5.1 ORC, Table 0119 order control codes), chapter 2
(2.9.2 original acknowledgment mode: AE for content errors).
"""

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from healthcommerce.audit.services import audit_record
from healthcommerce.intake.hl7msg import hl7_parse
from healthcommerce.intake.models import IntakeMessage, IntakeSite
from healthcommerce.intake.registry import ACCEPT, ERROR, Hl7Context, Outcome
from healthcommerce.orders import extract, hl7read
from healthcommerce.orders.events import TOPIC_HL7_ORDER
from healthcommerce.orders.fields import hl7_values
from healthcommerce.orders.intake import (
    IntakeOrder,
    IntakeRequest,
    IntakeSigner,
    intake_existing,
    order_from_intake,
    order_intake_cancel,
)
from healthcommerce.orders.models import Order, new_reference
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done, outbox_publish

logger = logging.getLogger(__name__)

MESSAGE_TYPES = ("ORM^O01", "OML^O21")
# The segment that carries the item, per message type: ORM may use RQD (supplies, DME) or OBR (lab); OML uses OBR.
DETAIL_SEGMENTS = {"ORM^O01": ("RQD", "OBR"), "OML^O21": ("OBR",)}
NEW, CANCEL = "NW", "CA"
AMENDMENT = "amendments are not supported: cancel and re-order"


class Refused(Exception):
    """A content error: answered AE with ``location`` (``"ORC-2"``) and ``text`` (no PHI)."""

    def __init__(self, location: str, text: str) -> None:
        super().__init__(text)
        self.location, self.text = location, text


def _groups(parsed: Any) -> list[list[Any]]:
    """Return the order groups of ``parsed``: each ORC with the segments after it up to the next ORC."""
    groups: list[list[Any]] = []
    for segment in parsed:
        name = str(segment[0])
        if name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return groups


def _message_type(parsed: Any) -> str:
    msh = parsed.segment("MSH")
    return "^".join(str(msh[9]).split("^")[:2]) if len(msh) > 9 else ""


def _structure(parsed: Any, message_type: str) -> list[list[Any]]:
    """Return the order groups, or raise ``Refused`` naming the segment that is missing (PID, ORC, RQD or OBR)."""
    names = [str(segment[0]) for segment in parsed]
    if "PID" not in names:
        raise Refused("PID", "The PID segment (the patient) is missing.")
    groups = _groups(parsed)
    if not groups:
        raise Refused("ORC", "The ORC segment (the common order) is missing.")
    wanted = DETAIL_SEGMENTS.get(message_type, ("OBR",))
    for group in groups:
        if not any(str(segment[0]) in wanted for segment in group):
            raise Refused(wanted[0], f"{' or '.join(wanted)} after ORC is missing ({message_type}).")
    return groups


@dataclass(frozen=True)
class _Read:
    """One order group as read: the view, the columns from the field table and what the group's ORC asks."""

    view: hl7read.Hl7View
    values: dict[str, Any]
    control: str


def _read(parsed: Any, group: list[Any], ctx: Hl7Context) -> _Read:
    settings = ctx.settings
    view = hl7read.hl7_view(
        parsed, group, site_id=settings.site_id, email_repetition=int(settings.hl7_email_repetition or 0)
    )
    warnings: list[str] = []
    values = hl7_values(view, warnings)
    ctx.warnings.extend(warning for warning in warnings if warning not in ctx.warnings)
    return _Read(view, values, view.value("ORC", 1).upper())


def _required(read: _Read) -> None:
    """Raise ``Refused`` for what an order cannot be without and staff cannot add: placer number, patient name and
    birth date, ordering provider, item code. (An unmapped code, address or email only holds the order.)"""
    values, view = read.values, read.view
    checks = (
        ("ORC-2", values["placer_order_number"], "ORC-2 (the placer order number) is missing."),
        ("PID-5", values["patient_name"], "PID-5 (the patient's name) is missing."),
        ("PID-7", values["patient_birth_date"], "PID-7 (a full date of birth) is missing or incomplete."),
        ("ORC-12", values["practitioner_name"], "ORC-12 (the ordering provider, with a name) is missing."),
    )
    for location, value, text in checks:
        if not value:
            raise Refused(location, text)
    if not values["request_code"]:
        location = "RQD-2" if view.has("RQD") else "OBR-4"
        raise Refused(location, f"{location} (the item: code^text^coding system) is missing.")


def _intake_order(read: _Read, ctx: Hl7Context, reference: str = "") -> IntakeOrder:
    values, notes = read.values, extract.Notes("item")
    codings = tuple((system, code) for system, code, _ in hl7read.item_codings(read.view, notes))
    request = IntakeRequest(
        system=values["request_system"],
        code=values["request_code"],
        display=values["request_display"],
        quantity=values["quantity"],
        codings=codings,
    )
    signer = IntakeSigner(
        reference=values["practitioner_reference"], name=values["practitioner_name"], npi=values["practitioner_npi"]
    )
    return IntakeOrder(
        site=ctx.settings.site,
        source=Order.Source.HL7V2,
        placer_order_number=values["placer_order_number"],
        request=request,
        signer=signer,
        signed_at=values["signed_at"],
        values=values,
        intake_message=ctx.message,
        warnings=list(ctx.warnings),
        reference=reference,
    )


def _hand_over(read: _Read, ctx: Hl7Context, index: int) -> str:
    """Give the NW group ``index`` its order reference and publish ``order.hl7_received`` for it in the current
    transaction; return the reference (the ACK names it; the worker creates the order under it). A repeat of a
    placer number the site already sent gets that order's reference (``_known_reference``)."""
    placer = read.values["placer_order_number"]
    reference = _known_reference(ctx, placer) or new_reference()
    payload = {"message": str(ctx.message.pk), "group": index, "reference": reference}
    outbox_publish(
        topic=TOPIC_HL7_ORDER, key=f"{ctx.message.pk}:{index}", subject=_placer_subject(ctx, placer), payload=payload
    )
    return reference


def _placer_subject(ctx: Hl7Context, placer: str) -> str:
    """The outbox subject of an NW group: ``HL7Placer/<sha256 of site id and placer number, 32 hex>``, indexed, so a
    CA or a repeat finds the group still waiting for its worker in one lookup (no PHI: a digest)."""
    digest = hashlib.sha256(f"{ctx.settings.site_id}|{placer}".encode()).hexdigest()[:32]
    return f"HL7Placer/{digest}"


def _waiting(ctx: Hl7Context, placer: str) -> "QuerySet[OutboxMessage]":
    """The ``order.hl7_received`` rows for ``placer`` at the site still waiting for their worker."""
    return OutboxMessage.objects.filter(
        subject=_placer_subject(ctx, placer), topic=TOPIC_HL7_ORDER, status=OutboxMessage.Status.PENDING
    )


def _known_reference(ctx: Hl7Context, placer: str) -> str:
    """The reference of the order the site sent ``placer`` for before (made, or waiting for its worker); "" when
    none."""
    existing = intake_existing(ctx.settings.site, placer)
    if existing is not None:
        return existing.reference
    waiting = _waiting(ctx, placer).values_list("payload", flat=True).first()
    return str(waiting.get("reference") or "") if waiting else ""


def _waiting_create(ctx: Hl7Context, placer: str) -> None:
    """Create now the orders of NW groups for ``placer`` at the site that are still waiting for their worker (a CA
    right behind its NW); the worker later finds each one made (``order_from_intake`` is idempotent on the placer
    number)."""
    for row in _waiting(ctx, placer):
        _create(row.payload)


def _group_handle(parsed: Any, group: list[Any], ctx: Hl7Context, index: int) -> str:
    """Handle one order group: the reference of the order handed over (NW) or cancelled (CA); raises ``Refused``."""
    read = _read(parsed, group, ctx)
    if read.control == NEW:
        _required(read)
        return _hand_over(read, ctx, index)
    if read.control == CANCEL:
        placer = read.values["placer_order_number"]
        if not placer:
            raise Refused("ORC-2", "ORC-2 (the placer order number) is missing: CA needs it.")
        _waiting_create(ctx, placer)
        outcome = order_intake_cancel(site=ctx.settings.site, placer_order_number=placer, actor=_actor(ctx))
        if outcome.code != ACCEPT:
            raise Refused(outcome.location, outcome.text)
        IntakeMessage.objects.filter(pk=ctx.message.pk).update(order_reference=outcome.order)
        return outcome.order
    shown = read.control[:2] or "empty"
    raise Refused("ORC-1", f"ORC-1 order control {shown!r}: {AMENDMENT} (only NW and CA are accepted).")


def _actor(ctx: Hl7Context) -> str:
    return f"hl7:{ctx.message.sender}"[:300]


def _z_segments_note(parsed: Any, ctx: Hl7Context) -> None:
    """Add a warning per Z-segment (site-defined, HL7 v2.5.1 2.5.1 "Z segments") the site's settings do not list in
    ``hl7_ignore_segments``: none is ever read, and the warning tells the interface analyst which ones to list (or to
    ask us to read). Listed ones pass silently."""
    ignored = ctx.settings.ignored_segments()
    for name in dict.fromkeys(str(segment[0]) for segment in parsed):
        if name.startswith("Z") and name not in ignored:
            warning = f"{name}: a Z-segment not in this site's segments to ignore; it was not read."
            if warning not in ctx.warnings:
                ctx.warnings.append(warning)


def order_hl7_handle(parsed: Any, ctx: Hl7Context) -> Outcome:
    """Handle an ORM^O01 or OML^O21 (python-hl7 ``parsed``) for ``ctx.settings``' site; return the ``Outcome``:
    ``AA`` with the (first) order's reference (NW: handed over to ``order_hl7_create`` through the outbox; CA:
    cancelled), or ``AE`` with the segment and field and what to fix, having changed nothing (one savepoint for all
    groups) but an ``order.hl7_refused`` audit row. Element-level warnings go to ``ctx.warnings``. Raises only what
    the database raises (the intake core then answers AE "internal error")."""
    message_type = _message_type(parsed)
    _z_segments_note(parsed, ctx)
    try:
        groups = _structure(parsed, message_type)
        with transaction.atomic():
            results = [_group_handle(parsed, group, ctx, index) for index, group in enumerate(groups)]
    except Refused as refused:
        # after the rollback, so the refusal stays on record (nothing else of the message does)
        detail = {"message_type": message_type, "text": refused.text[:300]}
        target = f"IntakeMessage/{ctx.message.pk}"
        audit_record(
            actor=_actor(ctx), action="order.hl7_refused", target=target, outcome=refused.location, detail=detail
        )
        logger.info("hl7 %s control=%s refused at %s", message_type, ctx.message.control_id, refused.location)
        return Outcome(ERROR, refused.text, refused.location)
    return Outcome(ACCEPT, f"Order {', '.join(dict.fromkeys(results))}.", order=results[0] if results else "")


def _create(payload: dict[str, Any]) -> Order | None:
    """Create (or find) the order of NW group ``payload["group"]`` of the stored message ``payload["message"]`` under
    ``payload["reference"]``; None when the message's raw copy was purged meanwhile (nothing left to read)."""
    message = IntakeMessage.objects.select_related("site").get(pk=payload["message"])
    if message.raw_purged_at is not None or not message.raw or message.site is None:
        return None
    parsed = hl7_parse(message.raw)
    ctx = Hl7Context(message=message, settings=IntakeSite.of(message.site), warnings=[])
    group = _groups(parsed)[int(payload["group"])]
    read = _read(parsed, group, ctx)
    return order_from_intake(_intake_order(read, ctx, reference=str(payload.get("reference") or "")))


def order_hl7_create(message: OutboxMessage) -> None:
    """The ``orders.hl7_order`` subscriber of ``order.hl7_received``: create the order of one accepted NW group from
    the stored message (signed, or held for staff: ``order_from_intake``) and mark the row done with its reference,
    in one transaction. Idempotent: a repeat (a re-drive, or a CA that created it first) finds the order by its
    placer number. Database errors propagate (the outbox retries)."""
    with transaction.atomic():
        order = _create(message.payload)
        message_done(message, result=order.reference if order is not None else "skipped:purged")
