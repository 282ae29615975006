"""Tell the patient when the order ships, is delivered or is cancelled by the supplier: the subscriber
``purchaselinks.notify_status`` of ``order.status_changed`` (published by ``fulfillment.status``; ADR 0008).

Email and text go through ``notify`` (ADR 0010), each channel once: a channel already recorded on the timeline
for this status (``status_notified`` with ``status`` and ``channel``) is never sent again, so a retry after one
channel failed sends only the other. Messages carry the order reference, the carrier, the tracking number and an
https tracking URL, the clinic and its number (``notify.email_context``); never the product, a diagnosis or the
patient's name (a text shows on a lock screen, a mailbox may be shared). The one exception is the confirmation
email: the receipt (``receipt.order_receipt``: item, amount, card, delivery window) for a patient who just gave
their date of birth, greeted by name (``patient_email_send(personal=True)``).
"""

import logging
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils.translation import gettext_lazy

from healthcommerce.audit.services import audit_record
from healthcommerce.core.links import https_url
from healthcommerce.orders.events import order_for_subject
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.errors import NotificationFailed, NotSendable
from healthcommerce.purchaselinks.notify import patient_email_send, patient_sms_send
from healthcommerce.purchaselinks.receipt import order_receipt

logger = logging.getLogger(__name__)

ACTOR = "system:purchaselinks"
# Lazy: notify translates them into the patient's language.
SUBJECTS = {
    "confirmed": gettext_lazy("Your order is confirmed"),
    "shipped": gettext_lazy("Your order has shipped"),
    "delivered": gettext_lazy("Your order was delivered"),
    "cancelled": gettext_lazy("Your order was cancelled"),
}


def _already(order: Order, status: str) -> set[str]:
    """The channels already used to tell ``order``'s patient about ``status``."""
    events = OrderEvent.objects.filter(order=order, kind="status_notified", detail__status=status)
    return {str(event.detail.get("channel")) for event in events}


def status_notify(message: OutboxMessage) -> None:
    """Handle ``order.status_changed`` (payload ``{"status": "shipped" | "delivered" | "cancelled"}``): email and
    text the patient, each channel once.

    A channel that does not apply (no address, texts off for the site, not a mobile) is skipped without a
    record. Raises ``NotificationFailed`` (temporary; the outbox retries the failed channel only) after both
    channels were tried. Unknown statuses and orders without a purchase link sent (the patient never heard of
    the order) send nothing.
    """
    _notify(message, str((message.payload or {}).get("status") or ""))


def confirmation_notify(message: OutboxMessage) -> None:
    """Handle ``order.patient_confirmed``: tell the patient the order is confirmed (and paid, when it was), by
    email and text, each channel once, as ``status_notify`` does. Raises ``NotificationFailed`` (temporary)."""
    _notify(message, "confirmed")


def _notify(message: OutboxMessage, status: str) -> None:
    """Send the notice for ``status`` about the message's order over each channel not used yet for it."""
    order = order_for_subject(message.subject).select_related("site").get()
    reached = order.purchase_links.filter(Q(sent_at__isnull=False) | Q(sms_sent_at__isnull=False)).exists()
    if status not in SUBJECTS or not reached:
        return
    context: dict[str, Any] = {
        "clinic": order.site.name,
        "reference": order.reference,
        "status": status,
        "carrier": order.carrier,
        "tracking_number": order.tracking_number,
        "tracking_url": https_url(order.tracking_url),
        "app_url": settings.APP_BASE_URL.rstrip("/"),
        "paid": False,
    }
    if status == "confirmed":  # the receipt; the item is named in the patient's language by notify
        receipt = asdict(order_receipt(order=order, language=settings.LANGUAGE_CODE))
        context |= {key: value for key, value in receipt.items() if key not in ("item", "reference")}
    done = _already(order, status)
    failed: NotificationFailed | None = None
    for channel in ("email", "sms"):
        if channel in done:
            continue
        try:
            if channel == "email":
                patient_email_send(
                    order=order,
                    subject=SUBJECTS[status],
                    template="purchaselinks/messages/status_email.txt",
                    context=context,
                    personal=status == "confirmed",
                )
            else:
                patient_sms_send(order=order, template="purchaselinks/messages/status_sms.txt", context=context)
        except NotSendable:
            continue
        except NotificationFailed as exc:
            failed = failed or exc
            continue
        detail = {"status": status, "channel": channel}
        order_event_add(order=order, kind="status_notified", actor=ACTOR, detail=detail)
        audit_record(actor=ACTOR, action="patient.notify", target=f"Order/{order.pk}", where=channel, detail=detail)
    if failed is not None:
        raise failed
