"""Eligibility after sign-off (issue 21, ADR 0026): a signed order whose payer record has a clearinghouse payer id,
at a site with checks on, publishes ``order.eligibility``; orders' own ``orders.eligibility`` subscriber asks the
payer through ``coverage.services.eligibility_check`` and tells the clinic what it means for the order.

Only what the 270 needs leaves: the member's name, birth date and member id, the payer id, the signing
practitioner's NPI (or the site's supplier NPI) and the service type for the product's kind (12 durable medical
equipment, 5 diagnostic lab for a specimen-collection kit). A payer that is down never blocks the order: the
outbox retries temporary failures (timeouts, 429, 5xx, AAA 42/80), the order goes on to fulfillment meanwhile,
and the patient sees the rules' estimate marked "not yet confirmed with your plan" until an answer comes.

An answer that changes what the patient pays is put on the order's timeline, where the clinician (on relaunch)
and the admin see it: ``coverage_inactive`` (the patient is offered self-pay), ``coverage_not_found`` (the member
id or name may be wrong), ``coverage_rejected``; ``coverage_confirmed`` for an active answer.
"""

import logging

from django.db import transaction
from django.utils import timezone

from healthcommerce.catalog.models import Payer, Product
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.coverage import types
from healthcommerce.coverage.clearinghouse import ClearinghouseError
from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.coverage.services import (
    EligibilityNotPossible,
    Subscriber,
    eligibility_check,
    eligibility_latest,
    eligibility_wanted,
    payer_checkable,
)
from healthcommerce.coverage.x12 import reason_text
from healthcommerce.orders.events import order_for_subject, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done

logger = logging.getLogger(__name__)

ACTOR = "system:eligibility"
# The timeline entry an answer adds, by outcome; ``payer_unavailable`` adds none (it is retried).
EVENT_KINDS = {
    types.ACTIVE: "coverage_confirmed",
    types.INACTIVE: "coverage_inactive",
    types.NOT_FOUND: "coverage_not_found",
    types.PROVIDER_REJECTED: "coverage_rejected",
    types.REJECTED: "coverage_rejected",
    types.UNREADABLE: "coverage_rejected",
}


class EligibilityRetry(HealthcommerceError):
    """No answer yet (the clearinghouse failed, or the payer could not answer now): the outbox retries the row while
    ``temporary``. ``code`` (``eligibility_timeout``, ``eligibility_payer_unavailable`` ...) as the outbox and the
    dead letter read it; ``retry_after`` in seconds when the clearinghouse said (429 Retry-After)."""

    code = "eligibility_failed"
    status = 502
    message = "The payer could not be asked about this coverage now."

    def __init__(self, *, code: str, temporary: bool = True, retry_after: float | None = None) -> None:
        super().__init__(code=code[:60])
        self.temporary = temporary
        self.retry_after = retry_after


def service_type_for(product: Product | None) -> str:
    """Return the X12 service type code (EQ01) for ``product``'s kind: ``5`` (diagnostic lab) for a
    specimen-collection kit, ``12`` (durable medical equipment) otherwise."""
    if product is not None and product.kind == Product.Kind.KIT:
        return types.SERVICE_TYPE_LAB
    return types.SERVICE_TYPE_DME


def order_subscriber(order: Order) -> Subscriber:
    """Return the member as the 270 names them, from the signed order: the last word of ``patient_name`` as the
    last name and the rest as the first (the order keeps one display name; a payer that matches on member id and
    birth date, as X279A1 asks, finds them), the birth date and ``payer_member_id``."""
    words = order.patient_name.split()
    return Subscriber(
        first_name=" ".join(words[:-1]),
        last_name=words[-1] if words else "",
        birth_date=order.patient_birth_date,  # type: ignore[arg-type]
        member_id=order.payer_member_id,
    )


def order_eligibility_wanted(order: Order) -> bool:
    """Whether ``order`` gets a check after sign-off: its site checks eligibility, its payer record has a payer id,
    it names a member id, and the clinician did not choose self-pay (at most one statement: it runs at sign-off)."""
    if order.coverage_status == "self_pay" or order.payer_id is None or not order.payer_member_id.strip():
        return False
    return payer_checkable(site=order.site, payer_pk=order.payer_id)


def order_eligibility_latest(order: Order) -> EligibilityCheck | None:
    """Return the newest answered check for ``order``'s member, payer and service type (from this order or an
    earlier one of the same member), or None."""
    return eligibility_latest(
        site=order.site,
        payer=order.payer,
        member_id=order.payer_member_id,
        service_type=service_type_for(order.product),
    )


