"""Celery tasks: thin wrappers that pass ids to services (docs/style.md 3).

No ``autoretry_for``: retries are driven by the outbox row (``available_at``, ``attempts``), so a broker
message that is lost, or a worker that dies, costs a delay but never the work (docs/reliability.md "Retries
and dead letters"). ``acks_late``, ``reject_on_worker_lost`` and the time limits come from settings.
"""

from celery import shared_task

from healthcommerce.outbox import services
from healthcommerce.outbox.health import relay_heartbeat


@shared_task(name="healthcommerce.outbox.tasks.deliver")
def deliver(message_id: str) -> None:
    """Deliver outbox message ``message_id`` (a UUID string) to its subscriber; idempotent."""
    services.outbox_deliver(message_id=message_id)


@shared_task(name="healthcommerce.outbox.tasks.deliver_batch")
def deliver_batch(message_ids: list[str]) -> None:
    """Deliver the outbox messages ``message_ids`` (UUID strings, up to ``OUTBOX_BATCH_SIZE``) together;
    idempotent, each row claimed once (ADR 0014)."""
    services.outbox_deliver_batch(message_ids=message_ids)


@shared_task(name="healthcommerce.outbox.tasks.relay")
def relay() -> int:
    """Publish due outbox rows (run by beat every few seconds) and record the relay's heartbeat for
    ``/readyz``; return how many were published."""
    published = services.outbox_relay()
    relay_heartbeat()
    return published


@shared_task(name="healthcommerce.outbox.tasks.purge")
def purge() -> int:
    """Delete old done and cancelled outbox rows (beat, daily): ``services.outbox_purge``; return how many."""
    return services.outbox_purge()
