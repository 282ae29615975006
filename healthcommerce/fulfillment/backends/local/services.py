"""Services for the local backend's orders: patient confirmation and the admin's shipped/delivered marks.

``LocalCommerceOrder`` moves ``received -> confirmed -> shipped -> delivered`` and never back, by the one
forward-only table (``orders.forward.fulfillment_step``). The admin's marks reach the order the way a status
webhook from any other backend does: as a ``StatusEvent`` through ``backends.inbound.inbound_status_report``
(docs/architecture.md "Order status": fulfillment details hang off the order as events). This backend reads no
order row and no other part of fulfillment's status code.
"""

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record, audit_retention
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.links import https_url
from healthcommerce.fulfillment.backends.base import BackendStatus, StatusEvent
from healthcommerce.fulfillment.backends.inbound import inbound_status_report
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.carriers import carrier_name, tracking_url_checked
from healthcommerce.orders.forward import CONFLICT, STALE, fulfillment_step

logger = logging.getLogger(__name__)
LS = LocalCommerceOrder.Status
# What a purged local order keeps of its payload (``CommerceOrder.to_dict()``): no ship-to, no contact.
PAYLOAD_KEPT = ("order_reference", "idempotency_key", "items")


class LocalOrderNotFound(HealthcommerceError):
    """No local order has that id (permanent)."""

    code = "not_found"
    status = 404
    message = "The commerce platform holds no such order."


class LocalOrderTransitionError(HealthcommerceError):
    """A mark that would move a local order backwards, or skip shipping before delivery."""

    code = "local_order_transition"
    status = 409
    message = "This order cannot change to that status."


@transaction.atomic
def local_order_confirm(
    *, local_order_id: UUID | str, confirmation: dict[str, Any] | None = None
) -> LocalCommerceOrder:
    """Mark local order ``local_order_id`` ``confirmed`` (the patient completed the link), keep the patient's
    ``confirmation`` (``Confirmation.to_dict()``: corrected ship-to, delivery preference) beside the submitted
    payload, and return it.

    Idempotent: a row already confirmed, shipped or delivered is returned unchanged. Raises
    ``LocalOrderNotFound`` for an unknown id.
    """
    row = LocalCommerceOrder.objects.select_for_update().filter(pk=local_order_id).first()
    if row is None:
        raise LocalOrderNotFound()
    if fulfillment_step(row.status, LS.CONFIRMED) == STALE:  # confirmed, shipped, delivered or cancelled already
        return row
    row.status = LS.CONFIRMED
    row.confirmed_at = timezone.now()
    row.confirmation = confirmation or {}
    row.save(update_fields=["status", "confirmed_at", "confirmation", "updated_at"])
    return row


@transaction.atomic
def local_order_cancel(*, local_order_id: UUID | str) -> LocalCommerceOrder:
    """Cancel local order ``local_order_id`` unless it has shipped; idempotent. Raises ``LocalOrderNotFound`` or
    ``LocalOrderTransitionError`` (code ``too_late``) once it has shipped or been delivered."""
    row = LocalCommerceOrder.objects.select_for_update().filter(pk=local_order_id).first()
    if row is None:
        raise LocalOrderNotFound()
    step = fulfillment_step(row.status, LS.CANCELLED)
    if step == STALE:
        return row
    if step == CONFLICT:
        raise LocalOrderTransitionError("The order has already shipped.", code="too_late")
    row.status = LS.CANCELLED
    row.save(update_fields=["status", "updated_at"])
    return row


