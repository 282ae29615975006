"""The patient's payment through Stripe: a PaymentIntent created here, paid on the page with stripe.js, and
recorded from Stripe's webhooks (docs/adr/0012).

Sources, Stripe API reference and docs: "Payment Intents" (create, retrieve, cancel; the object's ``status``),
"Refunds" (create), "Idempotent requests" (``Idempotency-Key``), "Metadata" (never put sensitive information
there: only the opaque order reference goes to Stripe), "Webhooks" ("Check the webhook signatures", "Handle
duplicate events", "Event ordering": events can arrive more than once and in any order).

Status moves forward only (``ALLOWED``). Every Stripe call happens outside a database transaction, with
``settings.HTTP_TIMEOUT`` and ``STRIPE_MAX_NETWORK_RETRIES``; nothing here logs a key, a client secret, a name or
an amount's reason: an order reference, a payment id and codes only.
"""

import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import check_url
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.purchaselinks.models import Payment, StripeEvent
from healthcommerce.purchaselinks.pricing import Quote

logger = logging.getLogger(__name__)

S = Payment.Status
# Where each status may go; anything else is an older or conflicting report and changes nothing. A success on a
# cancelled payment is money taken all the same: it is recorded, with an ALERT line (someone must refund it).
ALLOWED: dict[str, set[str]] = {
    S.REQUIRES_PAYMENT: {S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELLED},
    S.FAILED: {S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELLED},
    S.PROCESSING: {S.SUCCEEDED, S.FAILED},
    S.SUCCEEDED: {S.REFUNDED},
    S.REFUNDED: set(),
    S.CANCELLED: {S.SUCCEEDED},
}
APPLIED = "applied"
UNCHANGED = "unchanged"
IGNORED = "ignored"
DUPLICATE = "duplicate"
ACTOR = "system:stripe"


class PaymentsUnavailable(HealthcommerceError):
    """Stripe is not configured here (no ``STRIPE_SECRET_KEY``), or its API base breaks the outbound rules."""

    code = "payments_unavailable"
    status = 503
    message = gettext_noop("Paying online is not available. Please contact your clinic.")


class NothingToPay(HealthcommerceError):
    """The quote leaves the patient nothing to pay (covered): no PaymentIntent is made."""

    code = "nothing_to_pay"
    status = 409
    message = gettext_noop("There is nothing to pay for this order.")


class PaymentProviderError(HealthcommerceError):
    """Stripe refused the request or did not answer. ``temporary`` for connection errors, 429 and 5xx;
    ``code`` is Stripe's error code (e.g. ``amount_too_small``) or ``payment_provider_error``."""

    code = "payment_provider_error"
    status = 502
    message = gettext_noop("The payment service did not answer. Please try again in a few minutes.")


class RefundNotAllowed(HealthcommerceError):
    """Only a succeeded payment of a cancelled order is refunded from the admin."""

    code = "refund_not_allowed"
    status = 409
    message = "Only a paid, cancelled order can be refunded."


class PaymentNotYetKnown(HealthcommerceError):
    """A webhook names a payment this app has not recorded yet (its PaymentIntent id is not stored, or it has not
    succeeded before a refund): 409, and not recorded, so Stripe delivers it again later."""

    code = "payment_not_ready"
    status = 409
    message = "The payment is not recorded here yet; deliver the event again later."


