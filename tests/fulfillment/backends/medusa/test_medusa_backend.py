"""The ``medusa`` backend against a real Medusa 2 server (conftest.py): catalog sync, submit, idempotency,
errors, confirm/cancel/status, and what Medusa stores."""

import json
import secrets
import subprocess
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from healthcommerce.catalog.models import Product
from healthcommerce.fulfillment.backends.base import BackendStatus, PermanentBackendError, TemporaryBackendError
from healthcommerce.fulfillment.backends.medusa.backend import MedusaCommerceBackend, medusa_display_id
from healthcommerce.fulfillment.backends.registry import get_backend
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation, ShipTo, commerce_order_build
from healthcommerce.orders.models import Order
from tests.fulfillment.backends.medusa.conftest import PG_URL, MedusaServer
from tests.fulfillment.conftest import backend_options_set, clinical_values
from tests.servers import free_port

pytestmark = [pytest.mark.services, pytest.mark.django_db]

ORDER_FIELDS = "id,status,email,metadata,custom_display_id,*items,*shipping_address,fulfillment_status"


def sync(*skus: str) -> str:
    out = StringIO()
    call_command("medusa_sync_catalog", *[f"--sku={sku}" for sku in skus], stdout=out)
    return out.getvalue()


def built(order: Order, version: int = 1) -> CommerceOrder:
    return commerce_order_build(order=order, idempotency_key=f"{order.pk}:v{version}")


def medusa_orders(medusa: MedusaServer, reference: str) -> list[dict[str, Any]]:
    """Every Medusa order and draft order whose metadata carries ``reference``."""
    found = []
    for path, key in (("/admin/orders", "orders"), ("/admin/draft-orders", "draft_orders")):
        rows = medusa.admin("GET", path, params={"q": reference, "fields": "id,metadata", "limit": 50}).json()[key]
        found += [row for row in rows if (row.get("metadata") or {}).get("healthcommerce_reference") == reference]
    return found


def medusa_order(medusa: MedusaServer, order_id: str) -> dict[str, Any]:
    response = medusa.admin("GET", f"/admin/orders/{order_id}", params={"fields": ORDER_FIELDS})
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()["order"]
    return order


@pytest.fixture
def synced(medusa: MedusaServer, ful_product: Product) -> Product:
    """The fulfillment tests' product (``CGM-STARTER-1``) with a price, synced into Medusa."""
    Product.objects.filter(pk=ful_product.pk).update(unit_price_cents=12950)
    sync(ful_product.sku)
    return ful_product


def test_the_catalog_sync_creates_products_and_a_second_sync_changes_nothing(medusa: MedusaServer) -> None:
    sku = f"TEST-{secrets.token_hex(3).upper()}"
    Product.objects.create(
        sku=sku, name="Pulse oximeter", description="Fingertip, with lanyard.", kind=Product.Kind.DEVICE,
        hcpcs_code="E0445", unit_price_cents=4999,
    )  # fmt: skip

    first = sync(sku)
    variants = medusa.admin(
        "GET", "/admin/product-variants", params={"sku": sku, "fields": "id,sku,updated_at,*prices,*product"}
    ).json()["variants"]
    second = sync(sku)
    again = medusa.admin("GET", "/admin/product-variants", params={"sku": sku, "fields": "updated_at,*product"})

    assert "1 created, 0 updated, 0 unchanged" in first
    assert len(variants) == 1
    variant = variants[0]
    assert variant["product"]["title"] == "Pulse oximeter"
    assert variant["product"]["description"] == "Fingertip, with lanyard."
    assert variant["product"]["status"] == "published"
    assert [(p["currency_code"], p["amount"]) for p in variant["prices"]] == [("usd", 49.99)]
    assert "E0445" not in json.dumps(variant)
    assert "0 created, 0 updated, 1 unchanged" in second
    assert again.json()["variants"][0]["updated_at"] == variant["updated_at"]
    assert again.json()["variants"][0]["product"]["updated_at"] == variant["product"]["updated_at"]


def test_the_catalog_sync_updates_a_changed_price_and_name(medusa: MedusaServer) -> None:
    sku = f"TEST-{secrets.token_hex(3).upper()}"
    product = Product.objects.create(sku=sku, name="Walker", kind=Product.Kind.DEVICE, unit_price_cents=8000)
    sync(sku)
    Product.objects.filter(pk=product.pk).update(name="Folding walker", unit_price_cents=8550)

    output = sync(sku)

    variant = medusa.admin("GET", "/admin/product-variants", params={"sku": sku, "fields": "*prices,*product"}).json()[
        "variants"
    ][0]
    assert "0 created, 1 updated, 0 unchanged" in output
    assert variant["product"]["title"] == "Folding walker"
    assert [p["amount"] for p in variant["prices"] if p["currency_code"] == "usd"] == [85.5]


