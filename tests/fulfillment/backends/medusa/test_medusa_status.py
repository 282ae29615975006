"""Status back from a real Medusa 2: our subscriber inside Medusa (commerce/medusa/src/subscribers/
healthcommerce-status.ts) pushes shipment, delivery and cancellation as signed Standard Webhooks events, which
``/webhooks/medusa/`` verifies and applies; and the daily reconciliation reads the same from the Admin API when
no push arrives.

The subscriber posts to a recorder on loopback; each recorded request is then replayed byte for byte into the app
(the Django test client), so the signature Medusa made is the one our code checks.
"""

import base64
import json
import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from healthcommerce.catalog.models import Product
from healthcommerce.fulfillment.reconcile import fulfillment_reconcile
from healthcommerce.orders.models import Order
from tests.fulfillment.backends.medusa.conftest import MedusaServer
from tests.fulfillment.backends.medusa.test_medusa_backend import medusa_order, synced  # noqa: F401  (fixture)
from tests.fulfillment.conftest import backend_options_set
from tests.pipeline import signed
from tests.servers import free_port

pytestmark = pytest.mark.django_db

RECEIVER_PORT = free_port()
STATUS_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
MEDUSA_EXTRA_ENV = {
    "HC_STATUS_WEBHOOK_URL": f"http://127.0.0.1:{RECEIVER_PORT}/webhooks/medusa/",
    "HC_STATUS_WEBHOOK_SECRET": STATUS_SECRET,
}
LABEL = {
    "tracking_number": "1Z999AA10123456784",
    "tracking_url": "https://t.example/1",
    "label_url": "https://t.example/l",
}


@dataclass
class Pushed:
    """One request Medusa's subscriber made: its path, headers and raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


@pytest.fixture(scope="module")
def pushes() -> Iterator["queue.Queue[Pushed]"]:
    """A recorder on ``RECEIVER_PORT`` answering 204 to every POST; yields the queue of what it received."""
    received: queue.Queue[Pushed] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.put(Pushed(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()


@pytest.fixture
def handed_over(medusa: MedusaServer, synced: Product, order: Order, settings: Any) -> Order:  # noqa: F811
    """``order`` handed to Medusa through the outbox (``commerce_backend`` medusa, ``commerce_id`` its id)."""
    from tests.pipeline import deliver

    settings.COMMERCE_BACKEND = "medusa"
    backend_options_set(settings, "medusa", STATUS_SECRET=STATUS_SECRET)
    deliver(signed(order))
    order.refresh_from_db()
    assert order.commerce_backend == "medusa" and order.commerce_id.startswith("order_")
    return order


def next_push(pushes: "queue.Queue[Pushed]", event_type: str) -> Pushed:
    """The next request of ``event_type`` Medusa pushed (waits up to 20 s)."""
    while True:
        push = pushes.get(timeout=20)
        if json.loads(push.body)["type"] == event_type:
            return push


def replay(push: Pushed) -> Any:
    headers = {
        f"HTTP_{name.upper().replace('-', '_')}": push.headers[name]
        for name in push.headers
        if name.startswith("webhook-")
    }
    return Client().post(push.path, push.body, content_type="application/json", **headers)


def ship(medusa: MedusaServer, medusa_id: str) -> str:
    """Fulfil and ship the Medusa order with ``LABEL``, as the supplier's staff would; return the fulfillment id."""
    items = [{"id": i["id"], "quantity": i["quantity"]} for i in medusa_order(medusa, medusa_id)["items"]]
    created = medusa.admin(
        "POST",
        f"/admin/orders/{medusa_id}/fulfillments",
        json={"items": items, "location_id": medusa.seed["stock_location_id"]},
    )
    assert created.status_code == 200, created.text
    fulfillments = medusa.admin("GET", f"/admin/orders/{medusa_id}", params={"fields": "fulfillments.id"}).json()
    fulfillment_id: str = fulfillments["order"]["fulfillments"][0]["id"]
    shipped = medusa.admin(
        "POST",
        f"/admin/orders/{medusa_id}/fulfillments/{fulfillment_id}/shipments",
        json={"items": items, "labels": [LABEL]},
    )
    assert shipped.status_code == 200, shipped.text
    return fulfillment_id


def test_medusa_pushes_shipment_and_delivery_signed_and_the_app_applies_them(
    medusa: MedusaServer, handed_over: Order, pushes: "queue.Queue[Pushed]"
) -> None:
    fulfillment_id = ship(medusa, handed_over.commerce_id)
    shipped = next_push(pushes, "order.shipped")

    assert shipped.path == "/webhooks/medusa/"
    assert json.loads(shipped.body)["data"] == {
        "order_reference": handed_over.reference,
        "id": handed_over.commerce_id,
        "tracking_number": LABEL["tracking_number"],
        "tracking_url": LABEL["tracking_url"],
    }
    answer = replay(shipped)
    handed_over.refresh_from_db()
    assert (answer.status_code, answer.json()["events"][0]["outcome"]) == (200, "applied")
    assert (handed_over.status, handed_over.fulfillment_status) == (Order.Status.FULFILLED, "shipped")
    assert handed_over.tracking_number == LABEL["tracking_number"]
    assert replay(shipped).json()["events"][0]["outcome"] == "duplicate"

    delivered = medusa.admin(
        "POST", f"/admin/orders/{handed_over.commerce_id}/fulfillments/{fulfillment_id}/mark-as-delivered"
    )
    assert delivered.status_code == 200, delivered.text
    assert replay(next_push(pushes, "order.delivered")).json()["events"][0]["outcome"] == "applied"
    handed_over.refresh_from_db()
    assert handed_over.fulfillment_status == "delivered"


def test_a_cancel_in_medusa_before_shipping_cancels_our_order(
    medusa: MedusaServer, handed_over: Order, pushes: "queue.Queue[Pushed]"
) -> None:
    cancelled = medusa.admin("POST", f"/admin/orders/{handed_over.commerce_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    assert replay(next_push(pushes, "order.cancelled")).json()["events"][0]["outcome"] == "applied"
    handed_over.refresh_from_db()
    assert (handed_over.status, handed_over.fulfillment_status) == (Order.Status.CANCELLED, "cancelled")


def test_a_tampered_push_is_refused(medusa: MedusaServer, handed_over: Order, pushes: "queue.Queue[Pushed]") -> None:
    ship(medusa, handed_over.commerce_id)
    push = next_push(pushes, "order.shipped")
    forged = Pushed(push.path, push.headers, push.body.replace(b"1Z999AA10123456784", b"1Z000000000000000X"))

    assert replay(forged).status_code == 401
    handed_over.refresh_from_db()
    assert handed_over.fulfillment_status == ""


def test_without_a_push_the_reconciliation_reads_the_shipment_from_medusa(
    medusa: MedusaServer, handed_over: Order, pushes: "queue.Queue[Pushed]"
) -> None:
    ship(medusa, handed_over.commerce_id)  # the push is recorded but never reaches the app

    report = fulfillment_reconcile()
    handed_over.refresh_from_db()

    assert (report.checked, report.changed, dict(report.errors)) == (1, 1, {})
    assert (handed_over.fulfillment_status, handed_over.tracking_number) == ("shipped", LABEL["tracking_number"])
    assert handed_over.tracking_url == LABEL["tracking_url"]
