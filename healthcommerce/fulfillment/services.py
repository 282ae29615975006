"""Fulfillment: the outbox subscribers that hand signed orders to the commerce backend (docs/reliability.md
"None is fulfilled twice", ADR 0008).

- ``order.signed`` -> ``fulfillment_submit``: send the minimized ``CommerceOrder`` to the backend under the
  order's idempotency key; then, in one transaction, mark the row done, the order ``submitted``, and publish
  ``order.submitted`` for the next stage. On a dead letter (``fulfillment_dead``) the order becomes ``failed``.
  With a backend that stores many orders at once (``bulk_submit``, the local backend), rows committed together
  arrive in batches: ``fulfillment_submit_batch`` does the same for many rows with one backend call and one
  transaction (ADR 0014).
- ``order.patient_confirmed`` -> ``fulfillment_confirm``: tell the backend the patient confirmed.
Every backend call goes through the registry (``backends.registry.get_backend``).
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from healthcommerce.audit.services import audit_record, audit_record_many
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.metrics import integration, sign_to_ack_record
from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.backends.registry import backend_name, get_backend
from healthcommerce.fulfillment.commerce import commerce_confirmation_build, commerce_order_build
from healthcommerce.fulfillment.shipto import shipto_reread
from healthcommerce.fulfillment.status import fulfillment_status_apply
from healthcommerce.orders.events import (
    TOPIC_ORDER_CANCELLED,
    TOPIC_ORDER_SUBMITTED,
    order_event_key,
    order_for_subject,
    order_subject,
    orders_for_subjects,
)
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import ALLOWED, order_event_add, order_transition, order_transition_many
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done, messages_done, outbox_publish, outbox_publish_many

__all__ = [
    "fulfillment_cancel",
    "fulfillment_cancel_failed",
    "fulfillment_confirm",
    "fulfillment_dead",
    "fulfillment_submit",
    "fulfillment_submit_batch",
    "fulfillment_submits_in_batches",
    "order_of",
]

logger = logging.getLogger(__name__)

SUBMIT_SUBSCRIBER = "fulfillment.submit"
ACTOR = "system:fulfillment"
# Statuses from which an order may be (re)submitted; ``failed`` is an admin re-drive of a dead letter.
SUBMITTABLE = {Order.Status.SIGNED, Order.Status.SUBMITTED, Order.Status.FAILED}


class BackendMisconfigured(HealthcommerceError):
    """``COMMERCE_BACKEND`` or the backend's own settings are wrong: retried with backoff (an operator can fix
    the settings while the row waits), dead-lettered when the attempts run out."""

    code = "backend_misconfigured"
    status = 503
    temporary = True
    message = "The commerce backend is not configured."


@contextmanager
def _backend_configured() -> Iterator[None]:
    """Turn ``ImproperlyConfigured`` (an unknown ``COMMERCE_BACKEND``, or a backend's missing settings) into the
    temporary ``BackendMisconfigured``, so the outbox retries and then dead-letters it like any other error."""
    try:
        yield
    except ImproperlyConfigured as exc:
        raise BackendMisconfigured() from exc


class OrderNotSubmittable(HealthcommerceError):
    """The order's status forbids fulfillment (e.g. it was cancelled); permanent."""

    code = "order_not_submittable"
    status = 409
    message = "This order cannot be submitted."


def order_of(message: OutboxMessage) -> Order:
    """Return the order an ``order.*`` message is about (``subject`` = ``Order/<id>``)."""
    return order_for_subject(message.subject).select_related("product", "site__fulfillmentsite").get()


def fulfillment_submit(message: OutboxMessage) -> None:
    """Handle ``order.signed``: submit the order to the backend, idempotently on the message's key.

    The backend call runs outside any transaction; then ``_submitted`` marks the row done, the order
    ``submitted`` and publishes ``order.submitted``, together. Raises ``OrderNotSubmittable`` (permanent) for
    an order no longer submittable, the backend's ``TemporaryBackendError``/``PermanentBackendError``,
    ``OrderIncomplete`` from ``commerce_order_build``, or a transient EHR error of the ship-to re-read
    (``shipto_reread``, where the site enables it: it runs first); the outbox retries or dead-letters accordingly.
    """
    with _backend_configured():
        name = backend_name()
    order = order_of(message)
    if order.status not in SUBMITTABLE:
        raise OrderNotSubmittable(code=f"order_{order.status}")
    shipto_reread(order)
    commerce_order = commerce_order_build(order=order, idempotency_key=message.idempotency_key)
    with _backend_configured(), integration(site=f"commerce:{name}", kind="commerce_submit"):
        result = get_backend(name).submit(commerce_order)
    _submitted(message, order=order, external_id=result.external_id, backend=name)


@transaction.atomic
def _submitted(message: OutboxMessage, *, order: Order, external_id: str, backend: str) -> None:
    """Mark the row done, the order submitted, audit, and publish ``order.submitted``; nothing if another run
    finished first.

    If the order was cancelled while the backend call ran (the cancel found no backend order to cancel), the
    backend's order is recorded on ours and ``order.cancelled`` is published again (key ``<key>:after-submit``),
    so ``fulfillment.cancel`` cancels it there; no purchase link is sent.
    """
    if not message_done(message, result=external_id):
        return
    detail = {"backend": backend, "external_id": external_id, "message_id": str(message.pk)}
    # This UPDATE locks the order row until commit (a concurrent cancel waits), so its status is read without a
    # second lock.
    Order.objects.filter(pk=order.pk).update(commerce_backend=backend, commerce_id=external_id[:200])
    status = Order.objects.filter(pk=order.pk).values_list("status", flat=True).get()
    if status == Order.Status.CANCELLED:
        _submitted_after_cancel(message, order=order, backend=backend, detail=detail)
        return
    order_transition(order_id=order.pk, to_status=Order.Status.SUBMITTED, actor=ACTOR, detail=detail)
    _sign_to_ack_on_commit([order])
    audit_record(actor=ACTOR, action="fulfillment.submit", target=f"Order/{order.pk}", where=backend, detail=detail)
    outbox_publish(
        topic=TOPIC_ORDER_SUBMITTED,
        key=message.idempotency_key,
        subject=order_subject(order),
        payload={"backend": backend, "external_id": external_id[:200]},
    )
    logger.info("fulfillment submitted order=%s message=%s backend=%s", order.reference, message.pk, backend)


def _sign_to_ack_on_commit(orders: list[Order]) -> None:
    """After commit, record each order's seconds from signature to the backend's acknowledgement, by site
    (``core.metrics.sign_to_ack_record``; docs/reliability.md "Integration health")."""
    now = timezone.now()
    spans = [(o.site.name, (now - o.signed_at).total_seconds()) for o in orders if o.signed_at]

    def record() -> None:
        for site, seconds in spans:
            sign_to_ack_record(site=site, seconds=max(seconds, 0.0))

    transaction.on_commit(record)


def _submitted_after_cancel(message: OutboxMessage, *, order: Order, backend: str, detail: dict[str, Any]) -> None:
    """The order was cancelled while its submit ran: record it and publish ``order.cancelled`` again (key
    ``<key>:after-submit``) so ``fulfillment.cancel`` cancels it at the backend too (``_submitted``)."""
    order_event_add(order=order, kind="submitted_after_cancel", actor=ACTOR, detail=detail)
    outbox_publish(
        topic=TOPIC_ORDER_CANCELLED,
        key=f"{message.idempotency_key}:after-submit",
        subject=order_subject(order),
    )
    logger.warning("fulfillment order=%s was cancelled during its submit; cancelling at %s", order.reference, backend)


def fulfillment_submits_in_batches() -> bool:
    """Whether ``fulfillment.submit`` rows should be delivered in batches now: only while the configured backend
    stores many orders in one round trip (``CommerceBackend.bulk_submit``); the outbox asks at publish time
    (``Subscriber.batch_if``). False for an unknown or misconfigured backend."""
    try:
        return bool(get_backend(backend_name()).bulk_submit)
    except ImproperlyConfigured:
        return False


def fulfillment_submit_batch(messages: list[OutboxMessage]) -> dict[Any, Exception]:
    """Handle many claimed ``order.signed`` rows at once; return ``{message pk: exception}`` for the rows that
    failed (the outbox retries or dead-letters each alone), the others are done.

    Per row exactly what ``fulfillment_submit`` does, with shared round trips: one query loads the orders
    (``Order.DoesNotExist`` for a missing one, ``OrderNotSubmittable``, a transient error of the ship-to re-read,
    or ``commerce_order_build``'s ``OrderIncomplete``, each for its row only); one ``backend.submit_many`` call,
    outside any transaction, sends the rest under their own idempotency keys and answers per order; then
    ``_submitted_many`` records the accepted ones in one transaction. An exception raised by that transaction rolls
    it all back and propagates: the outbox then runs each row on its own (``fulfillment_submit``), which replays
    the same keys.
    """
    try:
        with _backend_configured():
            name = backend_name()
            backend = get_backend(name)
    except BackendMisconfigured as exc:
        return {m.pk: exc for m in messages}
    orders = {
        str(o.pk): o
        for o in orders_for_subjects([m.subject for m in messages]).select_related("product", "site__fulfillmentsite")
    }
    failures: dict[Any, Exception] = {}
    to_submit = []
    for message in messages:
        order = orders.get(message.subject.removeprefix("Order/"))
        if order is None:
            failures[message.pk] = Order.DoesNotExist(f"No order for outbox message {message.pk}.")
            continue
        if order.status not in SUBMITTABLE:
            failures[message.pk] = OrderNotSubmittable(code=f"order_{order.status}")
            continue
        try:
            shipto_reread(order)  # where the site enables it; a transient EHR error retries this row only
            commerce_order = commerce_order_build(order=order, idempotency_key=message.idempotency_key)
        except Exception as exc:  # OrderIncomplete, a transient re-read error, or anything unexpected: this row only
            failures[message.pk] = exc
            continue
        to_submit.append((message, order, commerce_order))
    if not to_submit:
        return failures
    with integration(site=f"commerce:{name}", kind="commerce_submit"):
        results = backend.submit_many([commerce_order for _, _, commerce_order in to_submit])
    accepted = []
    for (message, order, _), result in zip(to_submit, results, strict=True):
        if isinstance(result, ImproperlyConfigured):
            failures[message.pk] = BackendMisconfigured()
        elif isinstance(result, Exception):
            failures[message.pk] = result
        else:
            accepted.append((message, order, result.external_id))
    _submitted_many(accepted, backend=name)
    return failures


def _moving(
    rows: list[tuple[OutboxMessage, Order, str]], *, statuses: dict[Any, str], backend: str
) -> list[tuple[OutboxMessage, Order, str, dict[str, str]]]:
    """The ``rows`` whose order can move to ``submitted``, each with its event detail; an order cancelled meanwhile
    (``statuses``: order pk -> status, read under lock) is handed to ``_submitted_after_cancel`` instead."""
    moving = []
    for message, order, external_id in rows:
        detail = {"backend": backend, "external_id": external_id, "message_id": str(message.pk)}
        if statuses[order.pk] == Order.Status.CANCELLED:
            _submitted_after_cancel(message, order=order, backend=backend, detail=detail)
        else:
            moving.append((message, order, external_id, detail))
    return moving


@transaction.atomic
def _submitted_many(accepted: list[tuple[OutboxMessage, Order, str]], *, backend: str) -> None:
    """``_submitted`` for many rows in one transaction: ``accepted`` holds ``(message, order, backend id)``.

    Marks the rows done (``messages_done``: only those no other run finished first), records the backend's ids
    on the orders (one UPDATE, which locks them), moves them to ``submitted`` (``order_transition_many``), writes
    one ``fulfillment.submit`` audit row and one status ``OrderEvent`` per order, and publishes
    ``order.submitted`` for all of them (``outbox_publish_many``). An order cancelled meanwhile is handled as
    ``_submitted`` does. Raises ``InvalidTransition`` (rolling everything back) if an order can no longer move.
    """
    finished = {m.pk for m in messages_done({m: external_id for m, _, external_id in accepted})}
    rows = [(m, order, external_id[:200]) for m, order, external_id in accepted if m.pk in finished]
    if not rows:
        return
    ids = [order.pk for _, order, _ in rows]
    Order.objects.filter(pk__in=ids).update(
        commerce_backend=backend,
        commerce_id=Case(*(When(pk=order.pk, then=Value(external_id)) for _, order, external_id in rows)),
    )
    statuses = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
    moving = _moving(rows, statuses=statuses, backend=backend)
    if not moving:
        return
    order_transition_many(
        changes=[(order.pk, statuses[order.pk], detail) for _, order, _, detail in moving],
        to_status=Order.Status.SUBMITTED,
        actor=ACTOR,
    )
    _sign_to_ack_on_commit([order for _, order, _, _ in moving])
    audit_record_many(
        records=[
            {
                "actor": ACTOR,
                "action": "fulfillment.submit",
                "target": f"Order/{order.pk}",
                "where": backend,
                "detail": detail,
            }
            for _, order, _, detail in moving
        ]
    )
    outbox_publish_many(
        topic=TOPIC_ORDER_SUBMITTED,
        events=[
            (message.idempotency_key, order_subject(order), {"backend": backend, "external_id": external_id})
            for message, order, external_id, _ in moving
        ],
    )
    for message, order, _, _ in moving:
        logger.info("fulfillment submitted order=%s message=%s backend=%s", order.reference, message.pk, backend)


def fulfillment_dead(*, message: OutboxMessage, code: str) -> str:
    """On a dead-lettered ``order.signed`` row (in its transaction): the order becomes ``failed`` (when the state
    machine allows), with a ``fulfillment_failed`` event and an audit row. Returns the alert's context,
    ``order=<reference> backend=<name>``."""
    order = order_of(message)
    backend = str(settings.COMMERCE_BACKEND)  # as configured, even when it is not a registered backend
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
    return f"order={order.reference} backend={backend}"


def _external_id(order: Order) -> str:
    """Return the backend's id for the order's current version ("" when it never reached the backend)."""
    if order.commerce_id:
        return order.commerce_id
    row = OutboxMessage.objects.filter(
        subscriber=SUBMIT_SUBSCRIBER, idempotency_key=order_event_key(order), status=OutboxMessage.Status.DONE
    ).first()
    return row.result if row else ""


def fulfillment_confirm(message: OutboxMessage) -> None:
    """Handle ``order.patient_confirmed``: ``backend.confirm(external id)`` through the registry.

    Then records ``confirmed`` as the order's fulfillment status (``fulfillment_status_apply``; never backwards).
    Raises the backend's errors (the outbox retries temporary ones); an order never submitted is a no-op.
    """
    order = order_of(message)
    external_id = _external_id(order)
    if not external_id:
        logger.warning("fulfillment confirm: order=%s has no backend order yet", order.reference)
        return
    with _backend_configured():
        name = backend_name(order.commerce_backend or None)  # the backend that took it, even if settings changed
        with integration(site=f"commerce:{name}", kind="commerce_confirm"):
            get_backend(name).confirm(external_id, commerce_confirmation_build(order))
    detail = {"backend": name, "external_id": external_id}
    audit_record(actor=ACTOR, action="fulfillment.confirm", target=f"Order/{order.pk}", where=name, detail=detail)
    fulfillment_status_apply(
        order_id=order.pk, update=BackendStatus("confirmed"), source="confirm", backend=name, actor=ACTOR
    )


def fulfillment_cancel(message: OutboxMessage) -> None:
    """Handle ``order.cancelled``: ``backend.cancel(external id)`` through the registry, when the order reached
    the backend. Raises the backend's errors: ``PermanentBackendError("too_late")`` once it has shipped (the
    row dead-letters and ``fulfillment_cancel_failed`` alerts), temporary ones retry."""
    order = order_of(message)
    external_id = _external_id(order)
    if not external_id:
        return  # the hand-over was cancelled before any backend call, or it never happened
    with _backend_configured():
        name = backend_name(order.commerce_backend or None)
        with integration(site=f"commerce:{name}", kind="commerce_cancel"):
            get_backend(name).cancel(external_id)
    detail = {"backend": name, "external_id": external_id}
    order_event_add(order=order, kind="cancelled_at_backend", actor=ACTOR, detail=detail)
    audit_record(actor=ACTOR, action="fulfillment.cancel", target=f"Order/{order.pk}", where=name, detail=detail)


def fulfillment_cancel_failed(*, message: OutboxMessage, code: str) -> str:
    """On a dead-lettered ``order.cancelled`` row: record ``cancel_failed`` on the timeline (the platform may ship
    an order we cancelled: someone must call the supplier). Returns the alert's context."""
    order = order_of(message)
    backend = str(settings.COMMERCE_BACKEND)
    order_event_add(order=order, kind="cancel_failed", actor=ACTOR, detail={"code": code, "backend": backend})
    return f"order={order.reference} backend={backend} the platform may ship a cancelled order"
