"""The transactional outbox: publish, relay, deliver, retry, dead letters (docs/reliability.md "No signed order is
lost", ADR 0008).

Flow: ``outbox_publish`` (inside the transaction that makes the event true) writes one row per subscriber ->
on commit, or later ``outbox_relay`` -> Celery ``outbox.deliver`` -> ``outbox_deliver``: claim the row with a
conditional UPDATE, run the subscriber's handler, mark the row done. Retries are driven by
``OutboxMessage.available_at`` and ``attempts`` in the database, never by the broker, so a lost broker message
is not lost work. A handler raises an error whose ``temporary`` flag says retry (with full-jitter backoff, at
least its ``retry_after`` seconds) or dead-letter.

Batches (ADR 0014): when one transaction commits several rows of a subscriber that offers a batch handler, the
fast path (and the relay) publish one ``outbox.deliver_batch`` task per ``BATCH_SIZE`` rows instead of one task
per row; ``outbox_deliver_batch`` claims them together (``SELECT ... FOR UPDATE SKIP LOCKED``, then the same
lease and attempt count as a single claim), runs the batch handler, and settles each row on its own: a row
whose part failed retries or dead-letters alone.
"""

import logging
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.module_loading import import_string

from healthcommerce.audit.services import audit_record, audit_retention
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.subscribers import Subscriber, subscriber_named, subscribers_of

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
# Rows per ``outbox.deliver_batch`` task (the setting OUTBOX_BATCH_SIZE: 20). Small enough that a burst still
# spreads over every worker process, large enough that the per-task and per-commit costs are shared.
BATCH_SIZE = max(1, int(getattr(settings, "OUTBOX_BATCH_SIZE", 20)))
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


def _publish_deliver_batch(message_ids: list[str]) -> None:
    """Publish ``outbox.deliver_batch(message_ids)`` without Celery's own publish retries."""
    from healthcommerce.outbox import tasks

    tasks.deliver_batch.apply_async(args=(message_ids,), retry=False)


def _batched(subscriber_name: str) -> bool:
    """Whether rows of ``subscriber_name`` go out in batches now (``Subscriber.batch_if``); False on any error."""
    try:
        subscriber = subscriber_named(subscriber_name)
        return bool(subscriber.batch_handler) and bool(import_string(subscriber.batch_if)())
    except Exception:  # an unknown subscriber or a broken predicate: one task per row, the safe default
        logger.warning("outbox: cannot tell whether %s takes batches; publishing rows one by one", subscriber_name)
        return False


def _publish(rows: list[tuple[str, str]]) -> tuple[list[str], BaseException | None]:
    """Publish ``(subscriber, message id)`` rows: one ``deliver_batch`` per ``BATCH_SIZE`` rows of a subscriber
    that takes batches (``_batched``), one ``deliver`` per other row (and per lone row). Stops at the first
    broker error. Returns the ids published, in order, and that error (``None`` when all went out)."""
    groups: dict[str, list[str]] = {}
    for subscriber, message_id in rows:
        groups.setdefault(subscriber, []).append(message_id)
    tasks_: list[list[str]] = []
    for subscriber, ids in groups.items():
        if len(ids) > 1 and _batched(subscriber):
            tasks_.extend(ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE))
        else:
            tasks_.extend([message_id] for message_id in ids)
    published: list[str] = []
    for ids in tasks_:
        try:
            if len(ids) == 1:
                _publish_deliver(ids[0])
            else:
                _publish_deliver_batch(ids)
        except PUBLISH_ERRORS as exc:
            return published, exc
        published.extend(ids)
    return published, None


# Rows committed by this connection's transaction and not yet published: ``(subscriber, message id)`` in the
# order ``outbox_publish`` wrote them. Kept on the connection (one per thread).
_UNPUBLISHED = "_healthcommerce_outbox_unpublished"


def _fast_path_register(message: OutboxMessage) -> None:
    """Note ``message`` for the fast path and register its on-commit callback (``_publish_fast_path``)."""
    connection = transaction.get_connection()
    unpublished = getattr(connection, _UNPUBLISHED, None)
    if unpublished is None:
        unpublished = []
        setattr(connection, _UNPUBLISHED, unpublished)
    message_id = str(message.pk)
    unpublished.append((message.subscriber, message_id))
    transaction.on_commit(lambda: _publish_fast_path(message_id), robust=True)


