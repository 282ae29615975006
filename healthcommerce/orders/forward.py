"""Forward-only status, written once: the order's own status machine and the commerce backend's fulfillment
status, and how the first follows the second (docs/architecture.md "Order status").

Pure tables and functions on the status strings (``orders.models.Order.Status`` and ``FulfillmentStatus``
values), no database: ``orders.transitions`` moves orders with them, ``fulfillment.status`` applies what a backend
reports with them, and the ``local`` backend moves its own rows with them (it imports no model of this app).

- The order: ``draft -> signed -> submitted -> fulfilled``, plus ``failed`` (re-drivable to ``submitted``) and
  ``cancelled``; never back (``ALLOWED``).
- The fulfillment status: ``received < confirmed < shipped < delivered``; ``cancelled`` only before shipping, and
  then final (``fulfillment_step``).
- The relation: once shipped or delivered, a ``submitted`` order is ``fulfilled``; a cancel at the backend cancels
  the order where its machine allows (``order_status_following``). Shipping an order we cancelled is a conflict.
"""

# The order's status machine: from each status, the statuses it may move to.
ALLOWED: dict[str, set[str]] = {
    "draft": {"signed", "held", "cancelled"},
    "held": {"signed", "cancelled"},  # an order signed in the EHR, completed by staff at intake (ADR 0024)
    "signed": {"submitted", "failed", "cancelled"},
    "submitted": {"fulfilled", "failed", "cancelled"},
    "failed": {"submitted"},  # an admin may re-drive a dead-lettered order; it still moves forward
    "fulfilled": set(),
    "cancelled": set(),
}

# The fulfillment statuses in the order they are reached ("" = nothing reported yet); ``cancelled`` is apart.
FULFILLMENT_ORDER = ("", "received", "confirmed", "shipped", "delivered")
CANCELLED = "cancelled"
SHIPPING = frozenset({"shipped", "delivered"})
FULFILLMENT_STATUSES = frozenset({*FULFILLMENT_ORDER[1:], CANCELLED})

# What ``fulfillment_step`` answers.
FORWARD = "forward"
STALE = "stale"
CONFLICT = "conflict"


def fulfillment_step(current: str, new: str, *, order_cancelled: bool = False) -> str:
    """Return how reported fulfillment status ``new`` relates to ``current``: ``forward`` (apply it), ``stale`` (the
    same or older: change nothing) or ``conflict`` (impossible: ``cancelled`` after shipping, or shipping an order
    cancelled at the backend or, ``order_cancelled``, by us). Raises ``ValueError`` for a status not in
    ``FULFILLMENT_STATUSES``."""
    if new not in FULFILLMENT_STATUSES:
        raise ValueError(f"Unknown fulfillment status {new!r}.")
    if new == CANCELLED:
        if current in SHIPPING:
            return CONFLICT
        return STALE if current == CANCELLED else FORWARD
    if new in SHIPPING and (current == CANCELLED or order_cancelled):
        return CONFLICT
    if current == CANCELLED:
        return STALE
    return FORWARD if FULFILLMENT_ORDER.index(new) > FULFILLMENT_ORDER.index(current or "") else STALE


def order_status_following(order_status: str, fulfillment_status: str) -> str | None:
    """Return the status the order must move to because of its ``fulfillment_status`` (``fulfilled`` once shipped
    or delivered, from ``submitted``; ``cancelled`` when the backend cancelled and ``ALLOWED`` permits), or
    ``None`` when it stays."""
    if fulfillment_status in SHIPPING and order_status == "submitted":
        return "fulfilled"
    if fulfillment_status == CANCELLED and CANCELLED in ALLOWED.get(order_status, set()):
        return CANCELLED
    return None
