"""Status back from the commerce backend: forward only, conflicts alert, the timeline and ``order.status_changed``;
the inbound webhook endpoint (signature, timestamp, dedupe) and the daily reconciliation."""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from healthcommerce.ehr.models import Launch
from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.models import InboundStatusEvent
from healthcommerce.fulfillment.reconcile import fulfillment_reconcile
from healthcommerce.fulfillment.status import APPLIED, REFUSED, UNCHANGED, fulfillment_status_apply
from healthcommerce.orders.events import TOPIC_ORDER_STATUS_CHANGED
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from tests.fulfillment.conftest import PATIENT_NAME, backend_options_set, clinical_values
from tests.pipeline import deliver
from tests.relaunch import relaunch_owned

STATUS_KEY = secrets.token_bytes(32)
STATUS_SECRET = "whsec_" + base64.b64encode(STATUS_KEY).decode()
UPS = {"carrier": "UPS", "tracking_number": "1Z999AA10123456784", "tracking_url": "https://www.ups.com/track?t=1"}


@pytest.fixture
def submitted(order: Order, message: OutboxMessage) -> Order:
    """The order handed to the local backend (``submitted``, with its backend and id recorded)."""
    deliver(message)
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED and order.commerce_backend == "local" and order.commerce_id
    return order


@pytest.fixture
def launch_for(client: Client) -> Callable[[Order], Launch]:
    """A pre-filled launch for the order's site and patient, owned by ``client``'s session (a relaunch)."""

    def make(order: Order) -> Launch:
        return relaunch_owned(client, order)

    return make


def apply(order: Order, status: str, **tracking: str) -> str:
    return fulfillment_status_apply(
        order_id=order.pk, update=BackendStatus(status, **tracking), source="test", backend="local", actor="test"
    )


def kinds(order: Order) -> list[str]:
    rows = OrderEvent.objects.filter(order=order).exclude(kind__in=["status", "link_sent"])
    return list(rows.values_list("kind", flat=True))


def announced(order: Order) -> list[str]:
    rows = OutboxMessage.objects.filter(topic=TOPIC_ORDER_STATUS_CHANGED, subject=f"Order/{order.pk}")
    return [row.payload["status"] for row in rows.order_by("created_at")]


# --- fulfillment_status_apply ---


def test_shipped_fulfils_the_order_with_its_tracking_and_tells_the_next_stage(submitted: Order) -> None:
    assert apply(submitted, "confirmed") == APPLIED
    assert apply(submitted, "shipped", **UPS) == APPLIED
    submitted.refresh_from_db()

    assert (submitted.status, submitted.fulfillment_status) == (Order.Status.FULFILLED, "shipped")
    assert (submitted.carrier, submitted.tracking_number, submitted.tracking_url) == tuple(UPS.values())
    shipped = OrderEvent.objects.get(order=submitted, kind="shipped")
    assert shipped.detail["tracking_number"] == UPS["tracking_number"] and shipped.detail["source"] == "test"
    assert announced(submitted) == ["shipped"]


def test_a_tracking_url_that_is_not_https_is_dropped_with_a_warning(submitted: Order, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="healthcommerce.fulfillment.carriers"):
        apply(submitted, "shipped", carrier="Acme Freight", tracking_number="AF-1", tracking_url="javascript:alert(1)")
    submitted.refresh_from_db()
    assert (submitted.carrier, submitted.tracking_number, submitted.tracking_url) == ("Acme Freight", "AF-1", "")
    assert "javascript" not in str(OrderEvent.objects.get(order=submitted, kind="shipped").detail)
    assert [r.getMessage() for r in caplog.records] == [
        f"tracking url dropped: not https order={submitted.reference} source=test"
    ]


@pytest.mark.parametrize(
    ("carrier", "url"),
    [
        ("ups", "https://www.ups.com/track?tracknum=1Z9"),
        ("FedEx", "https://www.fedex.com/fedextrack/?trknbr=1Z9"),
        ("DHL", "https://www.dhl.com/us-en/home/tracking/tracking-express.html?submit=1&tracking-id=1Z9"),
    ],
)
def test_a_known_carrier_without_a_url_gets_its_public_tracking_page(submitted: Order, carrier: str, url: str) -> None:
    apply(submitted, "shipped", carrier=carrier, tracking_number="1Z9", tracking_url="http://www.ups.com/x")
    submitted.refresh_from_db()
    assert submitted.tracking_url == url and submitted.carrier in ("UPS", "FedEx", "DHL")