def _publish_fast_path(message_id: str) -> None:
    """On commit: lease ``message_id`` and every row noted after it (``relay_lease(1)``), then publish them at
    once; a broker failure is logged and the rows not published are given back, due now, to the relay.

    Callbacks run in the order they were registered, so the first one of a transaction publishes all of its
    rows together (in batches where the subscriber takes them) and the later ones find theirs gone. Rows noted
    before ``message_id`` whose callbacks never ran belong to a rolled-back transaction or savepoint and are
    dropped; a row noted after it that was rolled back with a savepoint is published anyway, and its task finds
    no row (a no-op).
    """
    connection = transaction.get_connection()
    unpublished: list[tuple[str, str]] = getattr(connection, _UNPUBLISHED, None) or []
    position = next((i for i, (_, m) in enumerate(unpublished) if m == message_id), None)
    if position is None:
        return  # published with an earlier row of the same transaction
    rows = unpublished[position:]
    unpublished.clear()
    ids = [message_id for _, message_id in rows]
    # Lease first, then publish (as the relay does): a worker that takes a task at once then never meets this
    # UPDATE's row locks, which its SKIP LOCKED claim would skip, leaving the row to the relay for a lease.
    now = timezone.now()
    OutboxMessage.objects.filter(pk__in=ids, status=OutboxMessage.Status.PENDING, attempts=0, locked_until=None).update(
        published_at=now, available_at=now + relay_lease(1), publish_count=F("publish_count") + 1
    )
    published, error = _publish(rows)
    if error is None:
        return
    logger.warning(
        "outbox fast path: broker unavailable (%s), relay will publish %d message(s), first=%s",
        type(error).__name__,
        len(rows) - len(published),
        rows[len(published)][1],
    )
    sent = set(published)
    OutboxMessage.objects.filter(
        pk__in=[m for m in ids if m not in sent],
        status=OutboxMessage.Status.PENDING,
        attempts=0,
        locked_until=None,
        published_at=now,
    ).update(published_at=None, available_at=now, publish_count=0)  # new rows: due again, never published


def outbox_publish(*, topic: str, key: str, subject: str, payload: dict[str, Any] | None = None) -> list[OutboxMessage]:
    """Write one ``pending`` row of ``topic`` per subscriber (that wants ``subject``: ``Subscriber.wants``),
    inside the caller's transaction, and return them.

    ``key`` is the event's idempotency key (``<order id>:v<version>``): publishing the same event twice returns
    the existing rows. ``subject`` is the id the event is about and ``payload`` holds ids and codes only, never
    PHI. On commit each new row is published at once (fast path); if that fails, or the process dies first,
    ``outbox_relay`` publishes it later (``on_commit`` alone loses tasks). Raises ``RuntimeError`` outside a
    transaction: the rows must commit with the change they announce.
    """
    return outbox_publish_many(topic=topic, events=[(key, subject, payload)])


def _wanted(subscriber: Subscriber, subjects: list[str]) -> set[str] | None:
    """Return the subjects ``subscriber`` wants rows for (its ``wants``), or None for all of them: a subscriber
    without ``wants``, or one whose ``wants`` fails in Python (logged; its handler re-checks each row, so rows for
    every subject are the safe default). A database error propagates: the publisher's transaction is broken."""
    if not subscriber.wants:
        return None
    try:
        return set(import_string(subscriber.wants)(subjects))
    except DatabaseError:
        raise
    except Exception:  # a broken predicate must not stop the event that is being published
        logger.warning("outbox: %s's wants failed; writing its rows for every subject", subscriber.name)
        return None


