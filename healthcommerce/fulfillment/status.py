"""Status back from the commerce backend: one service applies it, whoever reports it (docs/reliability.md
"Status back").

Three sources report an order's status at the backend: a status webhook the backend pushes
(``/webhooks/<backend>/``, ``inbound_status_record``), the daily reconciliation that asks the backend
(``fulfillment.reconcile``), and the local backend's admin marks. Each calls ``fulfillment_status_apply``, which
moves ``Order.fulfillment_status`` forward only (``received < confirmed < shipped < delivered``; ``cancelled``
only before shipping), records shipped, delivered and cancelled on the order's timeline with the carrier and
tracking number (a tracking URL only when https; derived from the carrier when none came: ``carriers``),
moves the order to ``fulfilled`` once shipped, and publishes ``order.status_changed`` for the patient's
notification (ADR 0008: the next stage hears it through the outbox).
"""

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.fulfillment.backends.base import BackendStatus, StatusEvent
from healthcommerce.fulfillment.carriers import carrier_name, tracking_url_checked
from healthcommerce.fulfillment.models import InboundStatusEvent
from healthcommerce.orders.events import TOPIC_ORDER_STATUS_CHANGED, order_event_key, order_subject
from healthcommerce.orders.models import FulfillmentStatus, Order
from healthcommerce.orders.transitions import ALLOWED, order_event_add, order_transition
from healthcommerce.outbox.services import outbox_publish

logger = logging.getLogger(__name__)

FS = FulfillmentStatus
# How far an order has got at the backend; ``cancelled`` is apart (allowed only below ``shipped``).
RANK: dict[str, int] = {"": -1, FS.RECEIVED: 0, FS.CONFIRMED: 1, FS.SHIPPED: 2, FS.DELIVERED: 3}
# Statuses the clinician's timeline and the patient hear about.
ANNOUNCED = {FS.SHIPPED, FS.DELIVERED, FS.CANCELLED}

APPLIED = "applied"
UNCHANGED = "unchanged"
REFUSED = "refused"
DUPLICATE = "duplicate"


class UnknownFulfillmentStatus(HealthcommerceError):
    """A backend reported a status this app does not know (permanent)."""

    code = "status_unknown"
    status = 400
    message = "The status is not one this app knows."


class InboundOrderUnknown(HealthcommerceError):
    """A status event names an order this backend does not hold for us (yet): 404, so the sender retries."""

    code = "order_unknown"
    status = 404
    message = "No order of this backend has that reference."


def _tracking_changes(order: Order, update: BackendStatus, *, source: str) -> dict[str, str]:
    """The carrier and tracking fields ``update`` brings that ``order`` does not have yet (or has otherwise).

    The carrier is stored by its display name (``carriers.carrier_name``: ``"fedex"`` -> ``"FedEx"``). A tracking
    URL that is not https is dropped with a WARNING (it would be shown as a link); with none, one is derived from
    a known carrier and the number (``carriers.tracking_url_checked``)."""
    carrier = carrier_name(update.carrier)
    url = tracking_url_checked(
        url=update.tracking_url,
        carrier=carrier,
        number=update.tracking_number,
        context=f"order={order.reference} source={source}",
    )
    fields = {"carrier": carrier, "tracking_number": update.tracking_number.strip(), "tracking_url": url}
    return {name: value for name, value in fields.items() if value and getattr(order, name) != value}