def stripe_client() -> stripe.StripeClient:
    """Return a Stripe client for ``STRIPE_SECRET_KEY``, at ``STRIPE_API_BASE`` (empty: Stripe), with the
    project's (connect, read) timeout and ``STRIPE_MAX_NETWORK_RETRIES``.

    Raises ``PaymentsUnavailable`` when there is no key or the API base is neither https nor http to loopback.
    """
    key, base = settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE
    if not key:
        raise PaymentsUnavailable()
    if base:
        try:
            check_url(base)
        except HealthcommerceError as exc:
            raise PaymentsUnavailable() from exc
    return stripe.StripeClient(
        key,
        base_addresses={"api": base} if base else None,
        http_client=stripe.RequestsClient(timeout=settings.HTTP_TIMEOUT),
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def _provider_error(exc: stripe.StripeError, *, action: str, payment: Payment) -> PaymentProviderError:
    """Log ``exc`` by class, code and HTTP status only, and return the error to raise."""
    temporary = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (exc.http_status or 0) >= 500
    code = exc.code or "payment_provider_error"
    logger.warning(
        "stripe %s failed order=%s payment=%s error=%s code=%s http=%s",
        action,
        payment.order.reference,
        payment.pk,
        type(exc).__name__,
        code,
        exc.http_status,
    )
    error = PaymentProviderError(code=code)
    error.temporary = temporary
    return error


@transaction.atomic
def _payment_live(*, order: Order, quote: Quote) -> tuple[Payment, str]:
    """Return the live payment of ``order``'s version for ``quote``, making one when there is none; and the
    PaymentIntent id to cancel at Stripe ("" for none) when an unpaid one for another amount was replaced."""
    live = (
        Payment.objects.select_for_update()
        .filter(order=order, order_version=order.version)
        .exclude(status=S.CANCELLED)
        .first()
    )
    stale_intent = ""
    if live is not None:
        same = live.amount_cents == quote.patient_pays_cents and live.currency == quote.currency
        if same or live.status not in (S.REQUIRES_PAYMENT, S.FAILED):
            return live, ""
        Payment.objects.filter(pk=live.pk).update(status=S.CANCELLED, updated_at=timezone.now())
        stale_intent = live.stripe_payment_intent_id
    payment = Payment(
        order=order, order_version=order.version, amount_cents=quote.patient_pays_cents, currency=quote.currency
    )
    payment.idempotency_key = f"hc-payment-{payment.pk}"
    payment.save()
    audit_record(
        actor=ACTOR,
        action="payment.created",
        target=f"Order/{order.pk}",
        detail={"payment": str(payment.pk), "amount_cents": payment.amount_cents, "currency": payment.currency},
    )
    return payment, stale_intent


def payment_start(*, order: Order, quote: Quote) -> Payment:
    """Return the order's payment for ``quote`` with a Stripe PaymentIntent, creating both when needed.

    Idempotent: one live payment per order version (a concurrent call finds the same row), and its PaymentIntent
    is created with ``Idempotency-Key: hc-payment-<payment id>``, so a retry after a lost answer returns the same
    PaymentIntent from Stripe. A live unpaid payment for another amount (the quote changed) is cancelled here and
    at Stripe, and a new one made; a paid one is returned as it is. The PaymentIntent holds the amount, the
    currency, ``payment_method_types=["card"]`` and ``metadata={"order_reference": ...}`` only: no name, no
    email, no description of the item (Stripe's terms forbid PHI). Not one transaction: the row commits before
    the Stripe call, and the call's result is stored after it.

    Raises ``NothingToPay`` (``quote.patient_pays_cents`` is 0), ``PaymentsUnavailable`` or
    ``PaymentProviderError`` (Stripe refused or did not answer; ``temporary`` says whether to retry).
    """
    if not quote.needs_payment:
        raise NothingToPay()
    client = stripe_client()
    try:
        payment, stale_intent = _payment_live(order=order, quote=quote)
    except IntegrityError:  # a concurrent call made the live payment first
        payment, stale_intent = _payment_live(order=order, quote=quote)
    if stale_intent:
        _intent_cancel(client, payment=payment, intent_id=stale_intent)
    if payment.stripe_payment_intent_id or payment.status != S.REQUIRES_PAYMENT:
        return payment
    params: dict[str, Any] = {
        "amount": payment.amount_cents,
        "currency": payment.currency.lower(),
        "payment_method_types": ["card"],
        "metadata": {"order_reference": order.reference},
    }
    try:
        intent = client.v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": payment.idempotency_key},
        )
    except stripe.StripeError as exc:
        raise _provider_error(exc, action="payment_intent.create", payment=payment) from exc
    Payment.objects.filter(pk=payment.pk, stripe_payment_intent_id="").update(
        stripe_payment_intent_id=intent.id, updated_at=timezone.now()
    )
    payment.refresh_from_db()
    logger.info("payment started order=%s payment=%s intent=%s", order.reference, payment.pk, intent.id)
    return payment


def _intent_cancel(client: stripe.StripeClient, *, payment: Payment, intent_id: str) -> None:
    """Cancel a replaced PaymentIntent at Stripe; a failure is logged only (nobody can pay it without its page)."""
    try:
        client.v1.payment_intents.cancel(intent_id)
    except stripe.StripeError as exc:
        _provider_error(exc, action="payment_intent.cancel", payment=payment)