def test_status_never_goes_back_and_a_repeat_changes_nothing(submitted: Order) -> None:
    apply(submitted, "shipped", **UPS)
    assert apply(submitted, "delivered") == APPLIED
    assert apply(submitted, "shipped", **UPS) == UNCHANGED  # a late, older event
    assert apply(submitted, "confirmed") == UNCHANGED
    assert apply(submitted, "delivered") == UNCHANGED
    submitted.refresh_from_db()

    assert (submitted.status, submitted.fulfillment_status) == (Order.Status.FULFILLED, "delivered")
    assert kinds(submitted) == ["shipped", "delivered"]
    assert announced(submitted) == ["shipped", "delivered"]


def test_tracking_that_arrives_later_is_recorded_without_a_second_announcement(submitted: Order) -> None:
    apply(submitted, "shipped")
    assert apply(submitted, "shipped", **UPS) == APPLIED
    submitted.refresh_from_db()

    assert submitted.tracking_number == UPS["tracking_number"]
    assert kinds(submitted) == ["shipped", "tracking_updated"]
    assert announced(submitted) == ["shipped"]


def test_a_platform_cancel_before_shipping_cancels_the_order(submitted: Order) -> None:
    assert apply(submitted, "cancelled") == APPLIED
    submitted.refresh_from_db()

    assert (submitted.status, submitted.fulfillment_status) == (Order.Status.CANCELLED, "cancelled")
    assert kinds(submitted) == ["cancelled_by_platform"]
    assert announced(submitted) == ["cancelled"]


def test_a_cancel_after_shipping_is_refused_on_the_timeline_and_alerts(
    submitted: Order, caplog: pytest.LogCaptureFixture
) -> None:
    apply(submitted, "shipped", **UPS)
    with caplog.at_level(logging.ERROR):
        assert apply(submitted, "cancelled") == REFUSED
    submitted.refresh_from_db()

    assert (submitted.status, submitted.fulfillment_status) == (Order.Status.FULFILLED, "shipped")
    assert OrderEvent.objects.get(order=submitted, kind="status_conflict").detail["reported"] == "cancelled"
    assert any("ALERT" in r.message and submitted.reference in r.message for r in caplog.records)
    assert PATIENT_NAME not in caplog.text


def test_shipping_an_order_we_cancelled_is_a_conflict(submitted: Order) -> None:
    Order.objects.filter(pk=submitted.pk).update(status=Order.Status.CANCELLED)
    assert apply(submitted, "shipped", **UPS) == REFUSED
    submitted.refresh_from_db()
    assert submitted.fulfillment_status == "" and kinds(submitted) == ["status_conflict"]


def test_the_local_admin_mark_goes_through_the_same_path(submitted: Order) -> None:
    from healthcommerce.fulfillment.backends.local.services import local_order_mark

    local = LocalCommerceOrder.objects.get()
    local_order_mark(local_order_id=local.pk, status="shipped", actor="admin:ops", tracking_number="TRK1")
    submitted.refresh_from_db()
    assert (submitted.fulfillment_status, submitted.tracking_number) == ("shipped", "TRK1")
    assert announced(submitted) == ["shipped"]


# --- POST /webhooks/<backend>/ ---


@pytest.fixture
def webhook_order(submitted: Order, settings: Any) -> Order:
    """``submitted`` as if the ``webhook`` backend had taken it, with the webhook backend configured."""
    backend_options_set(
        settings,
        "webhook",
        URL="https://supplier.example/hooks",
        SECRET="whsec_" + base64.b64encode(b"outbound-secret-0123456789abcdef").decode(),
        STATUS_SECRET=STATUS_SECRET,
    )
    Order.objects.filter(pk=submitted.pk).update(commerce_backend="webhook", commerce_id="SUP-1001")
    submitted.refresh_from_db()
    return submitted