def outbox_publish_many(*, topic: str, events: list[tuple[str, str, dict[str, Any] | None]]) -> list[OutboxMessage]:
    """``outbox_publish`` for many events of one ``topic`` at once: ``events`` are ``(key, subject, payload)``.

    Two statements per subscriber whatever the number of events: ``INSERT ... ON CONFLICT DO NOTHING`` (an
    event published before keeps its row) and one ``SELECT`` of the rows; a subscriber with ``wants`` gets rows
    only for the subjects it wants (one query more; none at all when it wants none). Returns the rows, event by
    event and subscriber by subscriber. Raises ``RuntimeError`` outside a transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_publish must run inside the transaction that makes the event true.")
    now = timezone.now()
    keys = [key for key, _, _ in events]
    by_subscriber: dict[str, dict[str, OutboxMessage]] = {}
    for subscriber in subscribers_of(topic):
        stored = _subscriber_rows(topic, subscriber, events, now)
        if stored:
            by_subscriber[subscriber.name] = stored
    return [stored[key] for key in keys for stored in by_subscriber.values() if key in stored]


def _subscriber_rows(
    topic: str, subscriber: Subscriber, events: list[tuple[str, str, dict[str, Any] | None]], now: Any
) -> dict[str, OutboxMessage]:
    """Write ``subscriber``'s rows of ``events`` (those it wants) and return its rows of them by key (``{}`` when
    it wants none); a new row is noted for the fast path (``outbox_publish_many``)."""
    wanted = _wanted(subscriber, [subject for _, subject, _ in events])
    candidates = [
        OutboxMessage(
            topic=topic,
            subscriber=subscriber.name,
            idempotency_key=key,
            subject=subject,
            payload=payload or {},
            available_at=now,
        )
        for key, subject, payload in events
        if wanted is None or subject in wanted
    ]
    if not candidates:
        return {}
    OutboxMessage.objects.bulk_create(candidates, ignore_conflicts=True)
    stored = {
        m.idempotency_key: m
        for m in OutboxMessage.objects.filter(
            subscriber=subscriber.name, idempotency_key__in=[c.idempotency_key for c in candidates]
        )
    }
    for candidate in candidates:
        message = stored[candidate.idempotency_key]
        if message.pk == candidate.pk:  # ours: new in this transaction
            _fast_path_register(message)
    return stored


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
    transaction committed, the rows are published (``_publish``: in batches where the subscriber takes them).
    When the broker is down, publishing stops and the rows not published are given back (due now, their count
    restored) for the next run.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(status=OutboxMessage.Status.PENDING, available_at__lte=now)
            .order_by("available_at", "created_at")  # oldest first, also among rows due at the same instant
            .values_list("pk", "publish_count", "available_at", "published_at", "subscriber")[:limit]
        )
        by_count: dict[int, list[Any]] = {}
        for message_id, count, *_ in due:
            by_count.setdefault(count + 1, []).append(message_id)
        for count, ids in by_count.items():
            OutboxMessage.objects.filter(pk__in=ids).update(
                published_at=now, available_at=now + relay_lease(count), publish_count=count
            )
    published, error = _publish([(subscriber, str(message_id)) for message_id, *_, subscriber in due])
    if error is not None:
        logger.warning(
            "outbox relay: broker unavailable (%s); %d row(s) left for next run",
            type(error).__name__,
            len(due) - len(published),
        )
        sent = set(published)
        _relay_give_back([row[:4] for row in due if str(row[0]) not in sent], leased_at=now)
    return len(published)


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
    the subscriber's handler (``_message_run``). A handler that finishes without calling ``message_done`` itself
    gets its row marked done afterwards. A ``temporary`` error (or an unexpected one) backs off; a permanent
    ``HealthcommerceError``, or ``FULFILLMENT_MAX_ATTEMPTS`` attempts, dead-letters the row, runs the
    subscriber's ``on_dead`` and logs an ERROR alert.

    For a subscriber that takes batches (``_batched``), the task also claims up to ``BATCH_SIZE - 1`` other rows
    of that subscriber waiting for a worker (``_waiting_ids``; ``SKIP LOCKED``) and runs them as one batch: a
    stream of separate sign-offs, each with its own task, is then handled in batches once tasks queue up, and
    the later tasks find their rows done (a no-op). Alone, a row runs as before.

    Not one transaction on purpose: no database transaction stays open across a handler's network call.
    """
    message = _message_claim(message_id)
    if message is None:
        return
    if BATCH_SIZE > 1 and _batched(message.subscriber):
        others = _messages_claim(_waiting_ids(message, limit=BATCH_SIZE - 1))
        if others:
            _claimed_run([message, *others])
            return
    _message_run(message)


