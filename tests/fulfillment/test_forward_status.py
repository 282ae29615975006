"""Forward-only status is written once (``healthcommerce/orders/forward.py``): the order's machine, the
fulfillment status, and how the order follows it. The local backend moves its rows by the same table."""

import pytest

from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.forward import (
    ALLOWED,
    CONFLICT,
    FORWARD,
    FULFILLMENT_STATUSES,
    STALE,
    fulfillment_step,
    order_status_following,
)
from healthcommerce.orders.models import FulfillmentStatus, Order


def test_the_tables_name_exactly_the_models_statuses() -> None:
    assert set(ALLOWED) == set(Order.Status.values)
    assert all(targets <= set(Order.Status.values) for targets in ALLOWED.values())
    assert FULFILLMENT_STATUSES == set(FulfillmentStatus.values) == set(LocalCommerceOrder.Status.values)


@pytest.mark.parametrize(
    ("current", "new", "step"),
    [
        ("", "received", FORWARD),
        ("received", "shipped", FORWARD),
        ("shipped", "confirmed", STALE),
        ("delivered", "delivered", STALE),
        ("confirmed", "cancelled", FORWARD),
        ("shipped", "cancelled", CONFLICT),
        ("cancelled", "cancelled", STALE),
        ("cancelled", "confirmed", STALE),
        ("cancelled", "shipped", CONFLICT),
    ],
)
def test_the_fulfillment_status_moves_forward_only(current: str, new: str, step: str) -> None:
    assert fulfillment_step(current, new) == step


def test_shipping_an_order_we_cancelled_is_a_conflict_and_an_unknown_status_is_refused() -> None:
    assert fulfillment_step("confirmed", "shipped", order_cancelled=True) == CONFLICT
    with pytest.raises(ValueError):
        fulfillment_step("received", "lost")


def test_the_order_follows_its_fulfillment_status_in_one_place() -> None:
    assert order_status_following("submitted", "shipped") == "fulfilled"
    assert order_status_following("submitted", "cancelled") == "cancelled"
    assert order_status_following("fulfilled", "delivered") is None
    assert order_status_following("failed", "cancelled") is None  # the machine does not allow it
    assert order_status_following("submitted", "confirmed") is None
