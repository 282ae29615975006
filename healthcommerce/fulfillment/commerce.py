"""``CommerceOrder``: the one allowlisted payload that crosses the integration boundary (docs/architecture.md
"The commerce boundary").

The commerce side receives an opaque order reference, the idempotency key, SKU/name/quantity, ship-to and
contact. Never a diagnosis, note, clinical code (HCPCS/LOINC request code), FHIR id, date of birth or payer:
the fields below are the allowlist, and ``tests/fulfillment/test_commerce.py`` proves nothing else crosses.
"""

from dataclasses import asdict, dataclass
from typing import Any

from healthcommerce.orders.errors import OrderIncomplete
from healthcommerce.orders.models import Order


@dataclass(frozen=True)
class CommerceItem:
    """One line: the catalog SKU, its display name and a quantity (units, >= 1)."""

    sku: str
    name: str
    quantity: int


@dataclass(frozen=True)
class ShipTo:
    """A postal address; ``country`` is ISO 3166-1 alpha-2 (e.g. ``US``)."""

    name: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str


@dataclass(frozen=True)
class Contact:
    """How the commerce side reaches the recipient; either may be empty."""

    email: str
    phone: str


@dataclass(frozen=True)
class CommerceOrder:
    """The minimized order sent to a commerce backend."""

    order_reference: str
    idempotency_key: str
    items: tuple[CommerceItem, ...]
    ship_to: ShipTo
    contact: Contact

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: ``{"order_reference", "idempotency_key", "items": [{"sku", "name",
        "quantity"}], "ship_to": {...}, "contact": {"email", "phone"}}``."""
        data = asdict(self)
        data["items"] = [dict(item) for item in data["items"]]
        return data


@dataclass(frozen=True)
class Confirmation:
    """What the patient decided when confirming: a corrected ``ship_to`` (``None`` = the signed one stands) and a
    ``delivery_preference`` (``standard``, ``leave_at_door``, ``signature`` or empty). Nothing else crosses."""

    ship_to: ShipTo | None
    delivery_preference: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ship_to": {...} | None, "delivery_preference": str}``."""
        return asdict(self)


def commerce_confirmation_build(order: Order) -> Confirmation:
    """Return the ``Confirmation`` for ``order``: ``Order.patient_ship_to`` when the patient corrected the
    address, and ``Order.delivery_preference``. Raises ``OrderIncomplete`` for a corrected address without the
    fields a carrier needs."""
    ship_to = _ship_to_build(order, order.patient_ship_to) if order.patient_ship_to else None
    return Confirmation(ship_to=ship_to, delivery_preference=order.delivery_preference)


def _part(raw: dict[str, Any], key: str, default: str = "") -> str:
    """``raw[key]`` as stripped text; ``default`` when it is missing or empty."""
    return str(raw.get(key) or default).strip()


def _ship_to_build(order: Order, raw_address: dict[str, Any] | None = None) -> ShipTo:
    """Map ``raw_address`` or else the order's ship-to at hand-off: ``Order.ehr_ship_to`` (re-read from the EHR just
    before fulfilment, ADR 0022) or the signed ``Order.ship_to`` (FHIR-Address-like: ``line`` list, ``city``,
    ``state``, ``postal_code``, ``country``)."""
    raw = raw_address if raw_address is not None else (order.ehr_ship_to or order.ship_to or {})
    lines = [str(line).strip() for line in raw.get("line") or [] if str(line).strip()]
    ship_to = ShipTo(
        name=order.patient_name.strip(),
        line1=lines[0] if lines else "",
        line2=", ".join(lines[1:]),
        city=_part(raw, "city"),
        state=_part(raw, "state"),
        postal_code=_part(raw, "postal_code"),
        country=_part(raw, "country", "US").upper(),
    )
    if not (ship_to.name and ship_to.line1 and ship_to.city and ship_to.postal_code):
        raise OrderIncomplete("The order has no complete ship-to address.", code="ship_to_incomplete")
    return ship_to


def commerce_order_build(*, order: Order, idempotency_key: str) -> CommerceOrder:
    """Return the minimized ``CommerceOrder`` for ``order``, built field by field from the allowlist.

    Raises ``OrderIncomplete`` (a permanent error) when the order has no product, a quantity below 1 or no
    usable ship-to address.
    """
    if order.product is None:
        raise OrderIncomplete("The order has no product.", code="product_missing")
    if order.quantity < 1:
        raise OrderIncomplete("The order quantity must be at least 1.", code="quantity_invalid")
    return CommerceOrder(
        order_reference=order.reference,
        idempotency_key=idempotency_key,
        items=(CommerceItem(sku=order.product.sku, name=order.product.name, quantity=order.quantity),),
        ship_to=_ship_to_build(order),
        contact=Contact(email=order.contact_email.strip(), phone=order.contact_phone.strip()),
    )
