"""Fixtures for fulfillment tests: an EHR site, a product, a signed order, its outbox message, and a
recorder in place of the broker (no test publishes to a real queue)."""

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from django.utils import timezone

from healthcommerce.catalog.models import HCPCS, Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from healthcommerce.outbox import tasks
from healthcommerce.outbox.models import OutboxMessage
from tests.fulfillment.fakes import FAKE_BACKENDS, RecordingBackend
from tests.peers import clearinghouse as clearinghouse_peer
from tests.peers.clearinghouse import StandIn, eligibility_on
from tests.pipeline import signed

# The loopback stand-in clearinghouse, as a fixture of these tests (the boundary site checks eligibility with it).
clearinghouse = clearinghouse_peer.clearinghouse
PATIENT_NAME = "Camila Lopez"
BIRTH_DATE = date(1987, 9, 12)
SHIP_TO = {
    "line": ["7525 Colshire Dr", "Suite 200"],
    "city": "McLean",
    "state": "VA",
    "postal_code": "22102",
    "country": "US",
}


@pytest.fixture
def ful_site(db: None) -> EHRSite:
    return EHRSite.objects.create(
        name="Test clinic", iss="https://fhir.clinic.example/api/FHIR/R4", client_id="hc-test"
    )


@pytest.fixture
def ful_product(db: None) -> Product:
    return Product.objects.create(
        sku="CGM-STARTER-1", name="Glucose monitor starter kit", kind=Product.Kind.DEVICE, hcpcs_code="E2103"
    )


@pytest.fixture
def make_order(ful_site: EHRSite, ful_product: Product) -> Callable[..., Order]:
    def make(**overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "site": ful_site,
            "status": Order.Status.SIGNED,
            "patient_fhir_id": "erXuFYUfucBZaryVksYEcMg3",
            "request_reference": "DeviceRequest/devreq021",
            "request_system": HCPCS,
            "request_code": "K0553",
            "request_display": "Supply allowance for therapeutic continuous glucose monitor",
            "product": ful_product,
            "quantity": 2,
            "order_date": date(2026, 11, 20),
            "patient_name": PATIENT_NAME,
            "patient_birth_date": BIRTH_DATE,
            "practitioner_reference": "Practitioner/pra1234",
            "practitioner_name": "Dr. Ann Hale",
            "practitioner_npi": "1234567893",
            "ship_to": SHIP_TO,
            "contact_email": "camila.lopez@example.org",
            "contact_phone": "+1 703 555 0100",
            "payer_name": "Blue Ridge Health Plan",
            "payer_member_id": "BRH987654321",
            "signed_by": "Practitioner/pra1234",
            "signed_at": timezone.now(),
            "content_hash": "a" * 64,
        }
        fields.update(overrides)
        return Order.objects.create(**fields)

    return make


def clinical_values(order: Order) -> list[str]:
    """Values of ``order`` that must never reach a commerce backend: request codes and references, FHIR ids,
    the practitioner, the date of birth, the payer, the billing code, the signature hash and the site."""
    return [
        order.request_code,
        order.request_display,
        order.request_system,
        order.request_reference,
        "devreq021",
        order.patient_fhir_id,
        order.practitioner_reference,
        order.practitioner_name,
        order.practitioner_npi,
        order.patient_birth_date.isoformat() if order.patient_birth_date else "",
        order.payer_name,
        order.payer_member_id,
        order.product.hcpcs_code if order.product else "",
        order.content_hash,
        str(order.site_id),
    ]


@pytest.fixture
def order(make_order: Callable[..., Order]) -> Order:
    return make_order()


@pytest.fixture
def message(order: Order) -> OutboxMessage:
    """The order's ``order.signed`` row for ``fulfillment.submit``, as ``order_sign`` writes it."""
    return signed(order)


@pytest.fixture(autouse=True)
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record ``outbox.deliver`` and ``outbox.deliver_batch`` publications instead of sending them to a broker;
    returns the message ids (a batch's ids in order)."""
    sent: list[str] = []

    def apply_async(args: tuple[str], **options: Any) -> None:
        sent.append(args[0])

    def apply_async_batch(args: tuple[list[str]], **options: Any) -> None:
        sent.extend(args[0])

    monkeypatch.setattr(tasks.deliver, "apply_async", apply_async)
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", apply_async_batch)
    return sent


def backend_options_set(settings: Any, name: str, **options: Any) -> None:
    """Set options of backend ``name`` in ``settings.COMMERCE_BACKENDS`` (``URL="..."``...), replacing the dicts
    rather than changing them, so pytest-django's ``settings`` fixture restores them after the test."""
    entries = dict(settings.COMMERCE_BACKENDS)
    entry = dict(entries[name])
    entry["OPTIONS"] = {**entry.get("OPTIONS", {}), **options}
    entries[name] = entry
    settings.COMMERCE_BACKENDS = entries


@pytest.fixture
def backend_options(settings: Any) -> Callable[..., None]:
    """``backend_options("webhook", URL=..., SECRET=...)``: set a backend's options for this test."""

    def set_options(name: str, **options: Any) -> None:
        backend_options_set(settings, name, **options)

    return set_options


@pytest.fixture
def use_backend(settings: Any) -> Callable[[str], None]:
    """Switch ``COMMERCE_BACKEND`` to one of the fake backends (``flaky``, ``rejecting``...), each configured in
    ``COMMERCE_BACKENDS`` as any backend is."""
    settings.COMMERCE_BACKENDS = {
        **settings.COMMERCE_BACKENDS,
        **{name: {"BACKEND": path, "OPTIONS": {}} for name, path in FAKE_BACKENDS.items()},
    }
    RecordingBackend.received = []

    def use(name: str) -> None:
        settings.COMMERCE_BACKEND = name

    return use


@pytest.fixture(scope="module")
def boundary_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The sandbox EHR the boundary property tests launch against (its own database copy), for one module."""
    from tests.fulfillment.boundary import boundary_sandbox

    with boundary_sandbox(tmp_path_factory.mktemp("boundary-sandbox")) as ehr:
        yield ehr


@pytest.fixture
def boundary_site(db: None, boundary_ehr: Any, settings: Any, clearinghouse: StandIn) -> EHRSite:
    """An EHR site registered for ``boundary_ehr``, discovered, that checks coverage with the loopback stand-in
    clearinghouse (X12 270/271) for its Medicare payer record (the Da Vinci coverages' payor
    ``Organization/org1234``), so every example's 270 is checked too (tests/coverage/boundary270.py)."""
    from healthcommerce.catalog.models import Payer
    from healthcommerce.ehr.discovery import discover
    from tests.orders.test_fuzz_prefill import CLIENT_ID

    settings.APP_BASE_URL = "http://testserver"
    site = EHRSite.objects.create(name="Boundary sandbox", iss=boundary_ehr.sandbox.fhir_base, client_id=CLIENT_ID)
    discover(site)
    Payer.objects.create(
        site=site, name="Medicare", payer_id="CMS", plan_type="medicare", identifiers="Organization/org1234"
    )
    eligibility_on(site, clearinghouse.x12_url)
    return site