def order_eligibility_check(order: Order, *, trigger: str, timeout: float | None = None) -> EligibilityCheck:
    """Ask the payer about ``order``'s member now (``coverage.services.eligibility_check``) and return the stored
    check. Raises ``EligibilityNotPossible`` and ``ClearinghouseError`` as that does."""
    assert order.payer is not None
    return eligibility_check(
        site=order.site,
        subject=order_subject(order),
        payer=order.payer,
        subscriber=order_subscriber(order),
        provider_npi=order.practitioner_npi,
        service_type=service_type_for(order.product),
        trigger=trigger,
        timeout=timeout,
    )


def eligibility_deliver(message: OutboxMessage) -> None:
    """Handle ``order.eligibility``: check the order's coverage with its payer and add the answer to its timeline
    (``EVENT_KINDS``), marking the row done in the same transaction.

    An order cancelled or purged since, or one that can no longer be checked (``EligibilityNotPossible``: the site
    turned checks off, the payer lost its id), is done with nothing asked (result ``skipped:<why>``). Raises
    ``EligibilityRetry`` (temporary) when no answer came or the payer could not answer now, for the outbox to retry
    and, after its attempts, dead-letter (``eligibility_dead``).
    """
    order = order_for_subject(message.subject).select_related("site", "payer", "product").get()
    if order.status == Order.Status.CANCELLED or order.phi_purged_at:
        message_done(message, result="skipped:order_closed")
        return
    try:
        check = order_eligibility_check(order, trigger=EligibilityCheck.Trigger.SIGNED)
    except EligibilityNotPossible as exc:
        message_done(message, result=f"skipped:{exc.reason}"[:200])
        return
    except ClearinghouseError as exc:
        raise EligibilityRetry(
            code=f"eligibility_{exc.outcome}", temporary=exc.temporary, retry_after=exc.retry_after
        ) from exc
    if check.outcome == types.PAYER_UNAVAILABLE:
        raise EligibilityRetry(code="eligibility_payer_unavailable")
    with transaction.atomic():
        if not message_done(message, result=f"{check.outcome}:{check.pk}"):
            return
        order_event_add(order=order, kind=EVENT_KINDS[check.outcome], actor=ACTOR, detail=_detail(check))


def _detail(check: EligibilityCheck) -> dict[str, str]:
    """The timeline entry's detail: the payer id, outcome, AAA reason code and check id (no member data)."""
    return {
        "payer_id": check.clearinghouse_payer_id,
        "outcome": check.outcome,
        "reason": check.reason_code,
        "check": str(check.pk),
    }


def eligibility_dead(*, message: OutboxMessage, code: str) -> str:
    """On a dead-lettered ``order.eligibility`` row: add ``coverage_unconfirmed`` to the order's timeline (the
    patient keeps the rules' estimate, marked unconfirmed). Returns the alert's context."""
    order = order_for_subject(message.subject).select_related("site").get()
    order_event_add(order=order, kind="coverage_unconfirmed", actor=ACTOR, detail={"code": code})
    return f"order={order.reference} site={order.site_id}"


# What the clinician reads about the member's coverage, by the last answer's outcome.
_CLINICIAN_TEXT = {
    types.ACTIVE: "Active: {payer} confirmed the coverage on {date}.",
    types.INACTIVE: "NOT active: {payer} said on {date} that this coverage is not active. The patient will be offered "
    "self-pay; check the chart's coverage or pick another payer.",
    types.NOT_FOUND: "{payer} did not find this member on {date} ({reason}): check the member ID and the name.",
    types.PROVIDER_REJECTED: "{payer} refused the check on {date} ({reason}): ask your billing office.",
    types.REJECTED: "{payer} rejected the check on {date} ({reason}).",
}


def order_coverage_summary(order: Order, payer: Payer | None, check: EligibilityCheck | None) -> tuple[str, str]:
    """Return ``(tone, sentence)`` about the coverage of ``order`` with ``payer`` (the one on the clinician's form)
    for the order page, given ``check``, the member's last answer from ``coverage.services.eligibility_latest``:
    that answer (``ok``, ``warning``), or whether one will be asked after signing (``info``). Tones are CSS
    classes; no member data is in the sentence."""
    if payer is None:
        return "info", "No payer: no eligibility check."
    if check is None and not eligibility_wanted(site=order.site, payer=payer):
        return "info", f"Coverage is not checked with {payer.name} at this site: the amount is the site's estimate."
    if check is None or check.outcome not in _CLINICIAN_TEXT:
        if not order.payer_member_id.strip():
            return "warning", f"Add the member ID to check the coverage with {payer.name}."
        return "info", f"Not checked yet: {payer.name} is asked when the order is signed; the amount is an estimate."
    reason = f"AAA {check.reason_code}: {reason_text(check.reason_code)}" if check.reason_code else ""
    when = timezone.localtime(check.created_at).strftime("%Y-%m-%d %H:%M")
    tone = "ok" if check.outcome == types.ACTIVE else "warning"
    return tone, _CLINICIAN_TEXT[check.outcome].format(payer=payer.name, date=when, reason=reason)