@transaction.atomic
def fulfillment_status_apply(
    *, order_id: Any, update: BackendStatus, source: str, backend: str, actor: str, event_id: str = ""
) -> str:
    """Apply what the backend says about order ``order_id``; return ``applied``, ``unchanged`` or ``refused``.

    ``source`` is ``webhook``, ``reconciliation`` or ``admin``. Forward moves only: an older or equal status
    changes nothing (new tracking for the same status is still recorded); ``cancelled`` after ``shipped``, or
    ``shipped``/``delivered`` for an order we cancelled, is ``refused`` with a ``status_conflict`` event on the
    timeline and an ERROR log line (someone must call the supplier). Shipped or delivered moves a ``submitted``
    order to ``fulfilled``; a platform cancel moves it to ``cancelled``. Every announced change publishes
    ``order.status_changed`` (payload ``{"status": ...}``, key ``<order key>:<status>``) and writes an audit row.
    Raises ``UnknownFulfillmentStatus``.
    """
    new = update.status
    if new not in FS.values:
        raise UnknownFulfillmentStatus(code="status_unknown")
    order = Order.objects.select_for_update().get(pk=order_id)
    current = order.fulfillment_status
    detail: dict[str, Any] = {"source": source, "backend": backend}
    if event_id:
        detail["event_id"] = event_id
    conflict = (new == FS.CANCELLED and RANK.get(current, -1) >= RANK[FS.SHIPPED]) or (
        new in (FS.SHIPPED, FS.DELIVERED) and (current == FS.CANCELLED or order.status == Order.Status.CANCELLED)
    )
    if conflict:
        order_event_add(order=order, kind="status_conflict", actor=actor, detail={**detail, "reported": new})
        logger.error(
            "ALERT fulfillment status conflict order=%s backend=%s reported=%s ours=%s/%s",
            order.reference,
            backend,
            new,
            order.status,
            current or "-",
        )
        return REFUSED
    forward = new != current and (new == FS.CANCELLED or (current != FS.CANCELLED and RANK[new] > RANK[current]))
    # Tracking counts from any shipped or delivered report, a late one included; it never moves the status.
    tracking = _tracking_changes(order, update, source=source) if new in (FS.SHIPPED, FS.DELIVERED) else {}
    outcome = UNCHANGED
    if forward or tracking:
        changes: dict[str, Any] = {**tracking, "fulfillment_updated_at": timezone.now()}
        if forward:
            changes["fulfillment_status"] = new
        Order.objects.filter(pk=order.pk).update(**changes)
        for name, value in changes.items():
            setattr(order, name, value)
        outcome = APPLIED
    if forward and new == FS.CANCELLED and Order.Status.CANCELLED in ALLOWED[order.status]:
        order_transition(order_id=order.pk, to_status=Order.Status.CANCELLED, actor=actor, detail=detail)
    if order.fulfillment_status in (FS.SHIPPED, FS.DELIVERED) and order.status == Order.Status.SUBMITTED:
        order_transition(order_id=order.pk, to_status=Order.Status.FULFILLED, actor=actor, detail=detail)
    if outcome == APPLIED and (new in ANNOUNCED or tracking):
        kind = "cancelled_by_platform" if new == FS.CANCELLED else (new if forward else "tracking_updated")
        event_detail = {**detail, **tracking}
        order_event_add(order=order, kind=kind, actor=actor, detail=event_detail)
        audit_record(
            actor=actor, action=f"fulfillment.{kind}", target=f"Order/{order.pk}", where=backend, detail=detail
        )
        if forward:
            outbox_publish(
                topic=TOPIC_ORDER_STATUS_CHANGED,
                key=f"{order_event_key(order)}:{new}",
                subject=order_subject(order),
                payload={"status": new},
            )
    logger.info(
        "fulfillment status order=%s backend=%s source=%s reported=%s outcome=%s",
        order.reference,
        backend,
        source,
        new,
        outcome,
    )
    return outcome


def inbound_status_record(*, backend: str, event: StatusEvent) -> str:
    """Record one verified status webhook event from ``backend`` and apply it; return the outcome
    (``applied``, ``unchanged``, ``refused``, or ``duplicate`` for an event id already received).

    The event must name an order this backend took (``Order.commerce_backend``), and its ``external_id``, when
    given, must be the backend's id for it; otherwise ``InboundOrderUnknown`` (404: the sender retries, so an
    event that overtakes our own record of the hand-over is not lost). The dedupe row and the status change
    commit together. Raises ``InboundOrderUnknown`` or ``UnknownFulfillmentStatus``.
    """
    order = Order.objects.filter(reference=event.order_reference, commerce_backend=backend).first()
    if order is None or (event.external_id and order.commerce_id and event.external_id != order.commerce_id):
        raise InboundOrderUnknown()
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = InboundStatusEvent.objects.create(
                    backend=backend, event_id=event.event_id, order=order, status=event.update.status, outcome=""
                )
        except IntegrityError:
            return DUPLICATE
        outcome = fulfillment_status_apply(
            order_id=order.pk,
            update=event.update,
            source="webhook",
            backend=backend,
            actor=f"system:webhook:{backend}",
            event_id=event.event_id,
        )
        InboundStatusEvent.objects.filter(pk=row.pk).update(outcome=outcome)
    return outcome