def _waiting_ids(message: OutboxMessage, *, limit: int) -> list[Any]:
    """Ids of up to ``limit`` other rows of ``message``'s subscriber that wait for a worker now: pending, not held,
    and either never tried (their own task is queued, or the relay will publish them) or due again; oldest first.
    A row backing off after a failure is left to its backoff."""
    now = timezone.now()
    return list(
        OutboxMessage.objects.filter(subscriber=message.subscriber, status=OutboxMessage.Status.PENDING)
        .exclude(pk=message.pk)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .filter(Q(attempts=0) | Q(available_at__lte=now))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def _message_run(message: OutboxMessage) -> None:
    """Run the subscriber's handler on a claimed ``message`` and settle the row: done, retry or dead letter."""
    subscriber = subscriber_named(message.subscriber)
    try:
        import_string(subscriber.handler)(message)
    except Exception as exc:
        _message_failed(message, exc)
        return
    if message.status != OutboxMessage.Status.DONE:  # the handler's own ``message_done`` has not marked it
        message_done(message)


def _message_failed(message: OutboxMessage, exc: BaseException) -> None:
    """Settle a claimed row whose handler raised ``exc``: a temporary ``HealthcommerceError`` (or any other
    exception, logged with its traceback as ``internal_error:<type>``) retries after a backoff, a permanent one
    dead-letters."""
    if isinstance(exc, HealthcommerceError):
        if exc.temporary:
            _message_retry_later(message, code=exc.code, retry_after=getattr(exc, "retry_after", None))
        else:
            _message_dead_letter(message, code=exc.code)
        return
    logger.error(
        "outbox handler unexpected %s subscriber=%s message=%s",
        type(exc).__name__,
        message.subscriber,
        message.pk,
        exc_info=exc,
    )
    _message_retry_later(message, code=f"internal_error:{type(exc).__name__}")


@transaction.atomic
def _messages_claim(message_ids: list[Any]) -> list[OutboxMessage]:
    """Claim every row of ``message_ids`` that is ``pending`` and not held, in one short transaction; return
    them, attempt counted and leased (as ``_message_claim`` does for one row).

    The rows are read with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; a no-op on SQLite, whose
    ``IMMEDIATE`` transactions serialize writers), so a row another worker is claiming or settling right now
    is skipped, not waited for; a row another worker holds (``locked_until`` ahead) is skipped too. A row whose
    attempts are used up is dead-lettered instead (``attempts_exhausted``).
    """
    now = timezone.now()
    until = now + _claim_lease()
    max_attempts = settings.FULFILLMENT_MAX_ATTEMPTS
    free = list(
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(pk__in=message_ids, status=OutboxMessage.Status.PENDING)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .order_by("created_at")
    )
    claimed = [m for m in free if m.attempts < max_attempts]
    if claimed:
        OutboxMessage.objects.filter(pk__in=[m.pk for m in claimed]).update(
            locked_until=until, available_at=until, attempts=F("attempts") + 1
        )
    for message in claimed:
        message.locked_until = message.available_at = until
        message.attempts += 1
    for message in free:
        if message.attempts >= max_attempts and message not in claimed:
            _message_dead_letter(message, code="attempts_exhausted")
    return claimed


def outbox_deliver_batch(*, message_ids: list[Any]) -> None:
    """Deliver a batch of outbox rows (``message_ids``: UUIDs or their strings, any subscribers); safe to run
    twice or concurrently with ``outbox_deliver`` of the same rows (each row is claimed once).

    Claims the rows together (``_messages_claim``; rows done, dead, cancelled, missing or held elsewhere are
    skipped). A subscriber with a ``batch_handler`` gets its rows in one call; the handler returns the
    exception of each row that failed, and each such row retries or dead-letters alone (``_message_failed``);
    the others are done (the handler marks them, or ``messages_done`` does after it). Should the batch handler
    itself raise, every row it left pending is run on its own with the single-row handler (idempotent, same
    keys), so a batch failure costs no row more than its own. Rows of other subscribers run one by one
    (``_message_run``): their side effects (an email, a text) stay per row.

    Not one transaction on purpose, as ``outbox_deliver``: claim, handler and settlement are separate steps,
    and a batch handler keeps its network calls outside its transactions. A worker killed mid-batch leaves its
    rows claimed until the lease ends; the relay publishes them again and the backend's idempotency keys make
    the second submit a replay.
    """
    _claimed_run(_messages_claim(list(message_ids)))


def _claimed_run(claimed: list[OutboxMessage]) -> None:
    """Run claimed rows: a subscriber's rows together through its ``batch_handler`` (when it has one and there
    are several), every other row alone; settle each row (see ``outbox_deliver_batch``)."""
    by_subscriber: dict[str, list[OutboxMessage]] = {}
    for message in claimed:
        by_subscriber.setdefault(message.subscriber, []).append(message)
    for name, messages in by_subscriber.items():
        subscriber = subscriber_named(name)
        if not subscriber.batch_handler or len(messages) == 1:
            for message in messages:
                _message_run(message)
            continue
        try:
            failures = import_string(subscriber.batch_handler)(messages)
        except Exception as exc:
            logger.error(
                "outbox batch handler failed (%s) subscriber=%s rows=%d; running them one by one",
                type(exc).__name__,
                name,
                len(messages),
                exc_info=exc,
            )
            # Read again: the failed transaction rolled back whatever it had marked on these objects.
            for message in OutboxMessage.objects.filter(
                pk__in=[m.pk for m in messages], status=OutboxMessage.Status.PENDING
            ).order_by("created_at"):
                _message_run(message)
            continue
        for message in messages:
            if message.pk in failures:
                _message_failed(message, failures[message.pk])
        messages_done({m: "" for m in messages if m.pk not in failures and m.status != OutboxMessage.Status.DONE})


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


def messages_done(results: dict[OutboxMessage, str]) -> list[OutboxMessage]:
    """Mark many ``pending`` rows done, each with its ``result`` (``{message: result}``), in the caller's
    transaction when there is one; return the rows this call finished (the others another run finished first).

    Locks the rows (``SELECT ... FOR UPDATE``) and updates them in one statement, so it is as conditional as
    ``message_done``: a batch handler calls it inside the transaction of its own writes.
    """
    if not results:
        return []
    by_pk = {m.pk: (m, r[:200]) for m, r in results.items()}
    with transaction.atomic():
        pending = set(
            OutboxMessage.objects.select_for_update()
            .filter(pk__in=list(by_pk), status=OutboxMessage.Status.PENDING)
            .values_list("pk", flat=True)
        )
        if pending:
            OutboxMessage.objects.filter(pk__in=list(pending)).update(
                status=OutboxMessage.Status.DONE,
                locked_until=None,
                last_error="",
                result=Case(*(When(pk=pk, then=Value(by_pk[pk][1])) for pk in pending), default=Value("")),
            )
    finished = []
    for pk in pending:
        message, result = by_pk[pk]
        message.status, message.result = OutboxMessage.Status.DONE, result
        finished.append(message)
    return finished


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


@transaction.atomic
def outbox_purge() -> int:
    """Delete ``done`` and ``cancelled`` outbox rows last changed more than ``OUTBOX_RETENTION_DAYS`` ago; return
    how many. Dead letters and pending rows are kept whatever their age. One ``retention.purge`` audit row with the
    count (docs/reliability.md "Retention"). Run daily by beat (``healthcommerce.outbox.tasks.purge``); idempotent.
    """
    cutoff = timezone.now() - timedelta(days=settings.OUTBOX_RETENTION_DAYS)
    ended = (OutboxMessage.Status.DONE, OutboxMessage.Status.CANCELLED)
    deleted, _ = OutboxMessage.objects.filter(status__in=ended, updated_at__lt=cutoff).delete()
    audit_retention(
        target="OutboxMessage", counts={"outbox_messages": deleted, "retention_days": settings.OUTBOX_RETENTION_DAYS}
    )
    if deleted:
        logger.info("retention: deleted %d done or cancelled outbox row(s)", deleted)
    return deleted
