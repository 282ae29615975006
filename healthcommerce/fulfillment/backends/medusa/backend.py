"""The ``medusa`` backend: each signed order becomes a Medusa 2 order (a draft order, then converted), with its
items matched by variant SKU, idempotent on a display id stored on the Medusa side (docs/adr/0007).

Only the ``CommerceOrder`` crosses (docs/architecture.md "The commerce boundary"): the recipient's name, the
ship-to address, email and phone, the SKUs and quantities, and in the order's metadata our reference and the
idempotency key. Source for every route: Medusa V2 Admin API Reference, sections "Draft Orders", "Orders",
"Product Variants", "Regions" and "Shipping Options".
"""

import hashlib
from collections.abc import Mapping
from typing import Any

from django.core.checks import CheckMessage
from django.utils import timezone

from healthcommerce.fulfillment.backends.base import (
    BackendStatus,
    CommerceBackend,
    PermanentBackendError,
    StatusEvent,
    SubmitResult,
    url_check,
)
from healthcommerce.fulfillment.backends.inbound import secret_errors, standard_status_events
from healthcommerce.fulfillment.backends.medusa.client import (
    CONFIRMED_KEY,
    DISPLAY_ID_KEY,
    IDEMPOTENCY_KEY,
    REFERENCE_KEY,
    MedusaClient,
    medusa_client,
)
from healthcommerce.fulfillment.commerce import CommerceItem, CommerceOrder, Confirmation, ShipTo

ORDER_FIELDS = "id,status,custom_display_id,metadata,fulfillment_status,shipping_address.phone"
DELIVERY_PREFERENCE_KEY = "healthcommerce_delivery_preference"
STATUS_FIELDS = ORDER_FIELDS + ",fulfillments.labels.tracking_number,fulfillments.labels.tracking_url"
# Medusa fulfillment statuses, most advanced first, and what this app calls them (LocalCommerceOrder.Status).
_SHIPPING_STATUS = {
    "delivered": "delivered",
    "partially_delivered": "shipped",
    "shipped": "shipped",
    "partially_shipped": "shipped",
}


def medusa_display_id(order: CommerceOrder) -> str:
    """Return the Medusa ``custom_display_id`` for ``order``: ``<reference>-<8 hex of sha256(idempotency key)>``.

    One per submit (an order's new version has a new key, so a new Medusa order), unique on the Medusa side,
    and it starts with the reference a merchant searches for (``HC-7K2M9XQ4PZ-3fa1c2d9``).
    """
    digest = hashlib.sha256(order.idempotency_key.encode()).hexdigest()[:8]
    return f"{order.order_reference}-{digest}"


def _address(ship_to: ShipTo, phone: str) -> dict[str, str]:
    """Map ``ShipTo`` to a Medusa address: the name split at its last space, ``province`` = state, lower-case
    ISO 3166-1 alpha-2 ``country_code`` (Admin API "Draft Orders", ``shipping_address``)."""
    first, _, last = ship_to.name.strip().rpartition(" ")
    if not first:
        first, last = last, ""
    return {
        "first_name": first,
        "last_name": last,
        "address_1": ship_to.line1,
        "address_2": ship_to.line2,
        "city": ship_to.city,
        "province": ship_to.state,
        "postal_code": ship_to.postal_code,
        "country_code": ship_to.country.lower(),
        "phone": phone,
    }


def _first_label(found: dict[str, Any]) -> dict[str, Any]:
    """The first shipping label with a tracking number among a Medusa order's ``fulfillments``, or ``{}``."""
    for fulfillment in found.get("fulfillments") or []:
        labels = fulfillment.get("labels") if isinstance(fulfillment, dict) else None
        for label in labels or []:
            if isinstance(label, dict) and label.get("tracking_number"):
                return label
    return {}


