"""The local backend's orders move received -> confirmed -> shipped -> delivered, and never back."""

import pytest

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.backends.local.services import (
    LocalOrderTransitionError,
    local_order_confirm,
    local_order_mark,
)
from healthcommerce.fulfillment.backends.registry import get_backend
from healthcommerce.orders.errors import InvalidTransition
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.transitions import order_transition
from healthcommerce.outbox.models import OutboxMessage
from tests.pipeline import deliver

LS = LocalCommerceOrder.Status


@pytest.fixture
def local(message: OutboxMessage) -> LocalCommerceOrder:
    deliver(message)
    return LocalCommerceOrder.objects.get()


def test_the_patient_confirmation_marks_the_local_order_confirmed(local: LocalCommerceOrder, order: Order) -> None:
    confirmed = local_order_confirm(local_order_id=local.pk)
    assert (confirmed.status, confirmed.confirmed_at is not None) == (LS.CONFIRMED, True)
    assert local_order_confirm(local_order_id=local.pk).confirmed_at == confirmed.confirmed_at  # idempotent


def test_the_backend_confirms_and_reports_status_through_the_registry(local: LocalCommerceOrder) -> None:
    backend = get_backend("local")
    assert backend.status(str(local.pk)).status == "received"
    backend.confirm(str(local.pk))
    assert backend.status(str(local.pk)).status == "confirmed"


def test_marking_shipped_fulfils_the_order_and_records_the_tracking_number(
    local: LocalCommerceOrder, order: Order
) -> None:
    local_order_mark(
        local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops", tracking_number=" 1Z999AA10123456784 "
    )
    local.refresh_from_db()
    order.refresh_from_db()
    assert (local.status, local.tracking_number) == (LS.SHIPPED, "1Z999AA10123456784")
    assert order.status == Order.Status.FULFILLED
    shipped = OrderEvent.objects.get(order=order, kind="shipped")
    assert shipped.detail["tracking_number"] == "1Z999AA10123456784"
    assert shipped.actor == "admin:ops"
    assert AuditEvent.objects.filter(action="local_order.shipped", target=f"Order/{order.id}").exists()


def test_marking_delivered_adds_a_delivered_event(local: LocalCommerceOrder, order: Order) -> None:
    local_order_mark(local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops")
    local_order_mark(local_order_id=local.id, status=LS.DELIVERED, actor="admin:ops")
    local.refresh_from_db()
    assert local.status == LS.DELIVERED
    assert OrderEvent.objects.filter(order=order, kind="delivered").count() == 1


def test_delivery_before_shipping_is_refused(local: LocalCommerceOrder) -> None:
    with pytest.raises(LocalOrderTransitionError):
        local_order_mark(local_order_id=local.id, status=LS.DELIVERED, actor="admin:ops")


def test_state_never_goes_backwards(local: LocalCommerceOrder, order: Order) -> None:
    local_order_mark(local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops", tracking_number="T1")
    local_order_mark(local_order_id=local.id, status=LS.DELIVERED, actor="admin:ops")

    with pytest.raises(LocalOrderTransitionError):
        local_order_mark(local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops")
    assert local_order_confirm(local_order_id=local.pk).status == LS.DELIVERED
    with pytest.raises(LocalOrderTransitionError):
        local_order_mark(local_order_id=local.id, status=LS.RECEIVED, actor="admin:ops")
    for earlier in (Order.Status.SUBMITTED, Order.Status.SIGNED, Order.Status.DRAFT, Order.Status.FAILED):
        with pytest.raises(InvalidTransition):
            order_transition(order_id=order.id, to_status=earlier, actor="admin:ops")
    # A duplicate submit of the same message cannot pull the order back to submitted either.
    deliver(OutboxMessage.objects.get(subscriber="fulfillment.submit"))
    order.refresh_from_db()
    local.refresh_from_db()
    assert (order.status, local.status) == (Order.Status.FULFILLED, LS.DELIVERED)


def test_marking_the_same_status_twice_records_one_event(local: LocalCommerceOrder, order: Order) -> None:
    local_order_mark(local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops", tracking_number="T1")
    local_order_mark(local_order_id=local.id, status=LS.SHIPPED, actor="admin:ops", tracking_number="T2")
    assert OrderEvent.objects.filter(order=order, kind="shipped").count() == 1
    local.refresh_from_db()
    assert local.tracking_number == "T1"
