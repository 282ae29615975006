"""The ``webhook`` backend against a local HTTPS receiver that demands our client certificate (conftest.py):
Standard Webhooks signatures, a stable webhook-id, mutual TLS, error mapping, and the whole pipeline."""

import base64
import email.utils
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.fulfillment.backends.base import PermanentBackendError, TemporaryBackendError
from healthcommerce.fulfillment.backends.registry import get_backend
from healthcommerce.fulfillment.backends.webhook.backend import WebhookCommerceBackend, webhook_id
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation, ShipTo, commerce_order_build
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from tests.fulfillment.backends.webhook.conftest import Receiver
from tests.fulfillment.conftest import PATIENT_NAME, backend_options_set
from tests.fulfillment.test_commerce import ALLOWED_KEYS, key_paths
from tests.pipeline import deliver, rows_of
from tests.servers import free_port

WEBHOOK_CLASS = "healthcommerce.fulfillment.backends.webhook.backend.WebhookCommerceBackend"

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(webhook_settings: Receiver) -> Receiver:
    return webhook_settings


def built(order: Order) -> CommerceOrder:
    return commerce_order_build(order=order, idempotency_key=f"{order.pk}:v1")


def test_a_signed_post_over_mutual_tls_is_accepted(hook: Receiver, order: Order) -> None:
    result = WebhookCommerceBackend().submit(built(order))

    assert result.external_id == hook.ids[hook.requests[0].headers["webhook-id"]]
    [received] = hook.requests
    assert received.signature_ok
    assert received.client_cn == "healthcommerce client"
    assert received.path == "/hooks/orders"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-signature"].startswith("v1,")
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60


def test_it_sends_exactly_the_commerce_order_and_nothing_clinical(hook: Receiver, order: Order) -> None:
    WebhookCommerceBackend().submit(built(order))

    envelope = hook.requests[0].json()
    assert set(envelope) == {"type", "timestamp", "data"}
    assert envelope["type"] == "order.created"
    assert key_paths(envelope["data"]) == ALLOWED_KEYS
    assert envelope["data"] == built(order).to_dict()
    body = hook.requests[0].body.decode()
    for value in (
        order.request_code,
        order.request_display,
        order.request_reference,
        order.patient_fhir_id,
        order.practitioner_name,
        order.practitioner_npi,
        order.patient_birth_date.isoformat(),
        order.payer_name,
        order.payer_member_id,
        order.product.hcpcs_code,
        order.content_hash,
    ):
        assert value not in body, value
    assert order.request_code not in json.dumps(hook.requests[0].headers)


def test_submitting_the_same_order_twice_sends_the_same_webhook_id(hook: Receiver, order: Order) -> None:
    backend = WebhookCommerceBackend()
    first = backend.submit(built(order))
    second = backend.submit(built(order))

    ids = [received.headers["webhook-id"] for received in hook.requests]
    assert ids[0] == ids[1] == webhook_id("order.created", f"{order.pk}:v1")
    assert first == second
    other = commerce_order_build(order=order, idempotency_key=f"{order.pk}:v2")
    backend.submit(other)
    assert hook.requests[2].headers["webhook-id"] != ids[0]


def test_without_a_json_id_the_webhook_id_is_the_external_id(hook: Receiver, order: Order) -> None:
    hook.reply(204)

    result = WebhookCommerceBackend().submit(built(order))

    assert result.external_id == hook.requests[0].headers["webhook-id"]


def test_a_409_naming_the_same_message_is_success(hook: Receiver, order: Order) -> None:
    msg_id = webhook_id("order.created", f"{order.pk}:v1")
    hook.reply(409, {"webhook_id": msg_id, "id": "sup-existing"})

    assert WebhookCommerceBackend().submit(built(order)).external_id == "sup-existing"


