"""The order pipeline: transactional outbox, relay, and the idempotent submit (docs/reliability.md "No signed
order is lost" and "None is fulfilled twice").

Flow: ``outbox_enqueue`` (inside the sign-off transaction) -> on commit, or later ``outbox_relay`` -> Celery
``submit_order`` -> ``fulfillment_submit``: claim with a conditional UPDATE, send the minimized
``CommerceOrder`` to the backend under the idempotency key, mark the order submitted, issue and send the
purchase link. Retries are driven by ``OutboxMessage.available_at`` and ``attempts`` in the database, never by
the broker, so a lost broker message is not lost work.
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

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.fulfillment.backends.base import SubmitResult, TemporaryBackendError
from healthcommerce.fulfillment.backends.local.services import local_order_confirm, local_order_mark
from healthcommerce.fulfillment.backends.registry import backend_name, get_backend
from healthcommerce.fulfillment.commerce import commerce_order_build
from healthcommerce.fulfillment.models import OutboxMessage
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import ALLOWED, order_event_add, order_transition
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue, purchase_link_send

__all__ = [
    "backoff_seconds",
    "fulfillment_submit",
    "local_order_confirm",
    "local_order_mark",
    "outbox_enqueue",
    "outbox_relay",
    "outbox_retry",
    "relay_lease",
]

logger = logging.getLogger(__name__)

TOPIC_ORDER_SUBMIT = "order.submit"
ACTOR = "system:fulfillment"
# Full-jitter exponential backoff (seconds): uniform(0, min(CAP, BASE * 2**(attempt - 1))).
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
# After publishing, the relay leaves a row alone this long (seconds) so a queued task is not published twice;
# each further publication of a row no worker has taken doubles it, up to the cap (republish backoff).
RELAY_LEASE_SECONDS = 60
RELAY_LEASE_CAP_SECONDS = 3600
# A worker's claim outlives the hard task time limit, after which Celery has killed the task.
CLAIM_MARGIN_SECONDS = 60
# Statuses from which an order may be (re)submitted; ``failed`` is an admin re-drive of a dead letter.
SUBMITTABLE = {Order.Status.SIGNED, Order.Status.SUBMITTED, Order.Status.FAILED}
# Errors a publish raises when the broker is unreachable; the row stays pending for the relay.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.RedisError,
    OSError,
)


class OrderNotSubmittable(HealthcommerceError):
    """The order's status forbids fulfillment (e.g. it was cancelled); permanent."""

    code = "order_not_submittable"
    status = 409
    message = "This order cannot be submitted."


def backoff_seconds(*, attempt: int, retry_after: float | None = None) -> float:
    """Return the delay in seconds before try ``attempt + 1``, in ``[0, BACKOFF_CAP_SECONDS]``.

    Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"); a
    backend's ``Retry-After`` (seconds) is a lower bound (docs/reliability.md "Retries and dead letters"), still capped.
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


def _publish_submit(message_id: str) -> None:
    """Publish ``submit_order(message_id)`` without Celery's own publish retries (the outbox retries)."""
    from healthcommerce.fulfillment import tasks  # tasks imports this module

    tasks.submit_order.apply_async(args=(message_id,), retry=False)


def _publish_fast_path(message_id: str) -> None:
    """On commit: publish at once; a broker failure is logged and left to the relay."""
    try:
        _publish_submit(message_id)
    except PUBLISH_ERRORS as exc:
        logger.warning(
            "outbox fast path: broker unavailable (%s), relay will publish message=%s", type(exc).__name__, message_id
        )
        return
    now = timezone.now()
    OutboxMessage.objects.filter(
        pk=message_id, status=OutboxMessage.Status.PENDING, attempts=0, locked_until=None
    ).update(published_at=now, available_at=now + relay_lease(1), publish_count=F("publish_count") + 1)


