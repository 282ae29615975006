"""Order services: draft orders from pre-fill, clinician edits, and sign-off.

Sign-off writes the order and its outbox row in one transaction (docs/reliability.md "No signed order is lost").
"""

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from healthcommerce.audit.services import audit_record, audit_record_many, audit_retention
from healthcommerce.catalog.models import HCPCS, Product
from healthcommerce.catalog.selectors import mapping_for_codes, payer_for_coverage, request_orderability
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.tokens import launch_access_token, launch_token_refresh
from healthcommerce.intake.services import intake_raw_purge
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.eligibility import order_eligibility_wanted
from healthcommerce.orders.errors import (
    EHRUnavailable,
    InvalidTransition,
    OrderImmutable,
    OrderIncomplete,
    ProductMismatch,
)
from healthcommerce.orders.events import (
    TOPIC_ORDER_CANCELLED,
    TOPIC_ORDER_ELIGIBILITY,
    TOPIC_ORDER_SIGNED,
    TOPIC_ORDER_WRITEBACK,
    order_event_key,
    order_subject,
)
from healthcommerce.orders.extract import RequestInfo
from healthcommerce.orders.fields import blank, editable, order_content, phi_blank, prefilled
from healthcommerce.orders.models import CoverageStatus, Order
from healthcommerce.orders.prefill import TRANSIENT, Prefill, can_sign, prefill_gather
from healthcommerce.orders.transitions import order_event_add, order_transition, order_transition_many
from healthcommerce.orders.writeback import writeback_wanted
from healthcommerce.outbox.services import outbox_cancel, outbox_publish

logger = logging.getLogger(__name__)
PENDING_STATUSES = ("draft", "active")


def _request_fields(request: RequestInfo, mapping: Any) -> dict[str, Any]:
    """Return the columns a draft takes from the EHR request and its catalog ``mapping`` (None: no product)."""
    system, code, _ = request.codings[0] if request.codings else ("", "", "")
    if mapping is not None:
        system, code = mapping.system, mapping.code
    return {
        "request_reference": request.reference,
        "request_system": system,
        "request_code": code,
        "request_display": request.display[:300],
        "product": mapping.product if mapping else None,
        "quantity": request.quantity or (mapping.default_quantity if mapping else 1),
    }


def payer_columns(*, site: EHRSite, values: dict[str, Any]) -> dict[str, Any]:
    """Return ``payer`` and ``coverage_status`` for an order at ``site`` whose chart coverage gave ``values`` (the
    field table's ``payer_keys`` and ``payer_name``): the payer record they name (``payer_for_coverage``) as
    ``matched``; ``not_recognised`` when the chart has coverage that no record matches; "" with no coverage."""
    keys, name = list(values.get("payer_keys") or []), str(values.get("payer_name") or "")
    if not keys and not name:
        return {"payer": None, "coverage_status": CoverageStatus.NONE}
    payer = payer_for_coverage(site=site, keys=keys, name=name)
    status = CoverageStatus.MATCHED if payer is not None else CoverageStatus.NOT_RECOGNISED
    return {"payer": payer, "coverage_status": status}


def _draft_fields(launch: Launch, found: Prefill, request: RequestInfo | None, mapping: Any) -> dict[str, Any]:
    """Return a draft's columns: each pre-filled row's value (its empty value when its read found nothing), the
    launch's user as the practitioner, the payer record the chart's coverage names (``payer_columns``), and the
    request's columns."""
    fields: dict[str, Any] = {row.name: blank(row.name) for row in prefilled()}
    for values in found.values.values():
        fields |= values
    fields["practitioner_reference"] = launch.fhir_user
    fields |= payer_columns(site=launch.site, values=fields)
    return fields | (_request_fields(request, mapping) if request is not None else {})


def _set_aside(request: RequestInfo, reason: str) -> dict[str, str]:
    """Return the JSON kept on the launch for a request listed apart (``Launch.prefill_set_aside``)."""
    code = request.codings[0][1] if request.codings else ""
    return {"reference": request.reference, "display": request.display[:300], "code": code, "reason": reason}


