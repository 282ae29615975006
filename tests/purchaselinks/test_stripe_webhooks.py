"""``POST /webhooks/stripe/`` with signed events of Stripe's documented shape (Stripe API reference "Events", "The
PaymentIntent object", "The Charge object"; docs "Webhooks" for the ``Stripe-Signature`` scheme): forged and stale
signatures, duplicates, out-of-order events and ``charge.refunded``, which localstripe never sends."""

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import resolve

from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks import stripe_webhooks
from healthcommerce.purchaselinks.models import Payment, StripeEvent
from tests.purchaselinks.conftest import PATIENT_NAME

SECRET = "whsec_test_webhooks"
S = Payment.Status
URL = "/webhooks/stripe/"


@pytest.fixture(autouse=True)
def _secret(settings) -> None:  # type: ignore[no-untyped-def]
    settings.STRIPE_WEBHOOK_SECRET = SECRET


@pytest.fixture
def payment(make_order: Callable[..., Order]) -> Payment:
    product = Product.objects.create(sku="BGM-W", name="Monitor", kind="device", unit_price_cents=4900)
    order = make_order(product=product, payer_name="")
    return Payment.objects.create(
        order=order,
        order_version=order.version,
        amount_cents=4900,
        currency="USD",
        stripe_payment_intent_id="pi_3Pw0AbCdEfGh",
        idempotency_key="hc-payment-test",
    )


def intent(payment: Payment, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": payment.stripe_payment_intent_id,
        "object": "payment_intent",
        "amount": payment.amount_cents,
        "amount_received": payment.amount_cents if status == "succeeded" else 0,
        "currency": "usd",
        "status": status,
        "metadata": {"order_reference": payment.order.reference},
        "last_payment_error": None,
        **extra,
    }


def charge(payment: Payment, *, refunded: int) -> dict[str, Any]:
    return {
        "id": "ch_3Pw0AbCdEfGh",
        "object": "charge",
        "amount": payment.amount_cents,
        "amount_refunded": refunded,
        "refunded": refunded >= payment.amount_cents,
        "currency": "usd",
        "payment_intent": payment.stripe_payment_intent_id,
        "status": "succeeded",
    }


