"""The daily reconciliation skips a backend that cannot be asked for status, and goes on with the others
(``healthcommerce/fulfillment/reconcile.py``)."""

import logging
from collections.abc import Callable

import pytest

from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.reconcile import fulfillment_reconcile
from healthcommerce.orders.models import Order
from tests.fulfillment.conftest import PATIENT_NAME
from tests.pipeline import deliver, signed


def test_a_backend_without_status_is_skipped_with_a_log_line_and_does_not_abort_the_run(
    make_order: Callable[..., Order], use_backend: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    # "recording" follows the recipe's minimum: submit only, no ``status``. It takes the first order.
    use_backend("recording")
    first = make_order()
    deliver(signed(first))
    use_backend("local")
    second = make_order()
    deliver(signed(second))
    LocalCommerceOrder.objects.filter(order_reference=second.reference).update(status="shipped", tracking_number="T2")

    with caplog.at_level(logging.INFO):
        report = fulfillment_reconcile()

    second.refresh_from_db()
    assert (second.status, second.fulfillment_status, second.tracking_number) == ("fulfilled", "shipped", "T2")
    assert report.as_dict() == {"checked": 1, "changed": 1, "conflicts": 0, "skipped": ["recording"], "errors": {}}
    assert "reconcile backend=recording skipped" in caplog.text
    assert PATIENT_NAME not in caplog.text
