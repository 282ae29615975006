"""The order events stages hand over through the outbox (ADR 0008): topic names and the subject of an order.

Defined here, below every stage that publishes or subscribes, so no stage imports a later one: orders
publishes ``order.signed``; fulfillment subscribes to it and publishes ``order.submitted``; purchase links
subscribe to that and publish ``order.patient_confirmed``, which fulfillment passes to the backend; a cancelled
order publishes ``order.cancelled``, which fulfillment passes to the backend too. When the backend reports the
order shipped, delivered or cancelled (a status webhook, the reconciliation), fulfillment publishes
``order.status_changed`` (payload ``{"status": ...}``) for the patient's notification. A signed order at a site
with write-back on also publishes ``order.writeback`` (same key), which orders' own ``orders.writeback``
subscriber handles (ADR 0022); at a site with it off no row is written at all.
"""

from django.db.models import QuerySet

from healthcommerce.orders.models import Order

TOPIC_ORDER_SIGNED = "order.signed"
TOPIC_ORDER_SUBMITTED = "order.submitted"
TOPIC_PATIENT_CONFIRMED = "order.patient_confirmed"
TOPIC_ORDER_CANCELLED = "order.cancelled"
TOPIC_ORDER_STATUS_CHANGED = "order.status_changed"
TOPIC_ORDER_WRITEBACK = "order.writeback"
# An HL7 v2 NW order group accepted at intake (subject ``HL7Placer/<digest of site and placer number>``, payload
# ``{"message": IntakeMessage id, "group", "reference"}``): orders' own ``orders.hl7_order`` subscriber creates the
# order from the stored message (ADR 0024).
TOPIC_HL7_ORDER = "order.hl7_received"
# A signed order whose coverage is checked with its payer (issue 21, ADR 0026): orders' own ``orders.eligibility``
# subscriber asks through the site's clearinghouse (``orders.eligibility``); only at a site with checks on, for a
# payer record with a payer id and an order with a member id.
TOPIC_ORDER_ELIGIBILITY = "order.eligibility"


def order_subject(order: Order) -> str:
    """Return the outbox ``subject`` of ``order``: ``Order/<id>`` (no PHI)."""
    return f"Order/{order.pk}"


def order_for_subject(subject: str) -> "QuerySet[Order]":
    """Return the orders (zero or one) an outbox ``subject`` (``Order/<id>``) names, as a queryset to narrow."""
    return Order.objects.filter(pk=subject.removeprefix("Order/"))


def orders_for_subjects(subjects: list[str]) -> "QuerySet[Order]":
    """Return the orders the outbox ``subjects`` (``Order/<id>`` each) name, as a queryset to narrow."""
    return Order.objects.filter(pk__in=[subject.removeprefix("Order/") for subject in subjects])


def order_event_key(order: Order) -> str:
    """Return the idempotency key of ``order``'s current version: ``<order id>:v<version>``. It is also the key
    the commerce backend sees, so a re-drive can never create a second order there."""
    return f"{order.pk}:v{order.version}"
