"""The launch stage's Celery task: the daily purge of ended launches and expired sessions (beat, ``purge-launches``)."""

from celery import shared_task


@shared_task(name="healthcommerce.ehr.tasks.purge")
def purge() -> dict[str, int]:
    """Run ``services.launches_purge``; return its counts (``launches``, ``sessions``)."""
    from healthcommerce.ehr.services import launches_purge

    report = launches_purge()
    return {"launches": report.launches, "sessions": report.sessions}