def outbox_enqueue(*, order: Order) -> OutboxMessage:
    """Write the ``order.submit`` outbox row for ``order`` inside the caller's (sign-off) transaction.

    The idempotency key is ``"<order id>:v<version>"`` (unique), so enqueueing the same version twice
    returns the existing row. On commit the task is published at once (fast path); if that fails, or the
    process dies first, ``outbox_relay`` publishes it later (docs/reliability.md "No signed order is lost":
    ``on_commit`` alone loses tasks). Raises ``RuntimeError`` outside a transaction: the row must commit with
    the sign-off.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction that signs the order.")
    message, created = OutboxMessage.objects.get_or_create(
        idempotency_key=f"{order.pk}:v{order.version}",
        defaults={"topic": TOPIC_ORDER_SUBMIT, "order": order, "available_at": timezone.now()},
    )
    if created:
        message_id = str(message.pk)
        transaction.on_commit(lambda: _publish_fast_path(message_id), robust=True)
    return message


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
            _publish_submit(str(message_id))
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
    message = OutboxMessage.objects.select_related("order", "order__product").filter(pk=message_id).first()
    if claimed == 1 or message is None:
        return message if claimed == 1 else None
    free = message.locked_until is None or message.locked_until <= now
    if message.status == OutboxMessage.Status.PENDING and free and message.attempts >= max_attempts:
        # Every attempt was used up without an outcome (e.g. the worker was killed each time).
        _message_dead_letter(message, code="attempts_exhausted", backend=str(settings.COMMERCE_BACKEND))
    return None


def fulfillment_submit(*, message_id: Any) -> None:
    """Fulfil one ``order.submit`` outbox message; safe to run twice or concurrently (fulfils once, one link).

    Claims the row (a ``done`` or ``dead`` row, or one another worker holds, is a no-op), sends the
    ``CommerceOrder`` with the message's idempotency key, then in one transaction marks the row ``done``
    (conditional UPDATE), the order ``submitted`` and issues the purchase link; the link email goes out
    after that commits. ``TemporaryBackendError`` (or an unexpected error) backs off; a permanent error, or
    ``FULFILLMENT_MAX_ATTEMPTS`` attempts, dead-letters the row, fails the order and logs an ERROR alert.

    Not one transaction on purpose: no database transaction stays open across the backend's network call.
    """
    name = backend_name()
    message = _message_claim(message_id)
    if message is None:
        return
    order = message.order
    try:
        if order.status not in SUBMITTABLE:
            raise OrderNotSubmittable(code=f"order_{order.status}")
        commerce_order = commerce_order_build(order=order, idempotency_key=message.idempotency_key)
        result = get_backend(name).submit(commerce_order)
        issued = _message_complete(message, result=result, backend=name)
    except TemporaryBackendError as exc:
        _message_retry_later(message, code=exc.code, backend=name, retry_after=exc.retry_after)
        return
    except HealthcommerceError as exc:
        _message_dead_letter(message, code=exc.code, backend=name)
        return
    except Exception as exc:
        logger.exception(
            "fulfillment unexpected %s order=%s message=%s", type(exc).__name__, order.reference, message.pk
        )
        _message_retry_later(message, code=f"internal_error:{type(exc).__name__}", backend=name)
        return
    if issued is not None and issued[1]:
        try:
            purchase_link_send(link=issued[0], token=issued[1])
        except Exception:  # the order is submitted; an admin can re-issue the link
            logger.exception("purchase link send failed order=%s link=%s", order.reference, issued[0].pk)


@transaction.atomic
def _message_complete(message: OutboxMessage, *, result: SubmitResult, backend: str) -> tuple[PurchaseLink, str] | None:
    """Mark the row done, the order submitted, audit, and issue the link; ``None`` if another run finished first."""
    done = OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.DONE, locked_until=None, last_error="", external_id=result.external_id[:200]
    )
    if done != 1:
        return None
    order = message.order
    detail = {"backend": backend, "external_id": result.external_id, "message_id": str(message.pk)}
    order_transition(order_id=order.pk, to_status=Order.Status.SUBMITTED, actor=ACTOR, detail=detail)
    audit_record(actor=ACTOR, action="fulfillment.submit", target=f"Order/{order.pk}", where=backend, detail=detail)
    logger.info("fulfillment submitted order=%s message=%s backend=%s", order.reference, message.pk, backend)
    return purchase_link_issue(order=order)


@transaction.atomic
def _message_retry_later(message: OutboxMessage, *, code: str, backend: str, retry_after: float | None = None) -> None:
    """Release the claim and schedule the next try after a backoff; dead-letter once attempts are used up."""
    max_attempts = settings.FULFILLMENT_MAX_ATTEMPTS
    if message.attempts >= max_attempts:
        _message_dead_letter(message, code=code, backend=backend)
        return
    delay = backoff_seconds(attempt=message.attempts, retry_after=retry_after)
    OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        locked_until=None,
        available_at=timezone.now() + timedelta(seconds=delay),
        last_error=code[:300],
        publish_count=0,
    )
    logger.warning(
        "fulfillment retry order=%s message=%s backend=%s error=%s attempt=%d/%d delay=%.0fs",
        message.order.reference,
        message.pk,
        backend,
        code,
        message.attempts,
        max_attempts,
        delay,
    )


@transaction.atomic
def _message_dead_letter(message: OutboxMessage, *, code: str, backend: str) -> None:
    """Mark the row ``dead``, the order ``failed`` (when the state machine allows), record an event and an
    audit row, and log the ERROR line that alerts."""
    updated = OutboxMessage.objects.filter(pk=message.pk, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.DEAD, locked_until=None, last_error=code[:300]
    )
    if updated != 1:
        return
    order = Order.objects.get(pk=message.order_id)
    detail = {"code": code, "backend": backend, "attempts": message.attempts, "message_id": str(message.pk)}
    if Order.Status.FAILED in ALLOWED[order.status]:
        order_transition(order_id=order.pk, to_status=Order.Status.FAILED, actor=ACTOR, detail=detail)
    order_event_add(order=order, kind="fulfillment_failed", actor=ACTOR, detail=detail)
    audit_record(
        actor=ACTOR,
        action="fulfillment.dead_letter",
        target=f"Order/{order.pk}",
        where=backend,
        outcome=code,
        detail=detail,
    )
    logger.error(
        "fulfillment dead-lettered order=%s backend=%s error=%s attempts=%d message=%s",
        order.reference,
        backend,
        code,
        message.attempts,
        message.pk,
    )


@transaction.atomic
def outbox_retry(*, message_ids: Iterable[Any], actor: str) -> int:
    """Reset ``dead`` or idle ``pending`` rows to ``pending``, due now, with a fresh attempt budget.

    Rows a worker is holding are skipped. Returns how many rows were reset; audits each (admin "retry now").
    """
    now = timezone.now()
    rows = list(
        OutboxMessage.objects.select_for_update()
        .filter(pk__in=list(message_ids), status__in=[OutboxMessage.Status.DEAD, OutboxMessage.Status.PENDING])
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .select_related("order")
    )
    for message in rows:
        message.status = OutboxMessage.Status.PENDING
        message.attempts = 0
        message.available_at = now
        message.locked_until = None
        message.publish_count = 0
        fields = ["status", "attempts", "available_at", "locked_until", "publish_count", "updated_at"]
        message.save(update_fields=fields)
        detail = {"message_id": str(message.pk)}
        order_event_add(order=message.order, kind="fulfillment_retry", actor=actor, detail=detail)
        audit_record(
            actor=actor, action="fulfillment.retry", target=f"Order/{message.order_id}", where="admin", detail=detail
        )
    return len(rows)
