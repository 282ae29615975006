"""The transactional outbox: publish, relay, deliver, retry, dead letters (docs/reliability.md "No signed order is
lost", ADR 0008).

Flow: ``outbox_publish`` (inside the transaction that makes the event true) writes one row per subscriber ->
on commit, or later ``outbox_relay`` -> Celery ``outbox.deliver`` -> ``outbox_deliver``: claim the row with a
conditional UPDATE, run the subscriber's handler, mark the row done. Retries are driven by
``OutboxMessage.available_at`` and ``attempts`` in the database, never by the broker, so a lost broker message
is not lost work. A handler raises an error whose ``temporary`` flag says retry (with full-jitter backoff, at
least its ``retry_after`` seconds) or dead-letter.
"""

import logging
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.subscribers import subscriber_named, subscribers_of

logger = logging.getLogger(__name__)

ACTOR = "system:outbox"
# Full-jitter exponential backoff (seconds): uniform(0, min(CAP, BASE * 2**(attempt - 1))). BASE is the setting
# OUTBOX_BACKOFF_BASE_SECONDS (5 s; only `make test-faults` shortens it).
BACKOFF_BASE_SECONDS = float(getattr(settings, "OUTBOX_BACKOFF_BASE_SECONDS", 5.0))
BACKOFF_CAP_SECONDS = 900.0
# After publishing, the relay leaves a row alone this long (seconds, the setting OUTBOX_RELAY_LEASE_SECONDS: 60;
# only `make test-faults` shortens it) so a queued task is not published twice; each further publication of a
# row no worker has taken doubles it, up to the cap (republish backoff).
RELAY_LEASE_SECONDS = int(getattr(settings, "OUTBOX_RELAY_LEASE_SECONDS", 60))
RELAY_LEASE_CAP_SECONDS = 3600
# A worker's claim outlives the hard task time limit, after which Celery has killed the task.
CLAIM_MARGIN_SECONDS = 60
# Errors a publish raises when the broker is unreachable; the row stays pending for the relay.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.RedisError,
    OSError,
)


def backoff_seconds(*, attempt: int, retry_after: float | None = None) -> float:
    """Return the delay in seconds before try ``attempt + 1``, in ``[0, BACKOFF_CAP_SECONDS]``.

    Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"); a
    ``Retry-After`` (seconds) is a lower bound (docs/reliability.md "Retries and dead letters"), still capped.
    """
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(attempt - 1, 0), 32))
    delay = random.uniform(0, ceiling)
    if retry_after:
        delay = max(delay, float(retry_after))
    return min(delay, BACKOFF_CAP_SECONDS)


def relay_lease(publish_count: int) -> timedelta:
    """Return how long the relay leaves a row alone after its ``publish_count``-th publication (1-based) since a
    worker last took it: 60 s, 120 s, 240 s ... capped at 3600 s. An hour-long worker outage thus republishes
    each pending row about 6 times, not 60 (docs/reliability.md "Retries and dead letters")."""
    exponent = min(max(publish_count - 1, 0), 16)
    return timedelta(seconds=min(RELAY_LEASE_CAP_SECONDS, RELAY_LEASE_SECONDS * 2**exponent))


def _claim_lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) or 300) + CLAIM_MARGIN_SECONDS)


def _publish_deliver(message_id: str) -> None:
    """Publish ``outbox.deliver(message_id)`` without Celery's own publish retries (the outbox retries)."""
    from healthcommerce.outbox import tasks  # tasks imports this module

    tasks.deliver.apply_async(args=(message_id,), retry=False)


def _publish_fast_path(message_id: str) -> None:
    """On commit: publish at once; a broker failure is logged and left to the relay."""
    try:
        _publish_deliver(message_id)
    except PUBLISH_ERRORS as exc:
        logger.warning(
            "outbox fast path: broker unavailable (%s), relay will publish message=%s", type(exc).__name__, message_id
        )
        return
    now = timezone.now()
    OutboxMessage.objects.filter(
        pk=message_id, status=OutboxMessage.Status.PENDING, attempts=0, locked_until=None
    ).update(published_at=now, available_at=now + relay_lease(1), publish_count=F("publish_count") + 1)


