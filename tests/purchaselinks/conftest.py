"""Fixtures for purchase-link tests: a submitted order and a freshly issued link (with its raw token)."""

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import sms
from django.core.cache import cache
from django.utils import timezone

from healthcommerce.catalog.models import HCPCS, Payer, PlanType, Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import payer_columns
from healthcommerce.outbox import tasks
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue

PATIENT_NAME = "Mateo Okafor"
BIRTH_DATE = date(1961, 4, 3)
SHIP_TO = {
    "line": ["12 Harbor View Rd", "Apt 4B"],
    "city": "Portland",
    "state": "ME",
    "postal_code": "04101",
    "country": "US",
}


PATIENT_MOBILE = "(207) 555-0143"
PATIENT_MOBILE_E164 = "+12075550143"


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test publishes to a real broker; the per-IP counters and the locmem SMS outbox start empty."""
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda *args, **kwargs: None)
    cache.clear()
    sms.outbox = []  # type: ignore[attr-defined]


@pytest.fixture
def make_order(db: None) -> Callable[..., Order]:
    return order_factory()


def order_factory() -> Callable[..., Order]:
    """A site and a product, and a function making submitted orders for them (``make(**overrides)``)."""
    site = EHRSite.objects.create(name="Harbor clinic", iss="https://ehr.harbor.example/fhir/r4", client_id="hc-links")
    Payer.objects.create(site=site, name="Casco Bay Medicaid", plan_type=PlanType.MEDICAID)  # the seeded rule covers it
    product = Product.objects.create(sku="SLEEP-KIT-9", name="Home sleep test kit", kind=Product.Kind.KIT)

    def make(**overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "site": site,
            "status": Order.Status.SUBMITTED,
            "patient_fhir_id": "eq081-VQEgP8drUUqCWzHfw3",
            "request_reference": "ServiceRequest/sr-442",
            "request_system": HCPCS,
            "request_code": "G0399",
            "request_display": "Home sleep test, type III portable monitor",
            "product": product,
            "quantity": 1,
            "order_date": date(2026, 11, 20),
            "patient_name": PATIENT_NAME,
            "patient_birth_date": BIRTH_DATE,
            "ship_to": SHIP_TO,
            "contact_email": "mateo.okafor@example.net",
            "contact_phone": PATIENT_MOBILE,
            "payer_name": "Casco Bay Medicaid",
            "payer_member_id": "CBM-55501",
            "signed_by": "Practitioner/pra77",
            "signed_at": timezone.now(),
        }
        fields.update(overrides)
        if "payer" not in overrides:  # the payer record the payer name names, as pre-fill and intake set it
            fields |= payer_columns(site=fields["site"], values=fields)
        return Order.objects.create(**fields)

    return make


@pytest.fixture
def order(make_order: Callable[..., Order]) -> Order:
    return make_order()


@pytest.fixture
def issued(order: Order) -> tuple[PurchaseLink, str]:
    """A new link for ``order`` and its raw token."""
    return purchase_link_issue(order=order)