def _move(payment: Payment, to_status: str, **changes: Any) -> bool:
    """Move ``payment`` to ``to_status`` with a conditional UPDATE from the statuses allowed to reach it; return
    whether it moved (``payment`` is refreshed either way)."""
    sources = [source for source, targets in ALLOWED.items() if to_status in targets]
    moved = Payment.objects.filter(pk=payment.pk, status__in=sources).update(
        status=to_status, updated_at=timezone.now(), **changes
    )
    payment.refresh_from_db()
    return bool(moved)


def _record(payment: Payment, *, kind: str, event_id: str, **detail: Any) -> None:
    """Write the order-timeline entry and the audit row for a payment change (ids, codes, cents: no PHI)."""
    detail = {"payment": str(payment.pk), "event_id": event_id, **detail}
    order_event_add(order=payment.order, kind=kind, actor=ACTOR, detail=detail)
    audit_record(
        actor=ACTOR,
        action=f"payment.{kind.removeprefix('payment_')}",
        target=f"Order/{payment.order_id}",
        detail=detail,
    )


@transaction.atomic
def payment_succeeded(*, payment: Payment, event_id: str = "") -> bool:
    """Record that ``payment`` succeeded; return whether this call made it so (False: it already had, or it is
    refunded). The one place a payment becomes ``succeeded``.

    Whatever a paid order sets off happens here, in this transaction, so it happens exactly once: the order's
    verified purchase link is completed and the patient's confirmation published to the commerce backend
    (``purchase_link_paid``). A success on a cancelled payment is recorded with an ALERT log line: the patient
    paid, and the admin's refund action must give it back.
    """
    was = payment.status
    if not _move(payment, S.SUCCEEDED, succeeded_at=timezone.now(), last_error_code=""):
        return False
    if was == S.CANCELLED:
        logger.error(
            "ALERT payment succeeded after it was cancelled order=%s payment=%s", payment.order.reference, payment.pk
        )
    _record(payment, kind="payment_succeeded", event_id=event_id, amount_cents=payment.amount_cents)
    logger.info("payment succeeded order=%s payment=%s", payment.order.reference, payment.pk)
    if was != S.CANCELLED:
        from healthcommerce.purchaselinks.services import purchase_link_paid  # services import this module

        purchase_link_paid(order=payment.order, payment_id=str(payment.pk))
    return True


class CardDeclined(HealthcommerceError):
    """The card was refused (``code`` is Stripe's decline or error code). The patient may try another card:
    the declined PaymentIntent is cancelled and the next attempt gets a fresh one."""

    code = "card_declined"
    status = 402
    message = gettext_noop("Your card was declined. Please check the details or try another card.")


def payment_pay_with_token(*, payment: Payment, token: str) -> Payment:
    """Pay ``payment`` with a card token from stripe.js (``stripe.createToken(cardElement)``: ``tok_...``).

    A Customer is made from the token with no name, email or description (Stripe "Customers": ``source``), its
    card set as the PaymentIntent's ``payment_method`` (``PaymentIntent`` update), and the PaymentIntent
    confirmed server-side (``PaymentIntent`` confirm). ``succeeded`` goes through ``payment_succeeded`` at once;
    the webhook that follows finds it done. A refused card records ``payment_failed``, cancels this payment and
    its PaymentIntent (a declined PaymentIntent is not confirmed again) and raises ``CardDeclined``. Raises
    ``PaymentsUnavailable`` or ``PaymentProviderError`` otherwise; never logs the token.
    """
    client = stripe_client()
    intent_id = payment.stripe_payment_intent_id
    try:
        customer = client.v1.customers.create(
            params={"source": token, "expand": ["sources"]}  # type: ignore[typeddict-item]
        )
        card = str(customer.default_source or "")
        _card_keep(payment, customer, card)
        client.v1.payment_intents.update(intent_id, params={"customer": customer.id, "payment_method": card})
        intent = client.v1.payment_intents.confirm(intent_id)
    except stripe.CardError as exc:
        code = str(exc.code or "card_declined")
        payment_failed(payment=payment, error_code=code)
        if _move(payment, S.CANCELLED):
            _intent_cancel(client, payment=payment, intent_id=intent_id)
        raise CardDeclined(code=code) from exc
    except stripe.StripeError as exc:
        raise _provider_error(exc, action="payment_intent.confirm", payment=payment) from exc
    if intent.status == "succeeded":
        payment_succeeded(payment=payment)
    elif intent.status == "processing":
        _move(payment, S.PROCESSING)
    else:  # requires_action (3-D Secure) or a decline reported in the object: another card, another attempt
        code = str(getattr(getattr(intent, "last_payment_error", None), "code", "") or intent.status)
        payment_failed(payment=payment, error_code=code)
        if _move(payment, S.CANCELLED):
            _intent_cancel(client, payment=payment, intent_id=intent_id)
        raise CardDeclined(code=code)
    payment.refresh_from_db()
    return payment