def event(event_type: str, obj: dict[str, Any], *, event_id: str = "") -> bytes:
    body = {
        "id": event_id or f"evt_{hashlib.sha256(json.dumps(obj).encode() + event_type.encode()).hexdigest()[:24]}",
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


def signed(body: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post(client, body: bytes, signature: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_STRIPE_SIGNATURE": signed(body) if signature is None else signature}
    return client.post(URL, body, content_type="application/json", **headers)


def test_the_stripe_route_comes_before_the_commerce_backends_webhooks() -> None:
    assert resolve(URL).func is stripe_webhooks.stripe_webhook


def test_a_forged_signature_is_refused_and_nothing_recorded(client, payment) -> None:
    body = event("payment_intent.succeeded", intent(payment, "succeeded"))
    response = post(client, body, signed(body, secret="whsec_someone_else"))
    assert (response.status_code, response.json()) == (400, {"error": "signature_invalid"})
    assert post(client, body, "").json() == {"error": "signature_missing"}
    assert post(client, body, "t=1,v1=nothex").status_code == 400
    payment.refresh_from_db()
    assert payment.status == S.REQUIRES_PAYMENT and not StripeEvent.objects.exists()


def test_a_stale_timestamp_is_refused(client, payment) -> None:
    body = event("payment_intent.succeeded", intent(payment, "succeeded"))
    response = post(client, body, signed(body, at=int(time.time()) - 301))
    assert (response.status_code, response.json()) == (400, {"error": "signature_invalid"})
    assert post(client, body, signed(body, at=int(time.time()) - 290)).status_code == 200


def test_a_timestamp_in_the_future_beyond_the_tolerance_is_refused(client, payment) -> None:
    body = event("payment_intent.succeeded", intent(payment, "succeeded"))
    for ahead in (600, 301):
        response = post(client, body, signed(body, at=int(time.time()) + ahead))
        assert (response.status_code, response.json()) == (400, {"error": "signature_invalid"}), ahead
    payment.refresh_from_db()
    assert payment.status == S.REQUIRES_PAYMENT and not StripeEvent.objects.exists()
    assert post(client, body, signed(body, at=int(time.time()) + 200)).status_code == 200  # clock skew within


def test_a_signed_body_that_is_not_an_event_is_a_bad_payload(client) -> None:
    for body in (b"not json", b"[]", json.dumps({"id": "evt_1", "type": "x"}).encode(), b"\xff\xfe"):
        response = post(client, body)
        assert (response.status_code, response.json()) == (400, {"error": "payload_invalid"}), body


def test_success_is_applied_once_and_a_duplicate_is_answered_200(client, payment) -> None:
    body = event("payment_intent.succeeded", intent(payment, "succeeded"))
    assert post(client, body).json()["outcome"] == "applied"
    again = post(client, body)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    payment.refresh_from_db()
    assert payment.status == S.SUCCEEDED
    assert payment.order.events.filter(kind="payment_succeeded").count() == 1


def test_a_failure_records_the_code_and_a_later_failure_after_success_changes_nothing(client, payment) -> None:
    declined = intent(
        payment,
        "requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    assert post(client, event("payment_intent.payment_failed", declined)).json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert (payment.status, payment.last_error_code) == (S.FAILED, "card_declined")
    assert post(client, event("payment_intent.succeeded", intent(payment, "succeeded"))).json()["outcome"] == "applied"
    late = event("payment_intent.payment_failed", declined, event_id="evt_late_failure")
    assert post(client, late).json()["outcome"] == "unchanged"
    payment.refresh_from_db()
    assert (payment.status, payment.last_error_code) == (S.SUCCEEDED, "")


def test_a_refund_before_the_success_is_refused_so_stripe_sends_it_again(client, payment) -> None:
    refund = event("charge.refunded", charge(payment, refunded=4900))
    early = post(client, refund)
    assert (early.status_code, early.json()) == (409, {"error": "payment_not_ready"})
    assert not StripeEvent.objects.exists()
    post(client, event("payment_intent.succeeded", intent(payment, "succeeded")))
    assert post(client, refund).json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded_cents) == (S.REFUNDED, 4900)
    late_success = event("payment_intent.succeeded", intent(payment, "succeeded"), event_id="evt_late_success")
    assert post(client, late_success).json()["outcome"] == "unchanged"


def test_a_partial_refund_keeps_the_payment_succeeded(client, payment) -> None:
    post(client, event("payment_intent.succeeded", intent(payment, "succeeded")))
    assert post(client, event("charge.refunded", charge(payment, refunded=1000))).json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded_cents) == (S.SUCCEEDED, 1000)


def test_other_event_types_and_other_payment_intents_are_ignored_with_200(client, payment) -> None:
    assert post(client, event("customer.created", {"id": "cus_1", "object": "customer"})).json()["outcome"] == "ignored"
    other = {"id": "pi_not_ours", "object": "payment_intent", "metadata": {}}
    assert post(client, event("payment_intent.succeeded", other)).json()["outcome"] == "ignored"
    payment.refresh_from_db()
    assert payment.status == S.REQUIRES_PAYMENT


def test_an_event_ahead_of_our_stored_intent_id_is_refused_for_a_retry(client, payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(stripe_payment_intent_id="")
    ahead = {"id": "pi_new", "object": "payment_intent", "metadata": {"order_reference": payment.order.reference}}
    response = post(client, event("payment_intent.succeeded", ahead))
    assert (response.status_code, response.json()) == (409, {"error": "payment_not_ready"})


def test_a_success_on_a_cancelled_payment_is_recorded_with_an_alert(client, payment, caplog) -> None:
    Payment.objects.filter(pk=payment.pk).update(status=S.CANCELLED)
    with caplog.at_level(logging.ERROR):
        assert (
            post(client, event("payment_intent.succeeded", intent(payment, "succeeded"))).json()["outcome"] == "applied"
        )
    assert "ALERT payment succeeded after it was cancelled" in caplog.text


def test_without_a_webhook_secret_the_endpoint_answers_503(client, payment, settings) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post(client, event("payment_intent.succeeded", intent(payment, "succeeded")))
    assert (response.status_code, response.json()) == (503, {"error": "stripe_unconfigured"})


def test_a_failure_inside_answers_503_without_a_trace(client, payment, monkeypatch) -> None:
    def broken(**kwargs: object) -> str:
        raise RuntimeError(PATIENT_NAME)

    monkeypatch.setattr(stripe_webhooks, "stripe_event_record", broken)
    response = post(client, event("payment_intent.succeeded", intent(payment, "succeeded")))
    assert (response.status_code, response.json()) == (503, {"error": "temporarily_unavailable"})


def test_a_body_over_256_kib_is_refused(client) -> None:
    body = b"{" + b" " * (256 * 1024) + b"}"
    assert post(client, body).status_code == 413


def test_answers_and_logs_carry_no_phi(client, payment, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for body in (
        event("payment_intent.succeeded", intent(payment, "succeeded")),
        event("charge.refunded", charge(payment, refunded=4900)),
    ):
        response = post(client, body)
        assert PATIENT_NAME not in response.content.decode()
    assert PATIENT_NAME not in caplog.text and "mateo" not in caplog.text.lower()


def test_only_post_is_allowed(client) -> None:
    assert client.get(URL).status_code == 405
