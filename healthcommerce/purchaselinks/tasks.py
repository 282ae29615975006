"""Purchase links' Celery tasks: the hourly reminder sweep (beat, ``remind-purchase-links``) and the daily purge of
the addresses of PHI-purged orders' links (beat, ``purge-purchase-link-phi``)."""

from celery import shared_task


@shared_task(name="healthcommerce.purchaselinks.tasks.remind")
def remind() -> int:
    """Publish the reminders now due (``reminders.purchase_link_reminders_due``); return how many were new."""
    from healthcommerce.purchaselinks.reminders import purchase_link_reminders_due

    return purchase_link_reminders_due()


@shared_task(name="healthcommerce.purchaselinks.tasks.purge")
def purge() -> int:
    """Run ``services.purchase_links_phi_purge``; return how many links were purged."""
    from healthcommerce.purchaselinks.services import purchase_links_phi_purge

    return purchase_links_phi_purge()
