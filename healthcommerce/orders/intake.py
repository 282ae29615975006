"""Orders that arrive by themselves, signed in the EHR (ADR 0024): an HL7 v2 order message (``orders.hl7``) or a
FHIR notification (``orders.notified``) becomes an ``Order`` here, through one path.

The ordering provider signed it in the EHR, so nobody signs it here: the order records who and when from the
message and its ``source``. A complete order is signed at once (``order_signature_record``: ``content_hash``,
``order.signed`` through the outbox, the write-back where the site wants it). An incomplete one (its code maps to no
product at the site, no usable address, no email for the purchase link) is ``held`` with ``hold_reasons``: staff
complete it in the admin's intake queue (``orders.intake_admin``) and release it (``order_intake_release``); they can
fix the contact, the ship-to and the site's code mapping, never the item, quantity or signer. Each decision writes
an audit row (``order.intake``, ``order.intake_edit``, ``order.intake_release``, ``order.intake_cancel``).
"""

import datetime
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.selectors import mapping_for_codes
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.registry import ACCEPT, ERROR, Outcome
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.errors import InvalidTransition, OrderImmutable, OrderIncomplete
from healthcommerce.orders.forward import SHIPPING
from healthcommerce.orders.models import Order, new_reference
from healthcommerce.orders.services import order_cancel, order_signature_record, payer_columns
from healthcommerce.orders.transitions import order_transition

if TYPE_CHECKING:  # pragma: no cover - types only
    from healthcommerce.catalog.models import CodeMapping

logger = logging.getLogger(__name__)

ACTOR = "system:intake"
# What staff may change on a held order (the intake queue): contact and ship-to. The item is fixed by the site's
# code mapping, never picked; quantity and signer are the EHR's.
INTAKE_EDITABLE = ("ship_to", "contact_email", "contact_phone")
# The hold reason of a lacking column, as staff read it in the intake queue (the field table's label otherwise).
HOLD_LABELS = {
    "product": "a catalog mapping of the requested code at this site: add the site's code mapping",
    "ship_to": "a complete ship-to address (street, city, state, ZIP): fix the ship-to",
    "contact_email": "the patient's email for the purchase link: add it",
    "practitioner_name": "the ordering provider's signature in the EHR: cancel it here and re-order in the EHR",
    "patient_name": "the patient's name: cancel it here and re-order in the EHR",
    "patient_birth_date": "the patient's date of birth: cancel it here and re-order in the EHR",
    "quantity": "a quantity of at least 1: cancel it here and re-order in the EHR",
}
UNSIGNED = "the ordering provider's signature in the EHR: it is released when the EHR signs it"


@dataclass(frozen=True)
class IntakeRequest:
    """What the EHR asked for: the first coding's ``system`` (FHIR URI) and ``code``, its ``display``, the
    ``quantity`` (whole units; None: the catalog's default), the FHIR ``reference`` of the request when there is
    one (``"DeviceRequest/123"``; "" for HL7 v2), and every coding to try against the site's code mappings
    (``codings``: ``[(system, code)]``, default: the first one)."""

    system: str
    code: str
    display: str = ""
    quantity: int | None = None
    reference: str = ""
    codings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IntakeSigner:
    """Who signed the order in the EHR: ``reference`` (``"Practitioner/123"``, or ``"<NPI system>|<npi>"`` from
    HL7 v2), ``name`` and ``npi`` (ten digits or "")."""

    reference: str
    name: str
    npi: str = ""


@dataclass
class IntakeOrder:
    """One order signed in the EHR, as the intake read it.

    ``site``; ``source`` (``Order.Source.HL7V2`` or ``FHIR_NOTIFICATION``); ``placer_order_number`` (ORC-2, or the
    request's FHIR id: with the site it identifies the order, so a repeat finds it); ``request``; ``signer``;
    ``signed_at`` (aware; None: now); ``values``: the patient's and payer's ``Order`` columns read by the field
    table (``orders.fields.hl7_values`` or ``prefill_values``: ``patient_name``, ``patient_birth_date``,
    ``ship_to``, ``contact_email``, ``contact_phone``, ``patient_fhir_id``, ``payer_name``, ``payer_keys``,
    ``payer_member_id``, ``patient_language``; other keys are ignored; the payer record follows from the payer's,
    ``orders.services.payer_columns``); ``intake_message`` the stored message it came in;
    ``warnings`` (element-level, no PHI); ``signed_in_ehr``: False when the EHR has not signed it yet (a FHIR
    request that is not ``active``): the order is then held, unsigned, and no staff release can sign it; a later
    intake of the same placer number signed in the EHR signs it (``order_from_intake``); ``reference``: the order
    reference to create it under (the HL7 path gives it in the ACK before the worker creates the order; "": a new
    one).
    """

    site: EHRSite
    source: str
    placer_order_number: str
    request: IntakeRequest
    signer: IntakeSigner
    signed_at: datetime.datetime | None = None
    values: dict[str, Any] = field(default_factory=dict)
    intake_message: IntakeMessage | None = None
    warnings: list[str] = field(default_factory=list)
    signed_in_ehr: bool = True
    reference: str = ""


