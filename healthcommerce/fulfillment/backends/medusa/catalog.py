"""Sync ``catalog.Product`` rows into Medusa 2 as products with one variant each, idempotently by SKU.

A product becomes a Medusa product (title = name, description, status ``published`` when active, else
``draft``, which Medusa refuses to order) with one variant (SKU, ``manage_inventory`` off: stock is the
merchant's business, one USD price). The HCPCS code and the code mappings stay here: they are clinical
(docs/architecture.md "The commerce boundary"). Source: Medusa V2 Admin API Reference, "Products" and
"Product Variants"; amounts are in major units (``12.5`` is $12.50), per Medusa's "Prices" guide.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from healthcommerce.catalog.models import Product
from healthcommerce.fulfillment.backends.base import PermanentBackendError
from healthcommerce.fulfillment.backends.medusa.client import SKU_KEY, MedusaClient, medusa_options

CURRENCY = "usd"
VARIANT_FIELDS = (
    "id,sku,product_id,prices.id,prices.amount,prices.currency_code,product.title,product.description,product.status"
)


@dataclass
class CatalogSyncReport:
    """What one sync did, by SKU: ``created``, ``updated`` (product fields or price changed), ``unchanged``."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _amount(product: Product) -> Decimal:
    """``unit_price_cents`` as Medusa's major-unit amount (``12950`` -> ``Decimal("129.5")``)."""
    return (Decimal(product.unit_price_cents) / 100).normalize()


def _handle(sku: str) -> str:
    """A URL handle from the SKU (``CGM-STARTER-1`` -> ``cgm-starter-1``); Medusa keeps handles unique."""
    return re.sub(r"[^a-z0-9]+", "-", sku.lower()).strip("-")


def _product_fields(product: Product) -> dict[str, Any]:
    return {
        "title": product.name,
        "description": product.description,
        "status": "published" if product.is_active else "draft",
    }


def _shipping_profile_id(client: MedusaClient) -> str:
    """``MEDUSA_SHIPPING_PROFILE_ID``, else Medusa's ``default`` shipping profile (``GET /admin/shipping-profiles``);
    raise ``PermanentBackendError`` (``medusa_shipping_profile_missing``) when it has none."""
    configured = str(medusa_options().get("SHIPPING_PROFILE_ID") or "")
    if configured:
        return configured
    profiles = client.get("/admin/shipping-profiles", type="default", fields="id", limit=1)["shipping_profiles"]
    if not profiles:
        raise PermanentBackendError("Medusa has no default shipping profile.", code="medusa_shipping_profile_missing")
    return str(profiles[0]["id"])


def _create(client: MedusaClient, product: Product, shipping_profile_id: str) -> None:
    body: dict[str, Any] = {
        **_product_fields(product),
        "handle": _handle(product.sku),
        "shipping_profile_id": shipping_profile_id,
        "options": [{"title": "Default", "values": ["Default"]}],
        "variants": [
            {
                "title": "Default",
                "sku": product.sku,
                "manage_inventory": False,
                "options": {"Default": "Default"},
                "prices": [{"currency_code": CURRENCY, "amount": float(_amount(product))}],
            }
        ],
        "metadata": {SKU_KEY: product.sku},
    }
    sales_channel_id = str(medusa_options().get("SALES_CHANNEL_ID") or "")
    if sales_channel_id:
        body["sales_channels"] = [{"id": sales_channel_id}]
    client.post("/admin/products", body)


def _update(client: MedusaClient, product: Product, variant: dict[str, Any]) -> bool:
    """Bring the Medusa product and its variant's USD price in line with ``product``; return whether it changed."""
    changed = False
    current = variant.get("product") or {}
    wanted = _product_fields(product)
    if any((current.get(key) or "") != value for key, value in wanted.items()):
        client.post(f"/admin/products/{variant['product_id']}", wanted)
        changed = True
    prices = [p for p in variant.get("prices") or [] if p.get("currency_code") == CURRENCY]
    amount = _amount(product)
    if not prices or Decimal(str(prices[0].get("amount"))) != amount:
        price: dict[str, Any] = {"currency_code": CURRENCY, "amount": float(amount)}
        if prices:
            price["id"] = prices[0]["id"]
        client.post(f"/admin/products/{variant['product_id']}/variants/{variant['id']}", {"prices": [price]})
        changed = True
    return changed


def medusa_catalog_sync(*, client: MedusaClient, products: Iterable[Product]) -> CatalogSyncReport:
    """Create or update one Medusa product per ``Product``, matched by variant SKU; return what changed.

    Idempotent: a second run with the same catalog sends no write and reports every SKU ``unchanged``.
    Products are never deleted on the Medusa side; a product made inactive here becomes ``draft`` there.
    Raises ``TemporaryBackendError`` or ``PermanentBackendError`` (``MedusaClient.request``); SKUs before
    the failing one are already synced.
    """
    report = CatalogSyncReport()
    shipping_profile_id = ""
    for product in products:
        rows = client.get("/admin/product-variants", sku=product.sku, fields=VARIANT_FIELDS, limit=2)["variants"]
        match = [row for row in rows if row.get("sku") == product.sku]
        if not match:
            shipping_profile_id = shipping_profile_id or _shipping_profile_id(client)
            _create(client, product, shipping_profile_id)
            report.created.append(product.sku)
        elif _update(client, product, match[0]):
            report.updated.append(product.sku)
        else:
            report.unchanged.append(product.sku)
    return report