def test_a_409_about_another_message_is_permanent(hook: Receiver, order: Order) -> None:
    hook.reply(409, {"webhook_id": "msg_other"})

    with pytest.raises(PermanentBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "http_409"


def test_without_the_client_certificate_the_handshake_fails_and_is_temporary(
    hook: Receiver, order: Order, settings: Any
) -> None:
    backend_options_set(settings, "webhook", CLIENT_CERT="", CLIENT_KEY="")

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "webhook_tls"
    assert hook.requests == []


def test_a_server_our_ca_bundle_does_not_trust_is_a_temporary_tls_error(
    hook: Receiver, order: Order, settings: Any
) -> None:
    backend_options_set(settings, "webhook", CA_BUNDLE=str(hook.pki.other_ca))

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "webhook_tls"
    assert hook.requests == []


def test_the_system_trust_store_does_not_trust_a_private_ca(hook: Receiver, order: Order, settings: Any) -> None:
    backend_options_set(settings, "webhook", CA_BUNDLE="")

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "webhook_tls"


def test_a_wrong_secret_is_rejected_by_the_receiver_and_is_permanent(
    hook: Receiver, order: Order, settings: Any
) -> None:
    backend_options_set(
        settings, "webhook", SECRET="whsec_" + base64.b64encode(b"not the supplier's secret, 32 b").decode()
    )

    with pytest.raises(PermanentBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "http_401"
    assert not hook.requests[0].signature_ok


def test_a_503_is_temporary(hook: Receiver, order: Order) -> None:
    hook.reply(503, {"error": "down"}, Retry_After="30")

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "http_503"
    assert caught.value.retry_after == 30


@pytest.mark.parametrize("as_date", [False, True])
def test_a_429_carries_retry_after(hook: Receiver, order: Order, as_date: bool) -> None:
    value = email.utils.formatdate(time.time() + 120, usegmt=True) if as_date else "120"
    hook.reply(429, None, Retry_After=value)

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "http_429"
    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [408, 425, 500, 502])
def test_timeouts_too_early_and_server_errors_are_temporary(hook: Receiver, order: Order, status: int) -> None:
    hook.reply(status)

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == f"http_{status}"


@pytest.mark.parametrize("status", [400, 403, 404, 422, 302])
def test_other_refusals_are_permanent(hook: Receiver, order: Order, status: int) -> None:
    hook.reply(status, None, Location="https://elsewhere.example/")

    with pytest.raises(PermanentBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == f"http_{status}"
    assert len(hook.requests) == 1  # no redirect followed


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_a_timeout_is_temporary(hook: Receiver, order: Order, settings: Any, silent_port: int) -> None:
    backend_options_set(settings, "webhook", URL=f"https://127.0.0.1:{silent_port}/hooks/orders")
    settings.HTTP_TIMEOUT = (1, 0.5)

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "webhook_timeout"


def test_a_closed_port_is_unreachable_and_temporary(hook: Receiver, order: Order, settings: Any) -> None:
    backend_options_set(settings, "webhook", URL=f"https://127.0.0.1:{free_port()}/hooks/orders")

    with pytest.raises(TemporaryBackendError) as caught:
        WebhookCommerceBackend().submit(built(order))
    assert caught.value.code == "webhook_unreachable"


def test_confirm_and_cancel_send_their_events_with_stable_ids(hook: Receiver) -> None:
    backend = WebhookCommerceBackend()
    backend.confirm("sup-7")
    backend.confirm("sup-7")
    backend.cancel("sup-7")

    assert [r.json()["type"] for r in hook.requests] == ["order.confirmed", "order.confirmed", "order.cancelled"]
    assert all(r.json()["data"] == {"id": "sup-7"} and r.signature_ok for r in hook.requests)
    ids = [r.headers["webhook-id"] for r in hook.requests]
    assert ids[0] == ids[1] != ids[2]


def test_confirm_carries_the_patients_corrected_address_and_delivery_preference(hook: Receiver) -> None:
    address = ShipTo("Camila Lopez", "40 Pleasant St", "Unit 2", "Bangor", "ME", "04401", "US")
    WebhookCommerceBackend().confirm("sup-7", Confirmation(ship_to=address, delivery_preference="signature"))

    data = hook.requests[0].json()["data"]
    assert data == {
        "id": "sup-7",
        "ship_to": {
            "name": "Camila Lopez",
            "line1": "40 Pleasant St",
            "line2": "Unit 2",
            "city": "Bangor",
            "state": "ME",
            "postal_code": "04401",
            "country": "US",
        },
        "delivery_preference": "signature",
    }


def test_a_refused_cancel_is_permanent(hook: Receiver) -> None:
    hook.reply(422, {"error": "already shipped"})

    with pytest.raises(PermanentBackendError) as caught:
        WebhookCommerceBackend().cancel("sup-7")
    assert caught.value.code == "http_422"


def test_status_is_unsupported(hook: Receiver) -> None:
    with pytest.raises(PermanentBackendError) as caught:
        WebhookCommerceBackend().status("sup-7")
    assert caught.value.code == "status_unsupported"
    assert hook.requests == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"URL": ""},
        {"SECRET": ""},
        {"SECRET": "not-a-standard-webhooks-secret"},
        {"SECRET": "whsec_!!!"},
        {"URL": "http://supplier.example/hooks"},
        {"CLIENT_KEY": ""},
        {"CA_BUNDLE": "/nonexistent/ca.pem"},
    ],
)
def test_missing_or_wrong_settings_are_improperly_configured(
    hook: Receiver, settings: Any, overrides: dict[str, str]
) -> None:
    backend_options_set(settings, "webhook", **overrides)

    with pytest.raises(ImproperlyConfigured):
        WebhookCommerceBackend()


def test_unset_settings_are_improperly_configured(settings: Any) -> None:
    settings.COMMERCE_BACKENDS = {**settings.COMMERCE_BACKENDS, "webhook": {"BACKEND": WEBHOOK_CLASS}}

    with pytest.raises(ImproperlyConfigured):
        get_backend("webhook")


def test_through_the_pipeline_one_post_submits_the_order(
    hook: Receiver, order: Order, message: OutboxMessage, settings: Any
) -> None:
    settings.COMMERCE_BACKEND = "webhook"

    deliver(message)

    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED
    assert [r.json()["type"] for r in hook.requests] == ["order.created"]
    assert hook.requests[0].signature_ok
    row = rows_of(order, "fulfillment.submit").get()
    assert row.status == OutboxMessage.Status.DONE


def test_no_patient_data_reaches_the_logs(
    hook: Receiver, order: Order, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        backend = WebhookCommerceBackend()
        backend.submit(built(order))
        hook.reply(422, {"error": f"bad address for {PATIENT_NAME}"})
        with pytest.raises(PermanentBackendError):
            backend.submit(built(order))
    assert webhook_id("order.created", f"{order.pk}:v1") in caplog.text
    for phi in (PATIENT_NAME, "Camila", "camila.lopez@example.org", "7525 Colshire", "1987-09-12", "K0553"):
        assert phi not in caplog.text