def _card_keep(payment: Payment, customer: Any, card_id: str) -> None:
    """Keep the brand and last four digits of the Customer's card ``card_id`` (from ``sources``, expanded) on the
    payment for the receipt; nothing when Stripe did not return them."""
    sources = getattr(getattr(customer, "sources", None), "data", None) or []
    card = next((s for s in sources if getattr(s, "id", None) == card_id), None)
    brand, last4 = str(getattr(card, "brand", "") or "")[:20], str(getattr(card, "last4", "") or "")[-4:]
    if brand or last4:
        payment.card_brand, payment.card_last4 = brand, last4
        payment.save(update_fields=["card_brand", "card_last4", "updated_at"])


@transaction.atomic
def payment_failed(*, payment: Payment, error_code: str, event_id: str = "") -> bool:
    """Record a declined or failed attempt with Stripe's ``error_code`` (e.g. ``card_declined``); return whether
    it changed the payment. The patient may try again with the same PaymentIntent; a succeeded or refunded
    payment never becomes failed (an older event)."""
    if not _move(payment, S.FAILED, last_error_code=error_code[:100]):
        return False
    _record(payment, kind="payment_failed", event_id=event_id, code=error_code[:100])
    logger.info("payment failed order=%s payment=%s code=%s", payment.order.reference, payment.pk, error_code)
    return True


@transaction.atomic
def payment_refunded(*, payment: Payment, amount_refunded_cents: int, refund_id: str = "", event_id: str = "") -> bool:
    """Record a full refund of a succeeded payment; return whether it changed the payment.

    Raises ``PaymentNotYetKnown`` when the payment has not succeeded here yet (the refund overtook the success
    event: Stripe sends it again). A partial refund only updates ``amount_refunded_cents``.
    """
    if payment.status in (S.REQUIRES_PAYMENT, S.FAILED, S.PROCESSING, S.CANCELLED):
        raise PaymentNotYetKnown()
    if payment.status == S.REFUNDED:
        return False
    changes: dict[str, Any] = {"amount_refunded_cents": amount_refunded_cents}
    if refund_id:
        changes["stripe_refund_id"] = refund_id
    if amount_refunded_cents < payment.amount_cents:
        moved = Payment.objects.filter(pk=payment.pk, status=S.SUCCEEDED).update(updated_at=timezone.now(), **changes)
        payment.refresh_from_db()
        return bool(moved) and amount_refunded_cents > 0
    if not _move(payment, S.REFUNDED, refunded_at=timezone.now(), **changes):
        return False
    _record(payment, kind="payment_refunded", event_id=event_id, amount_cents=amount_refunded_cents)
    logger.info("payment refunded order=%s payment=%s", payment.order.reference, payment.pk)
    return True


def payment_refund(*, payment: Payment, actor: str) -> Payment:
    """Refund ``payment`` in full through Stripe's Refund API (``Idempotency-Key: hc-refund-<payment id>``) and
    return it, ``refunded`` when Stripe answers ``succeeded`` (a ``pending`` refund is completed by the
    ``charge.refunded`` webhook).

    Only a ``succeeded`` payment of a ``cancelled`` order. Raises ``RefundNotAllowed``, ``PaymentsUnavailable``
    or ``PaymentProviderError`` (also for a refund Stripe reports ``failed`` or ``canceled``).
    """
    payment = Payment.objects.select_related("order").get(pk=payment.pk)
    if payment.status != S.SUCCEEDED or payment.order.status != Order.Status.CANCELLED:
        raise RefundNotAllowed()
    client = stripe_client()
    try:
        refund = client.v1.refunds.create(
            params={"payment_intent": payment.stripe_payment_intent_id},
            options={"idempotency_key": f"hc-refund-{payment.pk}"},
        )
    except stripe.StripeError as exc:
        raise _provider_error(exc, action="refund.create", payment=payment) from exc
    audit_record(
        actor=actor,
        action="payment.refund_requested",
        target=f"Order/{payment.order_id}",
        detail={"payment": str(payment.pk), "refund": refund.id, "status": refund.status},
    )
    if refund.status in ("failed", "canceled"):
        raise PaymentProviderError(code=f"refund_{refund.status}")
    if refund.status == "succeeded":
        payment_refunded(payment=payment, amount_refunded_cents=int(refund.amount or 0), refund_id=refund.id)
    else:
        Payment.objects.filter(pk=payment.pk).update(stripe_refund_id=refund.id, updated_at=timezone.now())
        payment.refresh_from_db()
    return payment


