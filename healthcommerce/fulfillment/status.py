"""Status back from the commerce backend: one service applies it, whoever reports it (docs/reliability.md
"Status back").

Three sources report an order's status at the backend: a status webhook the backend pushes
(``/webhooks/<backend>/``, ``inbound_status_record``), the daily reconciliation that asks the backend
(``fulfillment.reconcile``), and the local backend's admin marks (through ``inbound_status_record`` too, as the
backend's own events). Each ends in ``fulfillment_status_apply``, which moves ``Order.fulfillment_status``
forward only (``orders.forward``: ``received < confirmed < shipped < delivered``; ``cancelled`` only before
shipping), records shipped, delivered and cancelled on the order's timeline with the carrier and tracking number
(a tracking URL only when https; derived from the carrier when none came: ``carriers``), moves the order to
``fulfilled`` once shipped, and publishes ``order.status_changed`` for the patient's notification (ADR 0008: the
next stage hears it through the outbox).
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
from healthcommerce.orders.forward import CONFLICT, FORWARD, SHIPPING, fulfillment_step, order_status_following
from healthcommerce.orders.models import FulfillmentStatus, Order
from healthcommerce.orders.transitions import order_event_add, order_transition
from healthcommerce.outbox.services import outbox_publish

logger = logging.getLogger(__name__)

FS = FulfillmentStatus
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

    ``source`` is ``webhook``, ``reconciliation``, ``confirm`` or ``admin``. Forward moves only
    (``orders.forward.fulfillment_step``): an older or equal status changes nothing (new tracking for the same
    status is still recorded); ``cancelled`` after ``shipped``, or ``shipped``/``delivered`` for an order we
    cancelled, is ``refused`` with a ``status_conflict`` event on the timeline and an ERROR log line (someone must
    call the supplier). The order's own status follows (``orders.forward.order_status_following``): shipped or
    delivered moves a ``submitted`` order to ``fulfilled``; a platform cancel moves it to ``cancelled``. Every
    announced change publishes ``order.status_changed`` (payload ``{"status": ...}``, key
    ``<order key>:<status>``) and writes an audit row. Raises ``UnknownFulfillmentStatus``.
    """
    new = update.status
    if new not in FS.values:
        raise UnknownFulfillmentStatus(code="status_unknown")
    order = Order.objects.select_for_update().get(pk=order_id)
    detail: dict[str, Any] = {"source": source, "backend": backend, **({"event_id": event_id} if event_id else {})}
    step = fulfillment_step(order.fulfillment_status, new, order_cancelled=order.status == Order.Status.CANCELLED)
    if step == CONFLICT:
        _conflict_record(order, new, detail=detail, actor=actor)
        return REFUSED
    forward = step == FORWARD
    # Tracking counts from any shipped or delivered report, a late one included; it never moves the status.
    tracking = _tracking_changes(order, update, source=source) if new in SHIPPING else {}
    outcome = _changes_save(order, status=new if forward else "", tracking=tracking)
    following = order_status_following(order.status, order.fulfillment_status)
    if following:
        order_transition(order_id=order.pk, to_status=following, actor=actor, detail=detail)
    if outcome == APPLIED and (new in ANNOUNCED or tracking):
        _announce(order, new, forward=forward, tracking=tracking, detail=detail, actor=actor)
    logger.info(
        "fulfillment status order=%s backend=%s source=%s reported=%s outcome=%s",
        order.reference,
        backend,
        source,
        new,
        outcome,
    )
    return outcome


def _conflict_record(order: Order, new: str, *, detail: dict[str, Any], actor: str) -> None:
    """Record a refused report (``status_conflict`` on the timeline) and alert with an ERROR line (no PHI)."""
    order_event_add(order=order, kind="status_conflict", actor=actor, detail={**detail, "reported": new})
    logger.error(
        "ALERT fulfillment status conflict order=%s backend=%s reported=%s ours=%s/%s",
        order.reference,
        detail["backend"],
        new,
        order.status,
        order.fulfillment_status or "-",
    )


def _changes_save(order: Order, *, status: str, tracking: dict[str, str]) -> str:
    """Store the new fulfillment ``status`` (when not empty) and ``tracking`` on ``order`` (row and instance);
    return ``applied`` when anything changed, else ``unchanged``."""
    if not status and not tracking:
        return UNCHANGED
    changes: dict[str, Any] = {**tracking, "fulfillment_updated_at": timezone.now()}
    if status:
        changes["fulfillment_status"] = status
    Order.objects.filter(pk=order.pk).update(**changes)
    for name, value in changes.items():
        setattr(order, name, value)
    return APPLIED


def _announce(
    order: Order, new: str, *, forward: bool, tracking: dict[str, str], detail: dict[str, Any], actor: str
) -> None:
    """Put the change on the timeline (``shipped``, ``delivered``, ``cancelled_by_platform`` or
    ``tracking_updated``) with an audit row, and, for a status move, publish ``order.status_changed``."""
    kind = "cancelled_by_platform" if new == FS.CANCELLED else (new if forward else "tracking_updated")
    order_event_add(order=order, kind=kind, actor=actor, detail={**detail, **tracking})
    audit_record(
        actor=actor, action=f"fulfillment.{kind}", target=f"Order/{order.pk}", where=detail["backend"], detail=detail
    )
    if forward:
        outbox_publish(
            topic=TOPIC_ORDER_STATUS_CHANGED,
            key=f"{order_event_key(order)}:{new}",
            subject=order_subject(order),
            payload={"status": new},
        )


def inbound_status_record(
    *, backend: str, event: StatusEvent, source: str = "webhook", actor: str = ""
) -> tuple[Any, str]:
    """Record one verified status event from ``backend`` and apply it; return ``(order id, outcome)`` (outcome
    ``applied``, ``unchanged``, ``refused``, or ``duplicate`` for an event id already received).

    ``source`` is ``webhook`` (``/webhooks/<backend>/``) or ``admin`` (the local backend's marks); ``actor``
    defaults to ``system:webhook:<backend>``. The event must name an order this backend took
    (``Order.commerce_backend``), and its ``external_id``, when given, must be the backend's id for it; otherwise
    ``InboundOrderUnknown`` (404: the sender retries, so an event that overtakes our own record of the hand-over
    is not lost). The dedupe row and the status change commit together. Raises ``InboundOrderUnknown`` or
    ``UnknownFulfillmentStatus``.
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
            return order.pk, DUPLICATE
        outcome = fulfillment_status_apply(
            order_id=order.pk,
            update=event.update,
            source=source,
            backend=backend,
            actor=actor or f"system:webhook:{backend}",
            event_id=event.event_id,
        )
        InboundStatusEvent.objects.filter(pk=row.pk).update(outcome=outcome)
    return order.pk, outcome