@transaction.atomic(savepoint=False)
def order_drafts_create(*, launch: Launch, found: Prefill) -> list[dict[str, str]]:
    """Create (or refresh) one draft order per pending, orderable request found; one blank draft when none was found.

    A request that is not pending (status other than draft/active) or that no product fulfils
    (``catalog.selectors.request_orderability``: home-health visits, transport ...) gets no draft and is
    returned in the set-aside list (``[{"reference", "display", "code", "reason"}]``). A request that already
    has a signed (or later) order at this site gets no new draft; a draft of another launch for the same request
    is refreshed and shared with this one (``Order.launches``), never taken from it.
    """
    set_aside: list[dict[str, str]] = []
    drafts: list[tuple[RequestInfo | None, Any]] = [] if found.requests else [(None, None)]
    for found_request in found.requests:
        if found_request.status not in PENDING_STATUSES:
            shown = found_request.status or "unknown"
            reason = f"Its status in the EHR is '{shown}': there is nothing to order."
            set_aside.append(_set_aside(found_request, reason))
            continue
        codings = [(s, c) for s, c, _ in found_request.codings]
        verdict = request_orderability(site=launch.site, resource_type=found_request.resource_type, codings=codings)
        if verdict.orderable:
            drafts.append((found_request, verdict.mapping))
        else:
            set_aside.append(_set_aside(found_request, verdict.reason))
    for request, mapping in drafts:
        reference = request.reference if request else ""
        # The request's orders at this site, in one statement: a signed (or later) one means no new draft.
        existing = (
            list(
                Order.objects.filter(site=launch.site, patient_fhir_id=launch.patient_id, request_reference=reference)
                .exclude(status=Order.Status.CANCELLED)
                .order_by("pk")
            )
            if reference
            else []
        )
        if any(order.status != Order.Status.DRAFT for order in existing):
            continue
        fields = _draft_fields(launch, found, request, mapping)
        # A draft of another launch (earlier, or open in another browser now) for the same request is shared, not
        # taken: refreshed with what the EHR holds now and listed by both launches, so neither page loses it and
        # the request still has one draft to sign.
        draft = existing[0] if existing else None
        if draft is None:
            draft = Order.objects.create(
                site=launch.site,
                launch=launch,
                patient_fhir_id=launch.patient_id,
                order_date=timezone.localdate(),
                **fields,
            )
        else:
            for name, value in fields.items():
                setattr(draft, name, value)
            draft.save(update_fields=[*fields, "updated_at"])
        draft.launches.add(launch)
    return set_aside


def _gather(launch: Launch) -> Prefill:
    """Gather with a usable token; after a 401, refresh once (when the EHR granted a refresh token) and retry.

    Raises ``ReauthorizationNeeded`` when the token has expired and cannot be refreshed, ``RefreshUnavailable``
    when the EHR did not answer the refresh, and ``EHRUnavailable`` when a read failed in a way that may pass
    (``prefill.TRANSIENT``): then nothing may be created or recorded from what was read.
    """
    found = prefill_gather(launch=launch, access_token=launch_access_token(launch))
    if "unauthorized" in found.outcomes.values() and launch.refresh_token:
        found = prefill_gather(launch=launch, access_token=launch_token_refresh(launch, force=True))
    failed = sorted(label for label, outcome in found.outcomes.items() if outcome in TRANSIENT)
    if failed:
        logger.warning("Pre-fill for launch %s not recorded: temporary failure of %s", launch.pk, ", ".join(failed))
        raise EHRUnavailable(failed)
    return found


def _record_prefill(launch: Launch, found: Prefill, set_aside: list[dict[str, str]]) -> None:
    """Mark ``launch`` pre-filled and keep the patient's display name for its banner (encrypted, like the other
    PHI; the launch purge deletes it). The access token stays (encrypted) for its lifetime, so "Re-read from the
    EHR" works while it lives; ``ehr.services.launch_tokens_clear`` clears it once it has expired (issue 9,
    docs/adr/0016). A refresh token, when the site granted one, then gets a new one; without one, a re-read asks
    the clinician to launch again (``ReauthorizationNeeded``)."""
    launch.prefilled_at = timezone.now()
    launch.prefill_outcomes, launch.prefill_seconds = found.outcomes, found.seconds
    launch.prefill_warnings, launch.prefill_set_aside = found.warnings[:100], set_aside
    name = found.values.get("Patient", {}).get("patient_name")
    if name:
        launch.patient_name = name[:300]
    launch.save(update_fields=[*PREFILL_FIELDS, "updated_at"])


