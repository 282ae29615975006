"""What the patient is told once the order is confirmed: the thank-you page and the confirmation email.

One ``Receipt`` for both, so the page and the email never disagree: the item and quantity, what the patient
paid (or pays: nothing when the plan covers it) and with which card, what the plan pays, and when it should
arrive (``PATIENT_DELIVERY_BUSINESS_DAYS`` after the confirmation, Monday to Friday). Read-only; holds the
patient's name, so it is shown to the verified patient and emailed to them only, never logged.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.utils import timezone

from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import Payment
from healthcommerce.purchaselinks.pricing import QuoteUnavailable, money_format, patient_quote


@dataclass(frozen=True)
class Receipt:
    """An order's receipt. Amounts are formatted for the patient (``$49.00``); ``card_brand``/``card_last4`` are
    empty unless a card paid; ``deliver_from``/``deliver_to`` are dates in ``TIME_ZONE``."""

    reference: str
    item: str
    quantity: int
    paid: bool
    amount: str
    plan_pays: str
    card_brand: str
    card_last4: str
    deliver_from: date
    deliver_to: date


def business_days_after(start: date, days: int) -> date:
    """Return the date ``days`` business days (Monday to Friday) after ``start``; ``days`` >= 0."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def order_receipt(*, order: Order, language: str) -> Receipt:
    """Return ``order``'s receipt with the item named in ``language`` (``Product.name_for``).

    The amount is the succeeded payment's when there is one (``paid``), else what the patient pays per
    ``patient_quote`` (``$0.00`` when covered); an order without a product has no amount (``""``). The delivery
    window counts from the confirmation (``terms_accepted_at``, else now)."""
    payment = order.payments.filter(status=Payment.Status.SUCCEEDED).order_by("-succeeded_at").first()
    try:
        quote = patient_quote(order=order)
        amount = money_format(quote.patient_pays_cents, quote.currency)
        plan_pays = money_format(quote.payer_pays_cents, quote.currency) if quote.payer_pays_cents else ""
    except QuoteUnavailable:
        amount = plan_pays = ""
    if payment is not None:
        amount = money_format(payment.amount_cents, payment.currency)
    start = timezone.localdate(order.terms_accepted_at or timezone.now())
    low, high = settings.PATIENT_DELIVERY_BUSINESS_DAYS
    return Receipt(
        reference=order.reference,
        item=order.product.name_for(language) if order.product else "",
        quantity=order.quantity,
        paid=payment is not None,
        amount=amount,
        plan_pays=plan_pays,
        card_brand=payment.card_brand if payment else "",
        card_last4=payment.card_last4 if payment else "",
        deliver_from=business_days_after(start, low),
        deliver_to=business_days_after(start, high),
    )
