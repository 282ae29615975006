"""The order state machine: ``draft -> signed -> submitted -> fulfilled``, plus ``failed`` and ``cancelled``.

A later status never goes back (docs/architecture.md "Order status"). The tables live in ``orders.forward`` (with
the fulfillment status and how the order follows it); this module moves the rows.
"""

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from healthcommerce.orders.errors import InvalidTransition
from healthcommerce.orders.forward import ALLOWED
from healthcommerce.orders.models import Order, OrderEvent

__all__ = ["ALLOWED", "order_event_add", "order_transition", "order_transition_many"]


@transaction.atomic
def order_transition(*, order_id: Any, to_status: str, actor: str, detail: dict[str, Any] | None = None) -> Order:
    """Move the order to ``to_status`` with a conditional update and record an ``OrderEvent``.

    Idempotent: asking for the status the order already has returns it unchanged. Raises
    ``InvalidTransition`` for any move the state machine does not allow (never backwards).
    """
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status == to_status:
        return order
    if to_status not in ALLOWED[order.status]:
        raise InvalidTransition(f"An order that is {order.status} cannot become {to_status}.")
    updated = Order.objects.filter(pk=order.pk, status=order.status).update(status=to_status)
    if updated != 1:
        raise InvalidTransition("The order changed meanwhile; reload and try again.")
    OrderEvent.objects.create(
        order=order, kind="status", from_status=order.status, to_status=to_status, actor=actor, detail=detail or {}
    )
    order.status = to_status
    return order


@transaction.atomic(savepoint=False)
def order_transition_many(*, changes: Sequence[tuple[Any, str, dict[str, Any]]], to_status: str, actor: str) -> int:
    """Move many orders to ``to_status`` at once: ``changes`` are ``(order id, status now, event detail)``, the
    status as the caller read it with the rows locked (it updated them earlier in its transaction). One
    conditional UPDATE per starting status and one INSERT of the ``OrderEvent`` rows; returns how many moved.

    Idempotent like ``order_transition``: an order already in ``to_status`` is left alone. Raises
    ``InvalidTransition`` (rolling back the caller's transaction: no savepoint of its own) for a move the state
    machine does not allow or when an order is no longer in the status given.
    """
    groups: dict[str, list[Any]] = {}
    events = []
    for order_id, status, detail in changes:
        if status == to_status:
            continue
        if to_status not in ALLOWED[status]:
            raise InvalidTransition(f"An order that is {status} cannot become {to_status}.")
        groups.setdefault(status, []).append(order_id)
        events.append(
            OrderEvent(
                order_id=order_id, kind="status", from_status=status, to_status=to_status, actor=actor, detail=detail
            )
        )
    for status, ids in groups.items():
        if Order.objects.filter(pk__in=ids, status=status).update(status=to_status) != len(ids):
            raise InvalidTransition("An order changed meanwhile; reload and try again.")
    OrderEvent.objects.bulk_create(events)
    return len(events)


def order_event_add(*, order: Order, kind: str, actor: str, detail: dict[str, Any] | None = None) -> OrderEvent:
    """Record a fulfillment event (``shipped``, ``delivered``, ``link_sent``...) on the order's timeline."""
    return OrderEvent.objects.create(order=order, kind=kind, actor=actor, detail=detail or {})