def test_submit_creates_exactly_one_medusa_order_with_the_sku_quantity_address_and_reference(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    result = get_backend("medusa").submit(built(order))

    stored = medusa_order(medusa, result.external_id)
    assert result.external_id.startswith("order_")
    assert stored["status"] == "pending"
    assert [(i["variant_sku"], i["quantity"]) for i in stored["items"]] == [("CGM-STARTER-1", 2)]
    assert [i["unit_price"] for i in stored["items"]] == [129.5]
    address = stored["shipping_address"]
    assert (address["first_name"], address["last_name"]) == ("Camila", "Lopez")
    assert (address["address_1"], address["address_2"]) == ("7525 Colshire Dr", "Suite 200")
    assert (address["city"], address["province"], address["postal_code"], address["country_code"]) == (
        "McLean",
        "VA",
        "22102",
        "us",
    )
    assert address["phone"] == "+1 703 555 0100"
    assert stored["email"] == "camila.lopez@example.org"
    assert stored["metadata"]["healthcommerce_reference"] == order.reference
    assert stored["custom_display_id"] == medusa_display_id(built(order))
    assert [row["id"] for row in medusa_orders(medusa, order.reference)] == [result.external_id]


def test_submitting_the_same_order_twice_returns_the_same_id_and_medusa_holds_one_order(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    first = get_backend("medusa").submit(built(order))
    second = get_backend("medusa").submit(built(order))

    assert second == first
    assert [row["id"] for row in medusa_orders(medusa, order.reference)] == [first.external_id]


def test_a_new_version_of_the_order_gets_its_own_medusa_order(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    first = get_backend("medusa").submit(built(order, version=1))
    second = get_backend("medusa").submit(built(order, version=2))

    assert second.external_id != first.external_id
    assert sorted(row["id"] for row in medusa_orders(medusa, order.reference)) == sorted(
        [first.external_id, second.external_id]
    )


def test_a_draft_left_by_an_interrupted_submit_is_converted_not_duplicated(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    commerce_order = built(order)
    backend = MedusaCommerceBackend()
    body = backend._draft_order_body(commerce_order, medusa_display_id(commerce_order))
    draft = medusa.admin("POST", "/admin/draft-orders", json=body).json()["draft_order"]

    result = backend.submit(commerce_order)

    assert result.external_id == draft["id"]
    assert medusa_order(medusa, draft["id"])["status"] == "pending"
    assert [row["id"] for row in medusa_orders(medusa, order.reference)] == [draft["id"]]


def test_medusa_refuses_a_second_order_with_the_same_display_id(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    commerce_order = built(order)
    get_backend("medusa").submit(commerce_order)
    body = MedusaCommerceBackend()._draft_order_body(commerce_order, medusa_display_id(commerce_order))

    response = medusa.admin("POST", "/admin/draft-orders", json=body)

    assert response.status_code == 400
    assert len(medusa_orders(medusa, order.reference)) == 1


def test_an_unknown_sku_is_permanent_and_creates_nothing(
    medusa: MedusaServer, make_order: Callable[..., Order]
) -> None:
    product = Product.objects.create(sku="NOT-IN-MEDUSA-1", name="Cane", kind=Product.Kind.DEVICE)
    order = make_order(product=product)

    with pytest.raises(PermanentBackendError) as raised:
        get_backend("medusa").submit(built(order))

    assert raised.value.code == "medusa_sku_unknown"
    assert not raised.value.temporary
    assert medusa_orders(medusa, order.reference) == []


def test_a_wrong_api_key_is_permanent(medusa: MedusaServer, synced: Product, order: Order, settings: Any) -> None:
    backend_options_set(settings, "medusa", API_KEY="sk_" + "0" * 64)

    with pytest.raises(PermanentBackendError) as raised:
        get_backend("medusa").submit(built(order))

    assert raised.value.code == "http_401"


def test_a_stopped_medusa_is_temporary(medusa: MedusaServer, synced: Product, order: Order, settings: Any) -> None:
    backend_options_set(settings, "medusa", URL=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with pytest.raises(TemporaryBackendError) as raised:
        get_backend("medusa").submit(built(order))

    assert raised.value.code == "medusa_unreachable"
    assert raised.value.temporary


def test_a_frozen_medusa_times_out_as_temporary(medusa: MedusaServer, synced: Product, order: Order) -> None:
    medusa.pause()
    try:
        with pytest.raises(TemporaryBackendError) as raised:
            get_backend("medusa").submit(built(order))
    finally:
        medusa.resume()

    assert raised.value.code == "medusa_timeout"
    assert medusa_orders(medusa, order.reference) == []


def test_medusa_stores_no_birth_date_payer_fhir_id_or_request_code(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    result = get_backend("medusa").submit(built(order))
    stored = json.dumps(medusa.admin("GET", f"/admin/orders/{result.external_id}").json())
    dump = subprocess.run(
        ["pg_dump", "--data-only", f"{PG_URL}/{medusa.database}"], capture_output=True, text=True, check=True
    ).stdout
    forbidden = [*clinical_values(order), order.patient_birth_date.strftime("%m/%d/%Y")]

    assert order.reference in stored and order.reference in dump  # the checks below can fail
    for value in forbidden:
        assert value not in stored, value
        assert value not in dump, value


def test_status_follows_confirm_shipment_and_cancel(medusa: MedusaServer, synced: Product, order: Order) -> None:
    backend = get_backend("medusa")
    external_id = backend.submit(built(order)).external_id
    seen = [backend.status(external_id).status]
    backend.confirm(external_id)
    backend.confirm(external_id)
    seen.append(backend.status(external_id).status)
    backend.cancel(external_id)
    backend.cancel(external_id)
    seen.append(backend.status(external_id).status)

    assert seen == ["received", "confirmed", "cancelled"]
    with pytest.raises(PermanentBackendError) as raised:
        backend.confirm(external_id)
    assert raised.value.code == "medusa_order_canceled"


def test_confirm_replaces_the_shipping_address_and_records_the_delivery_preference(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    backend = get_backend("medusa")
    external_id = backend.submit(built(order)).external_id
    address = ShipTo("Camila Lopez", "40 Pleasant St", "Unit 2", "Bangor", "ME", "04401", "US")

    backend.confirm(external_id, Confirmation(ship_to=address, delivery_preference="leave_at_door"))

    stored = medusa_order(medusa, external_id)
    shipping = stored["shipping_address"]
    assert (shipping["address_1"], shipping["address_2"], shipping["city"]) == ("40 Pleasant St", "Unit 2", "Bangor")
    assert (shipping["province"], shipping["postal_code"], shipping["phone"]) == ("ME", "04401", "+1 703 555 0100")
    assert stored["metadata"]["healthcommerce_delivery_preference"] == "leave_at_door"
    assert backend.status(external_id).status == "confirmed"


def test_a_shipped_order_reports_shipped_and_cannot_be_cancelled(
    medusa: MedusaServer, synced: Product, order: Order
) -> None:
    backend = get_backend("medusa")
    external_id = backend.submit(built(order)).external_id
    items = [{"id": i["id"], "quantity": i["quantity"]} for i in medusa_order(medusa, external_id)["items"]]
    location = {"location_id": medusa.seed["stock_location_id"]}
    fulfilled = medusa.admin("POST", f"/admin/orders/{external_id}/fulfillments", json={"items": items, **location})
    assert fulfilled.status_code == 200, fulfilled.text
    fulfillments = medusa.admin("GET", f"/admin/orders/{external_id}", params={"fields": "fulfillments.id"})
    fulfillment_id = fulfillments.json()["order"]["fulfillments"][0]["id"]
    label = {
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://t.example/1",
        "label_url": "https://t.example/l",
    }
    shipped = medusa.admin(
        "POST",
        f"/admin/orders/{external_id}/fulfillments/{fulfillment_id}/shipments",
        json={"items": items, "labels": [label]},
    )
    assert shipped.status_code == 200, shipped.text

    assert backend.status(external_id) == BackendStatus(
        "shipped", tracking_number="1Z999AA10123456784", tracking_url="https://t.example/1"
    )
    with pytest.raises(PermanentBackendError) as raised:
        backend.cancel(external_id)
    assert raised.value.code == "too_late"


def test_an_unknown_medusa_order_is_not_found(medusa: MedusaServer) -> None:
    with pytest.raises(PermanentBackendError) as raised:
        get_backend("medusa").status("order_01NOTTHERE000000000000000")

    assert raised.value.code == "not_found"


def test_the_pipeline_hands_a_signed_order_to_medusa_once_and_the_patients_confirmation_follows(
    medusa: MedusaServer, synced: Product, order: Order, settings: Any
) -> None:
    """order.signed -> fulfillment.submit (Medusa) -> order.submitted -> link email; the patient confirms ->
    order.patient_confirmed -> fulfillment.confirm (Medusa), all through the outbox and the registry."""
    from datetime import date

    from django.core import mail

    from healthcommerce.outbox.models import OutboxMessage
    from healthcommerce.purchaselinks.models import PurchaseLink
    from healthcommerce.purchaselinks.services import purchase_link_complete, purchase_link_verify
    from tests.pipeline import deliver, downstream, signed

    settings.COMMERCE_BACKEND = "medusa"
    message = signed(order)
    deliver(message)
    deliver(message)  # a duplicate delivery changes nothing
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE and message.result.startswith("order_")
    assert [row["id"] for row in medusa_orders(medusa, order.reference)] == [message.result]
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED and len(mail.outbox) == 1

    link = PurchaseLink.objects.get(order=order)
    assert purchase_link_verify(link=link, birth_date=date(1987, 9, 12), ip="203.0.113.9")
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    assert downstream() == 2  # fulfillment.confirm, and the message to the patient
    assert get_backend("medusa").status(message.result).status == "confirmed"
