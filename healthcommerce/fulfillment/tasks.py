"""Fulfillment's Celery tasks: the daily reconciliation, and two task names kept from before the outbox moved to
``healthcommerce.outbox`` (ADR 0008), so messages already queued under them during a deploy still run. New
messages use ``healthcommerce.outbox.tasks``."""

from celery import shared_task

from healthcommerce.outbox import services


@shared_task(name="healthcommerce.fulfillment.tasks.submit_order")
def submit_order(message_id: str) -> None:
    """Deliver outbox message ``message_id`` (its id was kept when the row moved); idempotent."""
    services.outbox_deliver(message_id=message_id)


@shared_task(name="healthcommerce.fulfillment.tasks.outbox_relay")
def outbox_relay() -> int:
    """Run the relay once (a beat of the previous release may still queue this name)."""
    return services.outbox_relay()


@shared_task(name="healthcommerce.fulfillment.tasks.reconcile")
def reconcile() -> dict[str, object]:
    """The daily reconciliation (beat, ``FULFILLMENT_RECONCILE_HOUR``): ``fulfillment_reconcile``'s report."""
    from healthcommerce.fulfillment.reconcile import fulfillment_reconcile

    return fulfillment_reconcile().as_dict()


@shared_task(name="healthcommerce.fulfillment.tasks.purge")
def purge() -> int:
    """Remove purged orders' PHI from the local backend's copies (beat, daily, after the orders' purge):
    ``local_orders_phi_purge`` with the references of the orders whose PHI is gone; return how many."""
    from healthcommerce.fulfillment.backends.local.services import local_orders_phi_purge
    from healthcommerce.orders.models import Order

    return local_orders_phi_purge(
        references=Order.objects.filter(phi_purged_at__isnull=False).values_list("reference", flat=True)
    )