def signed_post(
    client: Client,
    event: dict[str, Any],
    *,
    backend: str = "webhook",
    msg_id: str | None = None,
    key: bytes = STATUS_KEY,
    at: int | None = None,
) -> Any:
    """POST ``event`` signed as Standard Webhooks says (HMAC-SHA256 over ``id.timestamp.body``), by hand."""
    body = json.dumps(event)
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    timestamp = str(at if at is not None else int(time.time()))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    headers = {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": timestamp,
        "HTTP_WEBHOOK_SIGNATURE": "v1," + base64.b64encode(digest).decode(),
    }
    return client.post(f"/webhooks/{backend}/", body, content_type="application/json", **headers)


def shipped_event(order: Order, **data: Any) -> dict[str, Any]:
    return {"type": "order.shipped", "data": {"order_reference": order.reference, "id": "SUP-1001", **UPS, **data}}


def test_a_signed_shipped_event_fulfils_the_order(client: Client, webhook_order: Order) -> None:
    response = signed_post(client, shipped_event(webhook_order), msg_id="msg_ship1")
    webhook_order.refresh_from_db()

    assert response.status_code == 200
    assert response.json() == {"events": [{"id": "msg_ship1", "outcome": "applied"}]}
    assert (webhook_order.status, webhook_order.tracking_number) == (Order.Status.FULFILLED, UPS["tracking_number"])
    assert InboundStatusEvent.objects.get().outcome == "applied"


def test_a_webhook_tracking_url_that_is_not_https_is_not_stored(client: Client, webhook_order: Order) -> None:
    event = shipped_event(webhook_order, carrier="Acme", tracking_url="javascript:alert(document.cookie)")
    assert signed_post(client, event).status_code == 200
    webhook_order.refresh_from_db()
    assert (webhook_order.carrier, webhook_order.tracking_url) == ("Acme", "")


def test_a_replayed_event_is_a_duplicate_and_changes_nothing(client: Client, webhook_order: Order) -> None:
    signed_post(client, shipped_event(webhook_order), msg_id="msg_ship1")
    again = signed_post(client, shipped_event(webhook_order), msg_id="msg_ship1")

    assert again.status_code == 200 and again.json()["events"][0]["outcome"] == "duplicate"
    assert kinds(webhook_order) == ["shipped"] and InboundStatusEvent.objects.count() == 1


def test_delivered_then_a_late_shipped_keeps_delivered(client: Client, webhook_order: Order) -> None:
    delivered = {"type": "order.delivered", "data": {"order_reference": webhook_order.reference}}
    assert signed_post(client, delivered).json()["events"][0]["outcome"] == "applied"
    assert signed_post(client, shipped_event(webhook_order)).json()["events"][0]["outcome"] == "applied"  # tracking
    webhook_order.refresh_from_db()
    assert webhook_order.fulfillment_status == "delivered" and webhook_order.tracking_number == UPS["tracking_number"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"key": secrets.token_bytes(32)}, 401, "signature_invalid"),
        ({"skew": -600}, 401, "signature_invalid"),  # outside the 5-minute tolerance
        ({"skew": 600}, 401, "signature_invalid"),
    ],
)
def test_a_bad_signature_or_timestamp_is_refused_and_changes_nothing(
    client: Client, webhook_order: Order, change: dict[str, Any], status: int, code: str
) -> None:
    change = dict(change)
    if "skew" in change:  # from the moment the test runs, not when it was collected
        change["at"] = int(time.time()) + change.pop("skew")
    response = signed_post(client, shipped_event(webhook_order), **change)
    webhook_order.refresh_from_db()

    assert (response.status_code, response.json()) == (status, {"error": code})
    assert webhook_order.fulfillment_status == "" and not InboundStatusEvent.objects.exists()


def test_an_unsigned_request_is_refused(client: Client, webhook_order: Order) -> None:
    response = client.post(
        "/webhooks/webhook/", json.dumps(shipped_event(webhook_order)), content_type="application/json"
    )
    assert (response.status_code, response.json()) == (401, {"error": "signature_invalid"})


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        ({"type": "order.teleported", "data": {"order_reference": "HC-X"}}, 400, "event_unknown"),
        ({"type": "order.shipped", "data": {}}, 400, "event_malformed"),
        ({"type": "order.shipped", "data": {"order_reference": "HC-NOTOURS00"}}, 404, "order_unknown"),
        ({"type": "order.shipped", "data": {"order_reference": "{ref}", "id": "SUP-OTHER"}}, 404, "order_unknown"),
        (["not", "an", "object"], 400, "event_unknown"),
    ],
)
def test_events_that_do_not_name_one_of_this_backends_orders_are_refused(
    client: Client, webhook_order: Order, event: Any, status: int, code: str
) -> None:
    if isinstance(event, dict) and event["data"].get("order_reference") == "{ref}":
        event["data"]["order_reference"] = webhook_order.reference
    response = signed_post(client, event)
    assert (response.status_code, response.json()) == (status, {"error": code})