# The event types this app acts on (Stripe docs "Types of events"); any other is recorded as ``ignored``.
HANDLED_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.canceled",
    "charge.refunded",
}


def _event_payment(event_type: str, obj: dict[str, Any]) -> Payment | None:
    """Find the payment a verified event's ``data.object`` (a PaymentIntent, or a Charge for ``charge.*``) is
    about. Raises ``PaymentNotYetKnown`` when it names one of our orders with a live payment that has no
    PaymentIntent id yet (the event overtook ``payment_start``'s write)."""
    intent_id = obj.get("payment_intent") if event_type.startswith("charge.") else obj.get("id")
    if not isinstance(intent_id, str) or not intent_id:
        return None
    payment = Payment.objects.select_related("order").filter(stripe_payment_intent_id=intent_id).first()
    if payment is not None:
        return payment
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    reference = metadata.get("order_reference") if metadata else None
    if (
        isinstance(reference, str)
        and Payment.objects.filter(
            order__reference=reference, stripe_payment_intent_id="", status=S.REQUIRES_PAYMENT
        ).exists()
    ):
        raise PaymentNotYetKnown()
    return None


def _event_apply(event_type: str, obj: dict[str, Any], payment: Payment, event_id: str) -> bool:
    """Apply one handled event to ``payment``; return whether it changed it."""
    if event_type == "payment_intent.succeeded":
        return payment_succeeded(payment=payment, event_id=event_id)
    if event_type == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        code = (error.get("code") or error.get("decline_code")) if isinstance(error, dict) else None
        return payment_failed(payment=payment, error_code=str(code or "payment_failed"), event_id=event_id)
    if event_type == "payment_intent.processing":
        return _move(payment, S.PROCESSING)
    if event_type == "payment_intent.canceled":
        return _move(payment, S.CANCELLED)
    if obj.get("refunded") is True or int(obj.get("amount_refunded") or 0) > 0:  # charge.refunded
        return payment_refunded(
            payment=payment, amount_refunded_cents=int(obj.get("amount_refunded") or 0), event_id=event_id
        )
    return False


def stripe_event_record(*, event_id: str, event_type: str, obj: dict[str, Any]) -> str:
    """Record one verified Stripe event (``evt_...``, its ``type``, its ``data.object``) and apply it; return
    ``applied``, ``unchanged`` (older than, or equal to, what the payment has), ``ignored`` (a type not handled,
    or a PaymentIntent that is not ours) or ``duplicate`` (this event id was recorded before).

    The dedupe row (``StripeEvent``) and the payment change commit together. Out of order is safe: a status
    only moves forward (``ALLOWED``), so ``payment_failed`` after ``succeeded`` changes nothing. Raises
    ``PaymentNotYetKnown`` (nothing recorded: the sender retries) when the event names our payment before this
    app stored its PaymentIntent id, or refunds a payment that has not succeeded here yet.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(event_id=event_id, type=event_type, outcome="")
        except IntegrityError:
            return DUPLICATE
        payment = _event_payment(event_type, obj) if event_type in HANDLED_EVENTS else None
        if payment is None:
            outcome = IGNORED
        else:
            payment = Payment.objects.select_for_update().select_related("order").get(pk=payment.pk)
            outcome = APPLIED if _event_apply(event_type, obj, payment, event_id) else UNCHANGED
        StripeEvent.objects.filter(pk=row.pk).update(outcome=outcome, payment=payment)
    logger.info(
        "stripe event=%s type=%s payment=%s outcome=%s", event_id, event_type, payment.pk if payment else "-", outcome
    )
    return outcome