# The launch's columns a pre-fill writes (``_record_prefill``).
PREFILL_FIELDS = (
    "prefilled_at", "prefill_outcomes", "prefill_seconds", "prefill_warnings", "prefill_set_aside", "patient_name",
)  # fmt: skip


def launch_prefill(*, launch: Launch) -> bool:
    """Pre-fill a launch once: read the EHR (``prefill_gather``), then create the drafts and mark the launch
    pre-filled in one transaction. Returns False when it was already pre-filled.

    The reads run before the transaction (no lock is held across EHR round trips); under the launch's row lock
    the mark is re-checked, so two concurrent first visits make one set of drafts. A failure rolls the whole
    transaction back, leaving the launch unmarked, so the next visit retries; so does a temporary failure of the
    reads (``EHRUnavailable``: no draft, nothing recorded). Raises ``ReauthorizationNeeded``,
    ``RefreshUnavailable`` or ``EHRUnavailable``.
    """
    if launch.prefilled_at is not None:
        return False
    found = _gather(launch)
    with transaction.atomic():
        locked = Launch.objects.select_for_update().select_related("site").get(pk=launch.pk)
        if locked.prefilled_at is not None:
            return False
        _record_prefill(locked, found, order_drafts_create(launch=locked, found=found))
    for name in PREFILL_FIELDS:  # what was just saved, without reading the row again
        setattr(launch, name, getattr(locked, name))
    return True


def launch_reread(*, launch: Launch) -> None:
    """Read the EHR again for a launch already pre-filled ("re-read from the EHR"): refresh its drafts, warnings
    and set-aside list from the current EHR data. Signed orders are untouched.

    Uses the stored access token while it lives, else refreshes it (``ehr.tokens``); raises
    ``ReauthorizationNeeded`` when it cannot, ``RefreshUnavailable`` or ``EHRUnavailable`` when the EHR did not
    answer: the drafts then stay as they are.
    """
    try:
        found = _gather(launch)
    except EHRUnavailable as exc:
        message = "The EHR could not be reached just now; nothing was changed. Please try Re-read again in a moment."
        raise EHRUnavailable(exc.reads, message) from exc
    with transaction.atomic():
        locked = Launch.objects.select_for_update().select_related("site").get(pk=launch.pk)
        _record_prefill(locked, found, order_drafts_create(launch=locked, found=found))
    for name in PREFILL_FIELDS:
        setattr(launch, name, getattr(locked, name))


def order_missing_fields(order: Order) -> list[tuple[str, str]]:
    """Return what the order still needs before it can be signed: ``[(form field, user-facing label)]`` in form
    order, the field being the ``OrderForm`` field to correct ("" when the form cannot fix it); empty when
    complete. The rows with ``required`` in ``orders.fields.FIELDS`` say what is needed."""
    return [(row.fix_field(), label) for row in order_fields.FIELDS if (label := row.lacking(order))]


def order_missing(order: Order) -> list[str]:
    """Return what the order still needs before it can be signed (user-facing labels, empty when complete)."""
    return [label for _, label in order_missing_fields(order)]


def order_product_mismatch(order: Order, product: Product | None = None) -> str:
    """Return a sentence for the clinician when ``product`` (default: the order's) does not fulfil the EHR request
    the order answers, else "".

    It fulfils the request when the request's code (``request_system``/``request_code``, kept from pre-fill)
    maps to it in the catalog (``catalog.selectors.mapping_for_codes``), when it bills under the same HCPCS code
    as the product the code maps to, or, for an HCPCS-coded request, when it bills under that very code. A
    draft with no coded request (nothing found in the EHR) or no product yet has nothing to compare.
    """
    product = product if product is not None else order.product
    if product is None or not order.request_code:
        return ""
    code = order.request_code
    mapping = mapping_for_codes(site=order.site, codings=[(order.request_system, code)])
    if mapping is not None and (
        mapping.product_id == product.pk or (product.hcpcs_code and product.hcpcs_code == mapping.product.hcpcs_code)
    ):
        return ""
    if order.request_system == HCPCS and product.hcpcs_code.upper() == code.upper():
        return ""
    requested = f"{order.request_display} ({code})" if order.request_display else code
    if mapping is not None:
        return (
            f"The EHR requested {requested}, which the catalog fills with {mapping.product.name}, not {product.name}."
        )
    return f"The EHR requested {requested}; the catalog does not say {product.name} fulfils it."


