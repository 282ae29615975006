"""Drive the outbox by hand in tests (the on-commit fast path does not fire inside a test's transaction)."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from healthcommerce.orders.events import TOPIC_ORDER_SIGNED, order_event_key, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver, outbox_publish


def signed(order: Order) -> OutboxMessage:
    """Publish ``order.signed`` for ``order`` as ``order_sign`` does; return the ``fulfillment.submit`` row."""
    with transaction.atomic():
        rows = outbox_publish(topic=TOPIC_ORDER_SIGNED, key=order_event_key(order), subject=order_subject(order))
    return next(row for row in rows if row.subscriber == "fulfillment.submit")


def downstream(*, after: OutboxMessage | None = None) -> int:
    """Deliver every unheld ``pending`` row of other subscribers than ``after``'s that is due or was never tried
    (the fast path's recorded publication leases it without delivering it), once; return how many."""
    now = timezone.now()
    rows = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).filter(
        Q(available_at__lte=now) | Q(attempts=0), Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )
    if after is not None:
        rows = rows.exclude(subscriber=after.subscriber)
    ids = list(rows.order_by("created_at").values_list("pk", flat=True))
    for message_id in ids:
        outbox_deliver(message_id=message_id)
    return len(ids)


def deliver(message: OutboxMessage) -> None:
    """Deliver ``message``, then what it published for the next stages (as the workers would, at once)."""
    outbox_deliver(message_id=message.pk)
    for _ in range(3):
        if not downstream(after=message):
            break


def rows_of(order: Order, subscriber: str | None = None):  # type: ignore[no-untyped-def]
    """Return the outbox rows about ``order`` (optionally of one subscriber)."""
    rows = OutboxMessage.objects.filter(subject=order_subject(order))
    return rows.filter(subscriber=subscriber) if subscriber else rows
