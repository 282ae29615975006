"""The orders stage's Celery task: the daily purge of closed orders' PHI (beat, ``purge-order-phi``)."""

from celery import shared_task


@shared_task(name="healthcommerce.orders.tasks.purge")
def purge() -> int:
    """Run ``services.orders_phi_purge``; return how many orders had their PHI blanked."""
    from healthcommerce.orders.services import orders_phi_purge

    return orders_phi_purge()