def _lock(order: Order) -> Order:
    """Return ``order`` read again under a row lock (``SELECT ... FOR UPDATE OF`` the order), with its product,
    site and payer."""
    return Order.objects.select_for_update(of=("self",)).select_related("product", "site", "payer").get(pk=order.pk)


@transaction.atomic
def order_update_draft(*, order: Order, actor: str, changes: dict[str, Any], launch: Launch | None = None) -> Order:
    """Apply the clinician's edits (keys from ``orders.fields.editable()``) to a draft. Raises ``OrderImmutable``
    once signed.

    Writes one ``order.edit`` audit row naming the changed fields (names only, never values; HIPAA 164.312(b))
    when any changed; ``launch`` adds its site and id to the row.
    """
    return _draft_update(_lock(order), actor=actor, changes=changes, launch=launch)


def _draft_update(locked: Order, *, actor: str, changes: dict[str, Any], launch: Launch | None) -> Order:
    """``order_update_draft`` on an order its caller locked (``_lock``), inside the caller's transaction."""
    fields = _edits_set(locked, changes)
    locked.save(update_fields=[*fields, "updated_at"])
    if fields:
        audit_record(**_edit_audit(locked, fields, actor=actor, launch=launch))
    return locked


def _edits_set(locked: Order, changes: dict[str, Any]) -> list[str]:
    """Set the editable ``changes`` on the locked draft (not saved); return their names. Raises ``OrderImmutable``
    once signed."""
    if locked.status != Order.Status.DRAFT:
        raise OrderImmutable()
    allowed = editable()
    fields = [name for name in changes if name in allowed]
    for name in fields:
        setattr(locked, name, changes[name])
    return fields


def _edit_audit(order: Order, fields: Sequence[str], *, actor: str, launch: Launch | None) -> dict[str, Any]:
    """The ``order.edit`` audit row's arguments: the changed fields' names, never their values."""
    return {
        "actor": actor or "unknown",
        "action": "order.edit",
        "target": f"Order/{order.pk}",
        "detail": {"fields": sorted(fields)},
        "site": launch.site.iss if launch is not None else "",
        "launch_id": launch.pk if launch is not None else "",
    }


def order_edit(
    *, order: Order, launch: Launch, changes: dict[str, Any], sign: bool = False, mismatch_confirmed: bool = False
) -> Order:
    """Save the clinician's edits and, with ``sign``, sign the draft in the same transaction (the order page's one
    click); return the order. ``mismatch_confirmed`` is passed to ``order_sign``.

    Not one transaction on purpose: the edits and the signature commit or roll back together in an inner
    transaction (one row lock for both), and a refusal (any ``HealthcommerceError`` from ``order_update_draft`` or
    ``order_sign``) is then audited after that rollback, so the failed attempt is kept (HIPAA 164.312(b)):
    ``order.sign`` (or ``order.edit`` when the edit itself was refused) with the error's ``code`` as outcome.
    Re-raises the error.
    """
    step = "order.edit"
    try:
        with transaction.atomic():
            locked = _lock(order)
            if not sign:
                return _draft_update(locked, actor=launch.fhir_user, changes=changes, launch=launch)
            # Signing in the same click saves the edits with the signature: one UPDATE of the row, and the edit's
            # audit row in the same INSERT as the signature's.
            edits = _edits_set(locked, changes)
            step = "order.sign"
            return _sign(locked, launch=launch, mismatch_confirmed=mismatch_confirmed, edits=edits)
    except HealthcommerceError as exc:
        audit_record(
            actor=launch.fhir_user or "unknown",
            action=step,
            target=f"Order/{order.pk}",
            outcome=exc.code,
            site=launch.site.iss,
            launch_id=launch.pk,
        )
        raise


