"""Services for the local backend's orders: patient confirmation and the admin's shipped/delivered marks.

``LocalCommerceOrder`` moves ``received -> confirmed -> shipped -> delivered`` and never back
(docs/architecture.md "Order status": fulfillment details hang off the order as events).
"""

import logging
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record, audit_retention
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.links import https_url
from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.carriers import carrier_name, tracking_url_checked
from healthcommerce.fulfillment.models import LocalCommerceOrder
from healthcommerce.fulfillment.status import fulfillment_status_apply
from healthcommerce.orders.models import Order

logger = logging.getLogger(__name__)
LS = LocalCommerceOrder.Status
# What a purged local order keeps of its payload (``CommerceOrder.to_dict()``): no ship-to, no contact.
PAYLOAD_KEPT = ("order_reference", "idempotency_key", "items")
_RANK: dict[str, int] = {LS.RECEIVED: 0, LS.CONFIRMED: 1, LS.SHIPPED: 2, LS.DELIVERED: 3, LS.CANCELLED: 4}


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
    if _RANK[row.status] >= _RANK[LS.CONFIRMED]:
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
    if row.status == LS.CANCELLED:
        return row
    if row.status in (LS.SHIPPED, LS.DELIVERED):
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
    """Mark a local order ``shipped`` or ``delivered`` and record it on the order's timeline.

    The order hears it as from any backend (``fulfillment.status.fulfillment_status_apply``, source ``admin``):
    ``shipped`` moves it to ``fulfilled`` with a ``shipped`` event holding the carrier (a ``carriers`` code or
    name) and tracking number, and the tracking URL (https only; derived from the carrier when empty), ``delivered``
    (only after ``shipped``) adds a ``delivered`` event, and each publishes ``order.status_changed``. Marking
    the status the row already has is a no-op. Raises ``LocalOrderTransitionError`` for any other status, a
    backwards move or delivery before shipping.
    """
    if status not in (LS.SHIPPED, LS.DELIVERED):
        raise LocalOrderTransitionError("Only shipped or delivered can be marked.", code="local_order_status_unknown")
    row = LocalCommerceOrder.objects.select_for_update().get(pk=local_order_id)
    if row.status == status:
        return row
    if row.status == LS.CANCELLED:
        raise LocalOrderTransitionError("The order was cancelled.", code="local_order_cancelled")
    if _RANK[status] < _RANK[row.status]:
        raise LocalOrderTransitionError(f"A {row.status} order cannot become {status}.", code="local_order_backwards")
    if status == LS.DELIVERED and row.status != LS.SHIPPED:
        raise LocalOrderTransitionError("Mark the order shipped first.", code="local_order_not_shipped")
    order = Order.objects.get(reference=row.order_reference)
    now = timezone.now()
    if status == LS.SHIPPED:
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
        row.shipped_at = now
    else:
        row.delivered_at = now
    row.status = status
    fields = ["status", "carrier", "tracking_number", "tracking_url", "shipped_at", "delivered_at", "updated_at"]
    row.save(update_fields=fields)
    fulfillment_status_apply(
        order_id=order.pk,
        update=BackendStatus(
            status, carrier=row.carrier, tracking_number=row.tracking_number, tracking_url=row.tracking_url
        ),
        source="admin",
        backend="local",
        actor=actor,
    )
    detail = {"local_order_id": str(row.pk)}
    audit_record(actor=actor, action=f"local_order.{status}", target=f"Order/{order.pk}", where="admin", detail=detail)
    return row


@transaction.atomic
def local_orders_phi_purge() -> int:
    """Remove the ship-to and contact (PHI) from the payload and confirmation of local orders whose order's PHI
    was purged (``Order.phi_purged_at``, ``orders_phi_purge``), keeping ``PAYLOAD_KEPT`` and the delivery
    preference, and set ``phi_purged_at``; return how many. One ``retention.purge`` audit row with the count
    (docs/reliability.md "Retention"). Run daily by beat after the orders' purge
    (``healthcommerce.fulfillment.tasks.purge``); idempotent.
    """
    now = timezone.now()
    references = Order.objects.filter(phi_purged_at__isnull=False).values("reference")
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
