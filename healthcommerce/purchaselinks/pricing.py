"""What the patient pays for an order: the coverage stage's quote (``coverage.quote.coverage_quote``: the payer's
eligibility answer where there is one, else the catalog's rules; the one computation the clinician's order form
shows too) for the order's product, quantity, site and payer, and the error the patient
reads when the order has nothing to price. ``Quote`` and ``money_format`` live in ``catalog.pricing``; they are
named here too so the patient stage imports its pricing from one module."""

from django.conf import settings
from django.utils.translation import gettext_noop

from healthcommerce.catalog.pricing import Quote, money_format, share_cents
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.coverage.clearinghouse import ClearinghouseError
from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.coverage.quote import coverage_quote
from healthcommerce.coverage.services import EligibilityNotPossible, eligibility_fresh
from healthcommerce.orders.eligibility import (
    order_eligibility_check,
    order_eligibility_latest,
    order_eligibility_wanted,
)
from healthcommerce.orders.models import Order

__all__ = ["Quote", "QuoteUnavailable", "money_format", "patient_quote", "share_cents"]


class QuoteUnavailable(HealthcommerceError):
    """The order has no product, so there is nothing to price (permanent)."""

    code = "quote_unavailable"
    status = 409
    message = gettext_noop("This order has no item to price. Please contact your clinic.")


def patient_quote(*, order: Order, refresh: bool = False) -> Quote:
    """Return what the patient and the payer pay for ``order``: ``coverage.quote.coverage_quote`` for its site,
    product, quantity, payer record and coverage status, with the payer's eligibility answer for the member when it
    is fresh (within the site's ``answer_max_age_hours``), else the site's rules marked "not yet confirmed with
    your plan". With ``refresh`` (the patient's review and payment pages: the moment it matters), an answer that is
    missing or too old is asked for again at once (``orders.eligibility.order_eligibility_check``, trigger
    ``checkout``, at most ``ELIGIBILITY_CHECKOUT_TIMEOUT_SECONDS``); a payer or clearinghouse that does not answer
    never blocks the page: the estimate stands. A ``Quote`` may name the payer: shown to the verified patient only,
    never logged.

    Raises ``QuoteUnavailable`` when the order has no product.
    """
    if order.product is None:
        raise QuoteUnavailable()
    check = order_eligibility_latest(order) if order.payer is not None else None
    if refresh and not eligibility_fresh(check) and order_eligibility_wanted(order):
        check = _checkout_check(order) or check
    return coverage_quote(
        site=order.site,
        product=order.product,
        quantity=order.quantity,
        payer=order.payer,
        coverage_status=order.coverage_status,
        check=check if eligibility_fresh(check) else None,
    )


def _checkout_check(order: Order) -> EligibilityCheck | None:
    """Ask the payer again for the patient's checkout; None when no usable answer came (it is stored either way)."""
    try:
        check = order_eligibility_check(
            order, trigger=EligibilityCheck.Trigger.CHECKOUT, timeout=settings.ELIGIBILITY_CHECKOUT_TIMEOUT_SECONDS
        )
    except (EligibilityNotPossible, ClearinghouseError):
        return None
    return check if eligibility_fresh(check) else None
