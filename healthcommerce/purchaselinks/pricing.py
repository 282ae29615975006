"""What the patient pays for an order: the catalog's quote (``catalog.pricing.price_quote``, the one computation the
clinician's order form shows too) for the order's product, quantity, site and payer, and the error the patient
reads when the order has nothing to price. ``Quote`` and ``money_format`` live in ``catalog.pricing``; they are
named here too so the patient stage imports its pricing from one module."""

from django.utils.translation import gettext_noop

from healthcommerce.catalog.pricing import Quote, money_format, price_quote, share_cents
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.orders.models import Order

__all__ = ["Quote", "QuoteUnavailable", "money_format", "patient_quote", "share_cents"]


class QuoteUnavailable(HealthcommerceError):
    """The order has no product, so there is nothing to price (permanent)."""

    code = "quote_unavailable"
    status = 409
    message = gettext_noop("This order has no item to price. Please contact your clinic.")


def patient_quote(*, order: Order) -> Quote:
    """Return what the patient and the payer pay for ``order`` (``catalog.pricing.price_quote`` for its site,
    product, quantity, payer record and coverage status). A ``Quote`` may name the payer: shown to the verified
    patient only, never logged.

    Raises ``QuoteUnavailable`` when the order has no product.
    """
    if order.product is None:
        raise QuoteUnavailable()
    return price_quote(
        site=order.site,
        product=order.product,
        quantity=order.quantity,
        payer=order.payer,
        coverage_status=order.coverage_status,
    )
