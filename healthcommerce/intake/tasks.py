"""The intake's Celery task: the daily purge of raw messages that made no order (beat, ``purge-intake-raw``)."""

from celery import shared_task


@shared_task(name="healthcommerce.intake.tasks.purge")
def purge() -> int:
    """Run ``services.intake_raw_retention``; return how many messages had their raw copy blanked."""
    from healthcommerce.intake.services import intake_raw_retention

    return intake_raw_retention()
