"""Purchase links' Celery task: the hourly reminder sweep (beat, ``remind-purchase-links``)."""

from celery import shared_task


@shared_task(name="healthcommerce.purchaselinks.tasks.remind")
def remind() -> int:
    """Publish the reminders now due (``reminders.purchase_link_reminders_due``); return how many were new."""
    from healthcommerce.purchaselinks.reminders import purchase_link_reminders_due

    return purchase_link_reminders_due()
