"""The launch stage's Celery tasks: the daily purge of ended launches and expired sessions (beat, ``purge-launches``)
and the clearing of expired launches' tokens (beat, ``clear-launch-tokens``)."""

from celery import shared_task


@shared_task(name="healthcommerce.ehr.tasks.purge")
def purge() -> dict[str, int]:
    """Run ``services.launches_purge``; return its counts (``launches``, ``sessions``)."""
    from healthcommerce.ehr.services import launches_purge

    report = launches_purge()
    return {"launches": report.launches, "sessions": report.sessions}


@shared_task(name="healthcommerce.ehr.tasks.clear_tokens")
def clear_tokens() -> int:
    """Run ``services.launch_tokens_clear``; return how many launches had their tokens cleared."""
    from healthcommerce.ehr.services import launch_tokens_clear

    return launch_tokens_clear()