def content_hash(order: Order) -> str:
    """Return the SHA-256 hex digest of the canonical JSON (sorted keys, no spaces, UTF-8) of ``order_content``."""
    canonical = json.dumps(order_content(order), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_signature_record(
    *, order: Order, signed_by: str, signed_at: datetime, actor: str, edits: Sequence[str] = ()
) -> Order:
    """Sign ``order`` (locked by the caller, inside its transaction; a draft or a held order, complete): record who
    (``signed_by``) and when (``signed_at``, aware) and the SHA-256 of its content (``content_hash``), move it to
    ``signed`` (``actor`` on the timeline), and publish ``order.signed`` (the outbox hands it to fulfillment) and,
    where the site writes a record back and the order names the patient's FHIR id, ``order.writeback``
    (``orders.writeback``, ADR 0022), and, where its coverage is checked with the payer, ``order.eligibility``
    (``orders.eligibility``, ADR 0026). Returns ``order``, updated. Used by ``order_sign`` (the app) and the
    intake (``orders.intake``: signed in the EHR); raises ``InvalidTransition`` from any other status. ``edits``
    names columns the caller set on ``order`` and did not save yet: they are saved in the same UPDATE.
    """
    order.signed_by, order.signed_at = signed_by, signed_at
    order.content_hash = content_hash(order)
    order.save(update_fields=[*dict.fromkeys(edits), "signed_by", "signed_at", "content_hash", "updated_at"])
    # The caller holds the row lock and read the status under it: one conditional UPDATE and the event's INSERT.
    order_transition_many(
        changes=[(order.pk, order.status, {"hash": order.content_hash})], to_status=Order.Status.SIGNED, actor=actor
    )
    order.status = Order.Status.SIGNED
    outbox_publish(topic=TOPIC_ORDER_SIGNED, key=order_event_key(order), subject=order_subject(order))
    if writeback_wanted(order.site) and order.patient_fhir_id:
        outbox_publish(topic=TOPIC_ORDER_WRITEBACK, key=order_event_key(order), subject=order_subject(order))
    if order_eligibility_wanted(order):
        outbox_publish(topic=TOPIC_ORDER_ELIGIBILITY, key=order_event_key(order), subject=order_subject(order))
    return order


@transaction.atomic
def order_sign(*, order: Order, launch: Launch, mismatch_confirmed: bool = False) -> Order:
    """Sign a complete draft as the launch's practitioner (``fhirUser``); publish ``order.signed`` in the same
    transaction (the outbox hands it to fulfillment), and ``order.writeback`` where the site writes a record back
    into the EHR (``orders.writeback``, ADR 0022).

    Records who (fhirUser), when and the SHA-256 of the content (which includes the EHR request's code); the order
    is immutable afterwards. A product that does not fulfil the EHR request (``order_product_mismatch``) is signed
    only with ``mismatch_confirmed`` (the clinician ticked "I confirm ..."); the ``order.sign`` audit row then
    records the request code and the product's SKU and HCPCS code as ``product_mismatch_confirmed``, and so does a
    ``product_mismatch_confirmed`` event on the order's timeline.
    Raises ``OrderIncomplete`` (listing what is missing), ``ProductMismatch`` or ``OrderImmutable`` when it is
    not a draft.
    """
    return _sign(_lock(order), launch=launch, mismatch_confirmed=mismatch_confirmed)


def _sign(locked: Order, *, launch: Launch, mismatch_confirmed: bool, edits: Sequence[str] = ()) -> Order:
    """``order_sign`` on an order its caller locked (``_lock``), inside the caller's transaction; ``edits`` are
    columns set on ``locked`` and not saved yet (``order_edit``): saved with the signature, and their ``order.edit``
    audit row written with the ``order.sign`` row."""
    if locked.status != Order.Status.DRAFT:
        raise OrderImmutable()
    if not can_sign(launch.fhir_user):
        raise OrderIncomplete(
            "Only a practitioner can sign orders: launch the app from the EHR as the ordering practitioner.",
            code="not_a_practitioner",
        )
    if locked.practitioner_reference != launch.fhir_user:
        raise OrderIncomplete("Only the practitioner who launched the app can sign this order.", code="wrong_signer")
    missing = order_missing(locked)
    if missing:
        raise OrderIncomplete("Before signing, add " + "; ".join(missing) + ".")
    mismatch = order_product_mismatch(locked)
    if mismatch and not mismatch_confirmed:
        raise ProductMismatch(mismatch + " Confirm that it fulfils the request, or pick another item.")
    order_signature_record(
        order=locked, signed_by=launch.fhir_user, signed_at=timezone.now(), actor=launch.fhir_user, edits=edits
    )
    product = locked.product
    confirmed = (
        {"request_code": locked.request_code, "sku": product.sku, "hcpcs": product.hcpcs_code} if product else {}
    )
    if mismatch:
        order_event_add(order=locked, kind="product_mismatch_confirmed", actor=launch.fhir_user, detail=confirmed)
    signed = {
        "actor": launch.fhir_user,
        "action": "order.sign",
        "target": f"Order/{locked.pk}",
        "where": launch.site.iss,
        "site": launch.site.iss,
        "launch_id": launch.pk,
        "detail": {"product_mismatch_confirmed": confirmed} if mismatch else None,
    }
    edited = [_edit_audit(locked, edits, actor=launch.fhir_user, launch=launch)] if edits else []
    audit_record_many(records=[*edited, signed])
    return locked


CANCELLABLE = (Order.Status.DRAFT, Order.Status.HELD, Order.Status.SIGNED, Order.Status.SUBMITTED)


@transaction.atomic
def order_cancel(*, order: Order, actor: str, reason: str = "") -> Order:
    """Cancel an order that has not shipped: ``draft``, ``held``, ``signed`` or ``submitted`` becomes ``cancelled``.

    In the same transaction: a hand-over to fulfillment that no worker has taken is cancelled
    (``outbox_cancel``), and an order signed (here, or in the EHR: ``held`` too) publishes ``order.cancelled`` so
    fulfillment cancels it at the backend. Links of a cancelled order stop working (``purchaselinks`` refuses
    them). Raises ``InvalidTransition`` once the order is fulfilled, failed or already cancelled.
    """
    locked = Order.objects.select_for_update().get(pk=order.pk)
    if locked.status not in CANCELLABLE:
        raise InvalidTransition(f"An order that is {locked.status} cannot be cancelled.")
    was_signed = locked.status != Order.Status.DRAFT
    detail = {"reason": reason[:200]} if reason else {}
    locked = order_transition(order_id=locked.pk, to_status=Order.Status.CANCELLED, actor=actor, detail=detail)
    if was_signed:
        subject = order_subject(locked)
        outbox_cancel(subject=subject, topic=TOPIC_ORDER_SIGNED, actor=actor)
        outbox_publish(topic=TOPIC_ORDER_CANCELLED, key=order_event_key(locked), subject=subject)
    audit_record(actor=actor, action="order.cancel", target=f"Order/{locked.pk}", detail=detail or None)
    return locked


def orders_closed_before(cutoff: Any) -> Q:
    """Return the filter for orders closed before ``cutoff`` (an aware datetime): cancelled or failed and last
    changed before it, fulfilled with the backend reporting ``delivered`` before it, or drafts created before it
    (their launch ended long ago: they can no longer be signed)."""
    S = Order.Status
    return (
        Q(status__in=[S.CANCELLED, S.FAILED], updated_at__lt=cutoff)
        | Q(status=S.FULFILLED, fulfillment_status="delivered", fulfillment_updated_at__lt=cutoff)
        | Q(status=S.DRAFT, created_at__lt=cutoff)
    )


@transaction.atomic
def orders_phi_purge() -> int:
    """Blank the PHI columns (``orders.fields.phi_blank``: each ``Phi.ENCRYPTED`` row of the order's field table)
    of orders closed more than ``ORDER_PHI_RETENTION_DAYS`` ago (``orders_closed_before``) and
    set ``phi_purged_at``; return how many. Ids, reference, product, status, timestamps and ``content_hash`` stay.
    The raw intake messages those orders came in (HL7 v2, kept encrypted for audit) are blanked with them
    (``intake_raw_purge``). The links and the local backend's copy follow in their own purges, which key on
    ``phi_purged_at``. One ``retention.purge`` audit row with the count (docs/reliability.md "Retention"). Run
    daily by beat (``healthcommerce.orders.tasks.purge``); idempotent (a purged order is not purged again).
    """
    now = timezone.now()
    cutoff = now - timedelta(days=settings.ORDER_PHI_RETENTION_DAYS)
    due = Order.objects.filter(orders_closed_before(cutoff), phi_purged_at__isnull=True)
    messages = list(due.exclude(intake_message=None).values_list("intake_message_id", flat=True))
    purged = due.update(**phi_blank(), phi_purged_at=now)
    intake_raw_purge(messages)
    audit_retention(target="Order", counts={"orders": purged, "retention_days": settings.ORDER_PHI_RETENTION_DAYS})
    if purged:
        logger.info("retention: purged the PHI of %d closed order(s)", purged)
    return purged