# Columns ``values`` may fill: the patient's and payer's (the request, signer and placer come from their own fields).
VALUE_COLUMNS = (
    "patient_fhir_id",
    "patient_name",
    "patient_birth_date",
    "ship_to",
    "contact_email",
    "contact_phone",
    "patient_language",
    "payer_name",
    "payer_keys",
    "payer_member_id",
)


def _placer_lock(site: EHRSite, placer_order_number: str) -> None:
    """Serialize intake of one placer number at one site until the transaction ends (PostgreSQL advisory lock;
    SQLite serializes writers anyway), so two messages for one order make one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"intake:{site.pk}:{placer_order_number}"])


def intake_existing(site: EHRSite, placer_order_number: str) -> Order | None:
    """Return the order that arrived by itself at ``site`` with ``placer_order_number``, or None."""
    if not placer_order_number:
        return None
    found = Order.objects.filter(site=site, placer_order_number=placer_order_number).exclude(source=Order.Source.APP)
    return found.order_by("created_at").first()


def _request_columns(site: EHRSite, request: IntakeRequest) -> dict[str, Any]:
    """The columns of the request and its catalog mapping (None: no product; the order is then held)."""
    codings = list(request.codings) or [(request.system, request.code)]
    mapping: CodeMapping | None = mapping_for_codes(site=site, codings=codings)
    system, code = (mapping.system, mapping.code) if mapping is not None else (request.system, request.code)
    return {
        "request_reference": request.reference[:300],
        "request_system": system[:200],
        "request_code": code[:64],
        "request_display": request.display[:300],
        "product": mapping.product if mapping is not None else None,
        "quantity": request.quantity or (mapping.default_quantity if mapping is not None else 1),
    }


def hold_reasons(order: Order) -> list[str]:
    """Return what ``order`` lacks before it can proceed, as staff read it (``HOLD_LABELS``, else the field table's
    label; the product's names the requested code): ``[]`` when complete."""
    reasons = []
    for row in order_fields.FIELDS:
        label = row.lacking(order)
        if not label:
            continue
        reason = HOLD_LABELS.get(row.name, label)
        if row.name == "product" and order.request_code:
            reason = f"{reason} ({order.request_system}|{order.request_code})"
        reasons.append(reason)
    if not order.signed_by and order.practitioner_reference and order.practitioner_name:
        reasons.append(UNSIGNED)  # the requester is known, the EHR has not signed yet
    return list(dict.fromkeys(reasons))


def _hold_or_sign(order: Order, signed_at: datetime.datetime, actor: str) -> list[str]:
    """Sign ``order`` (locked, ``draft`` or ``held``) when nothing lacks, else hold it with its reasons; return
    the reasons (``[]``: signed)."""
    reasons = hold_reasons(order)
    if reasons:
        order.hold_reasons = reasons
        order.save(update_fields=["hold_reasons", "updated_at"])
        order_transition(order_id=order.pk, to_status=Order.Status.HELD, actor=ACTOR, detail={"reasons": reasons})
        order.status = Order.Status.HELD
        return reasons
    if order.hold_reasons:
        order.hold_reasons = []
        order.save(update_fields=["hold_reasons", "updated_at"])
    order_signature_record(order=order, signed_by=order.signed_by, signed_at=signed_at, actor=actor)
    return []


def _signed_later(existing: Order, incoming: IntakeOrder) -> bool:
    """Whether ``incoming`` brings the EHR's signature of an order held unsigned."""
    return (
        existing.status == Order.Status.HELD
        and not existing.signed_by
        and incoming.signed_in_ehr
        and bool(incoming.signer.reference)
    )


def _existing(existing: Order, incoming: IntakeOrder, actor: str) -> Order:
    """A repeat of ``existing``'s placer number: unchanged, unless it brings the EHR's signature of an order held
    unsigned (then the signer and time are recorded and it is signed, or held for what else it lacks)."""
    site = incoming.site
    outcome = "duplicate"
    if _signed_later(existing, incoming):
        existing = Order.objects.select_for_update(of=("self",)).select_related("product", "site").get(pk=existing.pk)
        signed_at = incoming.signed_at or timezone.now()
        existing.signed_by, existing.signed_at = incoming.signer.reference[:500], signed_at
        existing.practitioner_reference = incoming.signer.reference[:500]
        existing.practitioner_name = incoming.signer.name[:300] or existing.practitioner_name
        existing.practitioner_npi = incoming.signer.npi[:20] or existing.practitioner_npi
        names = ["signed_by", "signed_at", "practitioner_reference", "practitioner_name", "practitioner_npi"]
        existing.save(update_fields=[*names, "updated_at"])
        outcome = "signed_in_ehr_" + ("held" if _hold_or_sign(existing, signed_at, actor) else "signed")
    _message_mark(incoming, existing)
    audit_record(actor=actor, action="order.intake", target=f"Order/{existing.pk}", where=site.iss,
                 outcome=outcome, site=site.iss, detail={"source": incoming.source})  # fmt: skip
    return existing


def _message_mark(incoming: IntakeOrder, order: Order) -> None:
    if incoming.intake_message is not None:
        IntakeMessage.objects.filter(pk=incoming.intake_message.pk).update(order_reference=order.reference)


@transaction.atomic
def order_from_intake(incoming: IntakeOrder) -> Order:
    """Create the order ``incoming`` describes and return it: ``signed`` when complete, else ``held`` with
    ``hold_reasons`` (``hold_reasons()``). The signer and signing time are the EHR's (``signed_at`` None: now);
    the intake message, when given, gets the order's reference. Its payer is the record the message's coverage
    names (``payer_columns``); coverage no record matches is ``not_recognised`` and does not hold the order (the
    patient's quote says the clinic will confirm).

    Idempotent on the placer number: a repeat for the same ``placer_order_number`` at the site returns the order
    that exists, changing nothing (an empty placer number creates every time), except that an order held unsigned
    (``signed_in_ehr`` False) takes the EHR's signature from a repeat that brings it, and is then signed (or held
    for what else it lacks). Writes one ``order.intake`` audit row (outcome ``signed``, ``held``, ``duplicate``,
    or ``signed_in_ehr_signed``/``_held``; no PHI). Raises nothing of its own; database errors propagate.
    """
    site = incoming.site
    _placer_lock(site, incoming.placer_order_number)
    existing = intake_existing(site, incoming.placer_order_number)
    actor = incoming.signer.reference or ACTOR
    if existing is not None:
        return _existing(existing, incoming, actor)
    signed_at = incoming.signed_at or timezone.now()
    values = {name: value for name, value in incoming.values.items() if name in VALUE_COLUMNS}
    order = Order.objects.create(
        reference=incoming.reference or new_reference(),
        site=site,
        source=incoming.source,
        placer_order_number=incoming.placer_order_number[:200],
        intake_message=incoming.intake_message,
        order_date=timezone.localdate(signed_at),
        practitioner_reference=incoming.signer.reference[:500],
        practitioner_name=incoming.signer.name[:300],
        practitioner_npi=incoming.signer.npi[:20],
        signed_by=incoming.signer.reference[:500] if incoming.signed_in_ehr else "",
        signed_at=signed_at if incoming.signed_in_ehr else None,
        **_request_columns(site, incoming.request),
        **values,
        **payer_columns(site=site, values=values),
    )
    order = Order.objects.select_for_update(of=("self",)).select_related("product", "site").get(pk=order.pk)
    reasons = _hold_or_sign(order, signed_at, actor)
    _message_mark(incoming, order)
    detail = {"source": incoming.source, "hold_reasons": reasons, "warnings": len(incoming.warnings)}
    audit_record(actor=actor, action="order.intake", target=f"Order/{order.pk}", where=site.iss,
                 outcome=order.status, site=site.iss, detail=detail)  # fmt: skip
    logger.info("intake order=%s source=%s status=%s", order.reference, incoming.source, order.status)
    return order


def _held(order: Order) -> Order:
    """Return ``order`` locked; raises ``OrderImmutable`` when it is no longer held."""
    locked = Order.objects.select_for_update(of=("self",)).select_related("product", "site").get(pk=order.pk)
    if locked.status != Order.Status.HELD:
        raise OrderImmutable("This order is no longer held at intake: nothing can be changed here.")
    return locked


@transaction.atomic
def order_intake_update(*, order: Order, actor: str, changes: dict[str, Any]) -> Order:
    """Apply staff's fixes to a held order: only ``INTAKE_EDITABLE`` columns (contact, ship-to); any other key is
    ignored. Returns the order. Writes one ``order.intake_edit`` audit row naming the changed fields (names only).
    Raises ``OrderImmutable`` once the order is no longer held."""
    locked = _held(order)
    names = [name for name in changes if name in INTAKE_EDITABLE and getattr(locked, name) != changes[name]]
    for name in names:
        setattr(locked, name, changes[name])
    if names:
        locked.save(update_fields=[*names, "updated_at"])
        audit_record(actor=actor, action="order.intake_edit", target=f"Order/{locked.pk}", site=locked.site.iss,
                     detail={"fields": sorted(names)})  # fmt: skip
    return locked


def _release(order: Order, actor: str) -> Order:
    locked = _held(order)
    if locked.product is None and locked.request_code:
        mapping = mapping_for_codes(site=locked.site, codings=[(locked.request_system, locked.request_code)])
        if mapping is not None:
            locked.product = mapping.product
            locked.save(update_fields=["product", "updated_at"])
    reasons = hold_reasons(locked)
    if reasons:
        raise OrderIncomplete("Still missing: " + "; ".join(reasons) + ".", code="intake_incomplete")
    locked.hold_reasons = []
    locked.save(update_fields=["hold_reasons", "updated_at"])
    signed_at = locked.signed_at or timezone.now()
    order_signature_record(order=locked, signed_by=locked.signed_by, signed_at=signed_at, actor=actor)
    audit_record(actor=actor, action="order.intake_release", target=f"Order/{locked.pk}", site=locked.site.iss)
    return locked


def order_intake_release(*, order: Order, actor: str) -> Order:
    """Release a held order after staff fixed it: re-check it and sign it as the EHR signed it (the signer and time
    recorded at intake), publishing ``order.signed`` (``order_signature_record``). An item that was unmapped is
    resolved from the site's code mapping now (nothing else of the item, quantity or signer changes). Returns the
    signed order. Writes an ``order.intake_release`` audit row.

    Not one transaction on purpose: a refusal is audited after its rollback, with the error's code as outcome.
    Raises ``OrderIncomplete`` (``intake_incomplete``: still lacking something, listed) or ``OrderImmutable`` (no
    longer held).
    """
    try:
        with transaction.atomic():
            return _release(order, actor)
    except HealthcommerceError as exc:
        audit_record(actor=actor, action="order.intake_release", target=f"Order/{order.pk}", outcome=exc.code)
        raise


def order_intake_cancel(*, site: EHRSite, placer_order_number: str, actor: str) -> Outcome:
    """Cancel the order that arrived at ``site`` with ``placer_order_number`` (HL7 ORC-1 ``CA``), through
    ``order_cancel``. Returns ``Outcome``: ``AA`` with the order's reference when cancelled (or already was);
    ``AE`` at ``ORC-1`` once it has shipped or can no longer be cancelled, at ``ORC-2`` when no such order arrived.
    Audits a refusal as ``order.intake_cancel`` (``order_cancel`` audits the cancel itself)."""
    with transaction.atomic():
        _placer_lock(site, placer_order_number)
        order = intake_existing(site, placer_order_number)
        if order is None:
            return Outcome(ERROR, "ORC-1 CA: no order with this placer order number (ORC-2) was received.", "ORC-2")
        if order.status == Order.Status.CANCELLED:
            return Outcome(ACCEPT, "Already cancelled.", order=order.reference)
        refusal = ""
        if order.status == Order.Status.FULFILLED or order.fulfillment_status in SHIPPING:
            refusal = "already_shipped"
        else:
            try:
                with transaction.atomic():
                    order_cancel(order=order, actor=actor, reason="cancelled in the EHR")
            except InvalidTransition:
                refusal = f"not_cancellable_{order.status}"
        if not refusal:
            return Outcome(ACCEPT, "Cancelled.", order=order.reference)
        audit_record(actor=actor, action="order.intake_cancel", target=f"Order/{order.pk}", where=site.iss,
                     outcome=refusal, site=site.iss)  # fmt: skip
    if refusal == "already_shipped":
        text = "ORC-1 CA refused: the order already shipped; it cannot be cancelled."
    else:
        text = f"ORC-1 CA refused: the order is {order.status} and can no longer be cancelled."
    return Outcome(ERROR, text, "ORC-1", order=order.reference)