class MedusaCommerceBackend(CommerceBackend):
    """Create, confirm, cancel and read orders on a Medusa 2 server through its Admin API.

    Options (``settings.COMMERCE_BACKENDS["medusa"]["OPTIONS"]``, environment ``MEDUSA_<option>``): ``URL`` and
    ``API_KEY`` (required), ``REGION_ID`` (else the first region that ships to the order's country),
    ``SALES_CHANNEL_ID`` (else the store's default sales channel), ``SHIPPING_OPTION_ID`` (else no shipping
    method: the merchant picks one), ``SHIPPING_PROFILE_ID`` (the catalog sync's; else Medusa's default) and
    ``STATUS_SECRET`` (``whsec_``: what Medusa's status subscriber signs with).
    """

    name = "medusa"

    def __init__(self, options: Mapping[str, Any] | None = None, client: MedusaClient | None = None) -> None:
        super().__init__(options)
        self.client = client or medusa_client(self.options)
        self.region_id = str(self.options.get("REGION_ID") or "")
        self.sales_channel_id = str(self.options.get("SALES_CHANNEL_ID") or "")
        self.shipping_option_id = str(self.options.get("SHIPPING_OPTION_ID") or "")

    @classmethod
    def check(cls, options: Mapping[str, Any], *, selected: bool) -> list[CheckMessage]:
        """The base checks when ``selected`` (``URL`` and ``API_KEY`` set: ``E101``), then ``URL`` against the
        outbound rules (``E102``: https, or http to this machine) and, selected or not, ``STATUS_SECRET`` when set
        (``E103``: ``whsec_<base64>``)."""
        errors = super().check(options, selected=selected)
        if selected and not errors:
            errors += url_check(str(options.get("URL") or ""), setting="MEDUSA_URL")
        return errors + secret_errors(str(options.get("STATUS_SECRET") or ""), setting="MEDUSA_STATUS_SECRET")

    def submit(self, order: CommerceOrder) -> SubmitResult:
        """Return the Medusa order for this submit, creating it if Medusa holds none.

        Looks up an order or draft order whose ``custom_display_id`` is ``medusa_display_id(order)`` first and
        returns it (a draft left by an interrupted submit is converted first). Otherwise creates a draft order
        (``POST /admin/draft-orders``: region, sales channel, items by variant id found by SKU, shipping address,
        email, metadata with our reference, key and display id) and converts it
        (``POST /admin/draft-orders/{id}/convert-to-order``). When a concurrent submit won the unique display
        id, the create is refused and the winner's order is returned. Idempotent; not one transaction (three to
        five HTTP calls). Returns ``SubmitResult(external_id=<Medusa order id, "order_...">)``.

        Raises ``PermanentBackendError`` for an unknown SKU (``medusa_sku_unknown``), no region for the
        country (``medusa_region_missing``) or a refused request (``http_400``/``401``/``403``/``404``/``422``),
        and ``TemporaryBackendError`` for timeouts, connection errors, 429 and 5xx (``client.request``).
        """
        display_id = medusa_display_id(order)
        found = self._find(display_id)
        if found is None:
            body = self._draft_order_body(order, display_id)
            try:
                found = self.client.post("/admin/draft-orders", body)["draft_order"]
            except PermanentBackendError:
                found = self._find(display_id)  # a concurrent submit created it: custom_display_id is unique
                if found is None:
                    raise
        if found.get("status") == "draft":
            self.client.post(f"/admin/draft-orders/{found['id']}/convert-to-order")
        return SubmitResult(external_id=str(found["id"]))

    def confirm(self, external_id: str, confirmation: Confirmation | None = None) -> None:
        """Record that the patient confirmed the order: set ``metadata.healthcommerce_confirmed_at`` (ISO 8601,
        UTC) and ``metadata.healthcommerce_delivery_preference`` on Medusa order ``external_id``, and replace its
        ``shipping_address`` when the patient corrected it (``POST /admin/orders/{id}``; Medusa merges metadata
        keys).

        Idempotent: an order already confirmed is left as it is. Raises ``PermanentBackendError``
        (``medusa_order_canceled`` for a cancelled order, ``not_found`` for an unknown id) or
        ``TemporaryBackendError``.
        """
        found = self._order(external_id)
        if found.get("status") == "canceled":
            raise PermanentBackendError(
                "The order was cancelled on the commerce platform.", code="medusa_order_canceled"
            )
        if (found.get("metadata") or {}).get(CONFIRMED_KEY):
            return
        metadata = {CONFIRMED_KEY: timezone.now().isoformat()}
        body: dict[str, Any] = {"metadata": metadata}
        if confirmation is not None:
            if confirmation.delivery_preference:
                metadata[DELIVERY_PREFERENCE_KEY] = confirmation.delivery_preference
            if confirmation.ship_to is not None:
                phone = str((found.get("shipping_address") or {}).get("phone") or "")
                body["shipping_address"] = _address(confirmation.ship_to, phone)
        self.client.post(f"/admin/orders/{external_id}", body)

    def cancel(self, external_id: str) -> None:
        """Cancel Medusa order ``external_id`` (``POST /admin/orders/{id}/cancel``).

        Idempotent: a cancelled order is left as it is. Raises ``PermanentBackendError`` (``too_late`` once
        the order is shipped or delivered, or when Medusa refuses because it has fulfilments that are not
        cancelled; ``not_found`` for an unknown id) or ``TemporaryBackendError``.
        """
        found = self._order(external_id)
        if found.get("status") == "canceled":
            return
        too_late = PermanentBackendError("The order can no longer be cancelled.", code="too_late")
        if str(found.get("fulfillment_status") or "") in _SHIPPING_STATUS:
            raise too_late
        try:
            self.client.post(f"/admin/orders/{external_id}/cancel")
        except PermanentBackendError as exc:
            if exc.code == "http_400":  # Medusa: "All fulfillments must be canceled before canceling an order"
                raise too_late from exc
            raise

    def status(self, external_id: str) -> BackendStatus:
        """Return where Medusa order ``external_id`` is, in this app's words: ``received``, ``confirmed``,
        ``shipped``, ``delivered`` or ``cancelled``, with the tracking number and URL of its first shipping label.

        From ``GET /admin/orders/{id}``: ``status == "canceled"`` is ``cancelled``; ``fulfillment_status``
        ``delivered`` is ``delivered``, ``shipped``/``partially_shipped``/``partially_delivered`` are ``shipped``;
        otherwise ``confirmed`` once ``confirm`` ran, else ``received``. Medusa names no carrier (its fulfillment
        provider is a module id), so ``carrier`` stays empty. Raises ``PermanentBackendError`` (``not_found`` for an
        unknown id) or ``TemporaryBackendError``.
        """
        found = self._order(external_id, fields=STATUS_FIELDS)
        if found.get("status") == "canceled":
            return BackendStatus("cancelled")
        shipping = _SHIPPING_STATUS.get(str(found.get("fulfillment_status") or ""))
        if shipping:
            first = _first_label(found)
            return BackendStatus(
                shipping,
                tracking_number=str(first.get("tracking_number") or "")[:100],
                tracking_url=str(first.get("tracking_url") or "")[:500],
            )
        return BackendStatus("confirmed" if (found.get("metadata") or {}).get(CONFIRMED_KEY) else "received")

    def status_events(self, body: bytes, headers: Any) -> list[StatusEvent]:
        """Verify a status event our subscriber inside Medusa pushed
        (commerce/medusa/src/subscribers/healthcommerce-status.ts: shipped, delivered, cancelled), signed with the
        ``STATUS_SECRET`` option (Standard Webhooks, ``standard_status_events``). Raises ``InboundRejected``."""
        secret = str(self.options.get("STATUS_SECRET") or "")
        return standard_status_events(body, headers, secret=secret, setting="MEDUSA_STATUS_SECRET")

    def _order(self, external_id: str, *, fields: str = ORDER_FIELDS) -> dict[str, Any]:
        """``GET /admin/orders/{id}`` with ``fields``; a 404 becomes ``PermanentBackendError("not_found")``."""
        try:
            order: dict[str, Any] = self.client.get(f"/admin/orders/{external_id}", fields=fields)["order"]
        except PermanentBackendError as exc:
            if exc.code == "http_404":
                raise PermanentBackendError("The commerce platform has no such order.", code="not_found") from exc
            raise
        return order

    def _find(self, display_id: str) -> dict[str, Any] | None:
        """Return the order, else the draft order, whose ``custom_display_id`` is ``display_id`` (``q`` is a
        substring search over searchable fields, so the match is checked exactly here)."""
        for path, key in (("/admin/orders", "orders"), ("/admin/draft-orders", "draft_orders")):
            rows = self.client.get(path, q=display_id, fields=ORDER_FIELDS, limit=10)[key]
            for row in rows:
                if row.get("custom_display_id") == display_id:
                    found: dict[str, Any] = row
                    return found
        return None

    def _variant_ids(self, items: tuple[CommerceItem, ...]) -> dict[str, str]:
        """Return ``{sku: variant id}`` (``GET /admin/product-variants?sku=``); raise ``PermanentBackendError``
        (``medusa_sku_unknown``) when a SKU has no variant (run ``manage.py medusa_sync_catalog``)."""
        variant_ids: dict[str, str] = {}
        for item in items:
            rows = self.client.get("/admin/product-variants", sku=item.sku, fields="id,sku", limit=2)["variants"]
            match = [row for row in rows if row.get("sku") == item.sku]
            if not match:
                raise PermanentBackendError(
                    "A product of the order is not in the commerce platform's catalog.", code="medusa_sku_unknown"
                )
            variant_ids[item.sku] = str(match[0]["id"])
        return variant_ids

    def _region(self, country: str) -> tuple[str, str]:
        """Return ``(region id, currency code)``: ``MEDUSA_REGION_ID``'s, else the first region listing
        ``country``; raise ``PermanentBackendError`` (``medusa_region_missing``) when none does."""
        fields = "id,currency_code,countries.iso_2"
        if self.region_id:
            region = self.client.get(f"/admin/regions/{self.region_id}", fields=fields)["region"]
            return str(region["id"]), str(region["currency_code"])
        for region in self.client.get("/admin/regions", fields=fields, limit=100)["regions"]:
            if country.lower() in {c.get("iso_2") for c in region.get("countries") or []}:
                return str(region["id"]), str(region["currency_code"])
        raise PermanentBackendError("No commerce region ships to this country.", code="medusa_region_missing")

    def _shipping_methods(self, currency_code: str) -> list[dict[str, Any]]:
        """Return the draft order's shipping method for ``MEDUSA_SHIPPING_OPTION_ID`` at the option's flat price
        in ``currency_code`` (major units, as Medusa stores amounts), or ``[]`` when none is configured."""
        if not self.shipping_option_id:
            return []
        option = self.client.get(
            f"/admin/shipping-options/{self.shipping_option_id}", fields="id,name,prices.amount,prices.currency_code"
        )["shipping_option"]
        prices = [p for p in option.get("prices") or [] if p.get("currency_code") == currency_code]
        amount = prices[0]["amount"] if prices else 0
        return [{"shipping_option_id": option["id"], "name": option.get("name") or "Shipping", "amount": amount}]

    def _draft_order_body(self, order: CommerceOrder, display_id: str) -> dict[str, Any]:
        """Build ``POST /admin/draft-orders``'s body from the ``CommerceOrder`` fields only."""
        variant_ids = self._variant_ids(order.items)
        region_id, currency_code = self._region(order.ship_to.country)
        body: dict[str, Any] = {
            "region_id": region_id,
            "email": order.contact.email or None,
            "items": [{"variant_id": variant_ids[item.sku], "quantity": item.quantity} for item in order.items],
            "shipping_address": _address(order.ship_to, order.contact.phone),
            "shipping_methods": self._shipping_methods(currency_code),
            "no_notification_order": True,  # this app sends the patient's link itself
            "metadata": {
                REFERENCE_KEY: order.order_reference,
                IDEMPOTENCY_KEY: order.idempotency_key,
                DISPLAY_ID_KEY: display_id,
            },
        }
        if self.sales_channel_id:
            body["sales_channel_id"] = self.sales_channel_id
        return body