@transaction.atomic
def local_order_mark(
    *,
    local_order_id: UUID | str,
    status: str,
    actor: str,
    tracking_number: str = "",
    carrier: str = "",
    tracking_url: str = "",
) -> LocalCommerceOrder:
    """Mark a local order ``shipped`` or ``delivered`` and report it to the order like any backend's status event.

    ``shipped`` stores the carrier (a ``carriers`` code or name), the tracking number and the tracking URL (https
    only; derived from the carrier when empty); ``delivered`` only after ``shipped``. The order hears it through
    ``inbound_status_report`` (event id ``local:<row id>:<status>``, source ``admin``, ``actor``): ``shipped``
    moves it to ``fulfilled`` with a ``shipped`` event holding carrier and tracking, ``delivered`` adds a
    ``delivered`` event, and each publishes ``order.status_changed``. Marking the status the row already has is a
    no-op. Raises ``LocalOrderTransitionError`` for any other status, a backwards move, a cancelled order or
    delivery before shipping (and ``InboundOrderUnknown`` when no order took this row yet).
    """
    if status not in (LS.SHIPPED, LS.DELIVERED):
        raise LocalOrderTransitionError("Only shipped or delivered can be marked.", code="local_order_status_unknown")
    row = LocalCommerceOrder.objects.select_for_update().get(pk=local_order_id)
    if row.status == status:
        return row
    _mark_allowed(row, status)
    if status == LS.SHIPPED:
        _shipment_set(row, carrier=carrier, tracking_number=tracking_number, tracking_url=tracking_url)
    else:
        row.delivered_at = timezone.now()
    row.status = status
    fields = ["status", "carrier", "tracking_number", "tracking_url", "shipped_at", "delivered_at", "updated_at"]
    row.save(update_fields=fields)
    update = BackendStatus(
        status, carrier=row.carrier, tracking_number=row.tracking_number, tracking_url=row.tracking_url
    )
    event = StatusEvent(
        event_id=f"local:{row.pk}:{status}",
        order_reference=row.order_reference,
        external_id=str(row.pk),
        update=update,
    )
    order_id, _ = inbound_status_report(backend="local", event=event, source="admin", actor=actor)
    detail = {"local_order_id": str(row.pk)}
    audit_record(actor=actor, action=f"local_order.{status}", target=f"Order/{order_id}", where="admin", detail=detail)
    return row


def _mark_allowed(row: LocalCommerceOrder, status: str) -> None:
    """Raise ``LocalOrderTransitionError`` unless ``row`` may move to ``status`` (``orders.forward``): not when
    cancelled, never backwards, delivered only after shipped."""
    step = fulfillment_step(row.status, status)
    if step == CONFLICT:
        raise LocalOrderTransitionError("The order was cancelled.", code="local_order_cancelled")
    if step == STALE:
        raise LocalOrderTransitionError(f"A {row.status} order cannot become {status}.", code="local_order_backwards")
    if status == LS.DELIVERED and row.status != LS.SHIPPED:
        raise LocalOrderTransitionError("Mark the order shipped first.", code="local_order_not_shipped")


def _shipment_set(row: LocalCommerceOrder, *, carrier: str, tracking_number: str, tracking_url: str) -> None:
    """Set ``row``'s carrier (display name), tracking number, tracking URL and ``shipped_at``. Raises
    ``LocalOrderTransitionError`` (``tracking_url_not_https``) for a typed URL that is not https."""
    if tracking_url.strip() and not https_url(tracking_url):
        raise LocalOrderTransitionError(
            "The tracking URL must start with https://; leave it empty to use the carrier's.",
            code="tracking_url_not_https",
        )
    row.carrier = carrier_name(carrier)
    row.tracking_number = tracking_number.strip()[:100]
    row.tracking_url = tracking_url_checked(
        url=tracking_url, carrier=row.carrier, number=row.tracking_number, context=f"order={row.order_reference}"
    )
    row.shipped_at = timezone.now()


@transaction.atomic
def local_orders_phi_purge(*, references: Iterable[str]) -> int:
    """Remove the ship-to and contact (PHI) from the payload and confirmation of the local orders of
    ``references`` (the orders whose PHI was purged: ``Order.phi_purged_at``, ``orders_phi_purge``; a list, or a
    ``values_list("reference", flat=True)`` query used as a subquery), keeping ``PAYLOAD_KEPT`` and the delivery
    preference, and set ``phi_purged_at``; return how many. One ``retention.purge`` audit row with the count
    (docs/reliability.md "Retention"). Run daily by beat after the orders' purge
    (``healthcommerce.fulfillment.tasks.purge``); idempotent.
    """
    now = timezone.now()
    rows = LocalCommerceOrder.objects.select_for_update().filter(
        order_reference__in=references, phi_purged_at__isnull=True
    )
    purged = 0
    for row in rows:
        row.payload = {key: row.payload[key] for key in PAYLOAD_KEPT if key in (row.payload or {})}
        row.confirmation = {"delivery_preference": (row.confirmation or {}).get("delivery_preference", "")}
        row.phi_purged_at = now
        row.save(update_fields=["payload", "confirmation", "phi_purged_at", "updated_at"])
        purged += 1
    audit_retention(target="LocalCommerceOrder", counts={"local_orders": purged})
    if purged:
        logger.info("retention: purged the PHI of %d local commerce order(s)", purged)
    return purged