def test_an_order_another_backend_took_cannot_be_moved_by_this_one(client: Client, webhook_order: Order) -> None:
    Order.objects.filter(pk=webhook_order.pk).update(commerce_backend="medusa")
    response = signed_post(client, shipped_event(webhook_order, id=""))
    assert (response.status_code, response.json()) == (404, {"error": "order_unknown"})


def test_the_endpoint_answers_clearly_for_other_backends_methods_sizes_and_missing_secrets(
    client: Client, webhook_order: Order, settings: Any
) -> None:
    assert client.post("/webhooks/nosuch/", "{}", content_type="application/json").status_code == 404
    local = client.post("/webhooks/local/", "{}", content_type="application/json")
    assert (local.status_code, local.json()) == (404, {"error": "webhook_unsupported"})
    assert client.get("/webhooks/webhook/").status_code == 405
    big = client.post("/webhooks/webhook/", "x" * (65 * 1024), content_type="application/json")
    assert (big.status_code, big.json()) == (413, {"error": "body_too_large"})
    backend_options_set(settings, "webhook", STATUS_SECRET="")
    unconfigured = signed_post(client, shipped_event(webhook_order))
    assert (unconfigured.status_code, unconfigured.json()) == (503, {"error": "webhook_status_unconfigured"})
    backend_options_set(settings, "webhook", URL="")
    assert signed_post(client, shipped_event(webhook_order)).json() == {"error": "backend_unconfigured"}


def test_the_clinician_sees_shipping_and_tracking_on_relaunch(
    client: Client, webhook_order: Order, launch_for: Callable[[Order], Launch]
) -> None:
    signed_post(client, shipped_event(webhook_order))
    launch = launch_for(webhook_order)

    page = client.get(f"/o/{launch.pk}/orders/{webhook_order.pk}/")
    listing = client.get(f"/o/{launch.pk}/?all=1")

    assert page.status_code == 200 and listing.status_code == 200
    text = page.content.decode()
    assert "Shipped" in text and UPS["tracking_number"] in text and UPS["tracking_url"] in text
    assert UPS["tracking_number"] in listing.content.decode()


# --- the daily reconciliation ---


def test_reconciliation_applies_what_the_backend_says_and_isolates_failures(
    make_order: Callable[..., Order], submitted: Order, webhook_order: Order
) -> None:
    # ``submitted`` became the webhook order; a second local order ships at the backend without telling us.
    second = make_order()
    deliver(_signed(second))
    LocalCommerceOrder.objects.filter(order_reference=second.reference).update(status="shipped", tracking_number="T2")
    broken = make_order()
    deliver(_signed(broken))
    Order.objects.filter(pk=broken.pk).update(commerce_id="00000000-0000-0000-0000-000000000000")

    report = fulfillment_reconcile()
    second.refresh_from_db()

    assert (second.status, second.fulfillment_status, second.tracking_number) == ("fulfilled", "shipped", "T2")
    assert report.as_dict() == {
        "checked": 2,
        "changed": 1,
        "conflicts": 0,
        "skipped": ["webhook"],  # a push-only supplier cannot be asked
        "errors": {"local:not_found": 1},
    }
    again = fulfillment_reconcile()
    assert (again.checked, again.changed) == (2, 0)


def test_the_reconcile_command_prints_the_report_and_fails_on_errors(
    make_order: Callable[..., Order], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = make_order()
    deliver(_signed(broken))
    Order.objects.filter(pk=broken.pk).update(commerce_id="00000000-0000-0000-0000-000000000000")

    with pytest.raises(SystemExit) as exited:
        call_command("fulfillment_reconcile")

    assert exited.value.code == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["errors"] == {"local:not_found": 1}
    assert not any(value in json.dumps(printed) for value in clinical_values(broken) if value)


def _signed(order: Order) -> OutboxMessage:
    from tests.pipeline import signed

    return signed(order)