def outbox_publish(*, topic: str, key: str, subject: str, payload: dict[str, Any] | None = None) -> list[OutboxMessage]:
    """Write one ``pending`` row of ``topic`` per subscriber, inside the caller's transaction, and return them.

    ``key`` is the event's idempotency key (``<order id>:v<version>``): publishing the same event twice returns
    the existing rows. ``subject`` is the id the event is about and ``payload`` holds ids and codes only, never
    PHI. On commit each new row is published at once (fast path); if that fails, or the process dies first,
    ``outbox_relay`` publishes it later (``on_commit`` alone loses tasks). Raises ``RuntimeError`` outside a
    transaction: the rows must commit with the change they announce.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_publish must run inside the transaction that makes the event true.")
    rows = []
    for subscriber in subscribers_of(topic):
        message, created = OutboxMessage.objects.get_or_create(
            idempotency_key=key,
            subscriber=subscriber.name,
            defaults={"topic": topic, "subject": subject, "payload": payload or {}, "available_at": timezone.now()},
        )
        rows.append(message)
        if created:
            message_id = str(message.pk)
            transaction.on_commit(lambda m=message_id: _publish_fast_path(m), robust=True)  # type: ignore[misc]
    return rows


def outbox_cancel(*, subject: str, topic: str, actor: str) -> int:
    """Cancel the ``pending`` rows of ``topic`` about ``subject`` that no worker holds; return how many.

    Runs in the caller's transaction (the cancellation that makes them moot). A row a worker is holding is left
    alone: its handler must re-check the subject's state (fulfillment does, ``OrderNotSubmittable``).
    """
    now = timezone.now()
    rows = OutboxMessage.objects.filter(subject=subject, topic=topic, status=OutboxMessage.Status.PENDING).filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )
    ids = list(rows.values_list("pk", flat=True))
    cancelled = OutboxMessage.objects.filter(pk__in=ids, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.CANCELLED, locked_until=None
    )
    if cancelled:
        audit_record(actor=actor, action="outbox.cancel", target=subject, detail={"topic": topic, "rows": cancelled})
    return cancelled


def outbox_relay(*, limit: int = 100) -> int:
    """Publish up to ``limit`` due ``pending`` rows and return how many were published.

    Two steps, so no row lock is held while the broker is called: first, in one short transaction, due rows
    are taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` (a no-op on SQLite, which serializes writers) and
    leased: ``available_at`` moves ahead by ``relay_lease`` of their new ``publish_count``, so concurrent relays
    never publish the same row and a row no worker takes is republished ever more rarely. Then, with the
    transaction committed, each row is published. When the broker is down, publishing stops and the rows not
    published are given back (due now, their count restored) for the next run.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(status=OutboxMessage.Status.PENDING, available_at__lte=now)
            .order_by("available_at")
            .values_list("pk", "publish_count", "available_at", "published_at")[:limit]
        )
        by_count: dict[int, list[Any]] = {}
        for message_id, count, *_ in due:
            by_count.setdefault(count + 1, []).append(message_id)
        for count, ids in by_count.items():
            OutboxMessage.objects.filter(pk__in=ids).update(
                published_at=now, available_at=now + relay_lease(count), publish_count=count
            )
    published = 0
    for message_id, *_ in due:
        try:
            _publish_deliver(str(message_id))
        except PUBLISH_ERRORS as exc:
            logger.warning(
                "outbox relay: broker unavailable (%s); %d row(s) left for next run",
                type(exc).__name__,
                len(due) - published,
            )
            _relay_give_back(due[published:], leased_at=now)
            break
        published += 1
    return published


def _relay_give_back(rows: list[tuple[Any, int, Any, Any]], *, leased_at: Any) -> None:
    """Undo the lease of rows the relay could not publish, unless a worker has taken them meanwhile."""
    for message_id, count, available_at, published_at in rows:
        OutboxMessage.objects.filter(
            pk=message_id, status=OutboxMessage.Status.PENDING, published_at=leased_at, publish_count=count + 1
        ).update(available_at=available_at, publish_count=count, published_at=published_at)


@transaction.atomic
def _message_claim(message_id: Any) -> OutboxMessage | None:
    """Claim a pending row with a conditional UPDATE (one winner) and count the attempt; ``None`` if not ours."""
    now = timezone.now()
    until = now + _claim_lease()
    max_attempts = settings.FULFILLMENT_MAX_ATTEMPTS
    claimed = (
        OutboxMessage.objects.filter(pk=message_id, status=OutboxMessage.Status.PENDING, attempts__lt=max_attempts)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .update(locked_until=until, available_at=until, attempts=F("attempts") + 1)
    )
    message = OutboxMessage.objects.filter(pk=message_id).first()
    if claimed == 1 or message is None:
        return message if claimed == 1 else None
    free = message.locked_until is None or message.locked_until <= now
    if message.status == OutboxMessage.Status.PENDING and free and message.attempts >= max_attempts:
        # Every attempt was used up without an outcome (e.g. the worker was killed each time).
        _message_dead_letter(message, code="attempts_exhausted")
    return None


def outbox_deliver(*, message_id: Any) -> None:
    """Deliver one outbox row to its subscriber; safe to run twice or concurrently (the handler runs once per
    successful claim, and its row is done once).

    Claims the row (a ``done``, ``dead`` or ``cancelled`` row, or one another worker holds, is a no-op) and runs
    the subscriber's handler. A handler that finishes without calling ``message_done`` itself gets its row
    marked done afterwards. A ``temporary`` error (or an unexpected one) backs off; a permanent
    ``HealthcommerceError``, or ``FULFILLMENT_MAX_ATTEMPTS`` attempts, dead-letters the row, runs the
    subscriber's ``on_dead`` and logs an ERROR alert.

    Not one transaction on purpose: no database transaction stays open across a handler's network call.
    """
    message = _message_claim(message_id)
    if message is None:
        return
    subscriber = subscriber_named(message.subscriber)
    try:
        import_string(subscriber.handler)(message)
    except HealthcommerceError as exc:
        if exc.temporary:
            _message_retry_later(message, code=exc.code, retry_after=getattr(exc, "retry_after", None))
        else:
            _message_dead_letter(message, code=exc.code)
        return
    except Exception as exc:
        logger.exception(
            "outbox handler unexpected %s subscriber=%s message=%s", type(exc).__name__, message.subscriber, message.pk
        )
        _message_retry_later(message, code=f"internal_error:{type(exc).__name__}")
        return
    if message.status != OutboxMessage.Status.DONE:  # the handler's own ``message_done`` has not marked it
        message_done(message)


def message_done(message: OutboxMessage, *, result: str = "") -> bool:
    """Mark a ``pending`` row done (conditional UPDATE), in the caller's transaction when there is one; return
    False when another run finished it first. A handler calls it inside the transaction of its own writes, so
    the row and those writes commit together."""
    done = OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.DONE, locked_until=None, last_error="", result=result[:200]
    )
    if done == 1:
        message.status, message.result = OutboxMessage.Status.DONE, result[:200]
    return done == 1


@transaction.atomic
def _message_retry_later(message: OutboxMessage, *, code: str, retry_after: float | None = None) -> None:
    """Release the claim and schedule the next try after a backoff; dead-letter once attempts are used up."""
    max_attempts = settings.FULFILLMENT_MAX_ATTEMPTS
    if message.attempts >= max_attempts:
        _message_dead_letter(message, code=code)
        return
    delay = backoff_seconds(attempt=message.attempts, retry_after=retry_after)
    OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        locked_until=None,
        available_at=timezone.now() + timedelta(seconds=delay),
        last_error=code[:300],
        publish_count=0,
    )
    logger.warning(
        "outbox retry subscriber=%s subject=%s message=%s error=%s attempt=%d/%d delay=%.0fs",
        message.subscriber,
        message.subject,
        message.pk,
        code,
        message.attempts,
        max_attempts,
        delay,
    )


@transaction.atomic
def _message_dead_letter(message: OutboxMessage, *, code: str) -> None:
    """Mark the row ``dead``, run the subscriber's ``on_dead`` in the same transaction (it may return a short
    context for the alert, e.g. ``order=HC-... backend=local``; never PHI), audit, and log the ERROR line that
    alerts."""
    updated = OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.DEAD, locked_until=None, last_error=code[:300]
    )
    if updated != 1:
        return
    subscriber = subscriber_named(message.subscriber)
    context = import_string(subscriber.on_dead)(message=message, code=code) if subscriber.on_dead else ""
    detail = {"code": code, "subscriber": message.subscriber, "attempts": message.attempts}
    audit_record(
        actor=ACTOR,
        action="outbox.dead_letter",
        target=message.subject,
        where=message.topic,
        outcome=code,
        detail=detail | {"message_id": str(message.pk)},
    )
    logger.error(
        "outbox dead-lettered topic=%s subscriber=%s subject=%s error=%s attempts=%d message=%s %s",
        message.topic,
        message.subscriber,
        message.subject,
        code,
        message.attempts,
        message.pk,
        context or "",
    )


@transaction.atomic
def outbox_retry(*, message_ids: Iterable[Any], actor: str) -> list[OutboxMessage]:
    """Reset ``dead`` or idle ``pending`` rows to ``pending``, due now, with a fresh attempt budget.

    Rows a worker is holding are skipped. Returns the rows reset; audits each (admin "retry now").
    """
    now = timezone.now()
    rows = list(
        OutboxMessage.objects.select_for_update()
        .filter(pk__in=list(message_ids), status__in=[OutboxMessage.Status.DEAD, OutboxMessage.Status.PENDING])
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
    )
    for message in rows:
        message.status = OutboxMessage.Status.PENDING
        message.attempts = 0
        message.available_at = now
        message.locked_until = None
        message.publish_count = 0
        fields = ["status", "attempts", "available_at", "locked_until", "publish_count", "updated_at"]
        message.save(update_fields=fields)
        detail = {"message_id": str(message.pk), "subscriber": message.subscriber}
        audit_record(actor=actor, action="outbox.retry", target=message.subject, where="admin", detail=detail)
    return rows
