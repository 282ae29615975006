"""Payments against a real localstripe on loopback with the official ``stripe`` library (purchaselinks/payments.py):
PaymentIntents made server-side, paid with test cards, recorded from localstripe's signed webhooks, refunded
from the admin. What localstripe does not do is said in tests/stripe_server.py."""

import logging
from collections.abc import Callable, Iterator

import pytest
import stripe
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import IntegrityError

from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.purchaselinks.models import Payment, StripeEvent
from healthcommerce.purchaselinks.payments import (
    NothingToPay,
    PaymentProviderError,
    PaymentsUnavailable,
    payment_start,
    payment_succeeded,
    stripe_client,
)
from healthcommerce.purchaselinks.pricing import patient_quote
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.purchaselinks.conftest import PATIENT_NAME
from tests.stripe_server import WebhookRecorder, webhook_recorder

S = Payment.Status
PAYMENTS = "/admin/purchaselinks/payment/"


@pytest.fixture
def self_pay_order(make_order: Callable[..., Order], stripe_settings) -> Order:
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    return make_order(product=product, payer_name="", quantity=2)


@pytest.fixture
def recorder(stripe_settings) -> Iterator[WebhookRecorder]:
    with webhook_recorder(stripe_settings.STRIPE_API_BASE, webhook_id="hc", secret=STRIPE_WEBHOOK_SECRET) as rec:
        yield rec


def start(order: Order) -> Payment:
    return payment_start(order=order, quote=patient_quote(order=order))


def pay_with(payment: Payment, payment_method: str) -> stripe.PaymentIntent:
    """What stripe.js does on the page: attach the card and confirm (server-side here, with the secret key)."""
    client = stripe_client()
    client.v1.payment_intents.update(payment.stripe_payment_intent_id, params={"payment_method": payment_method})
    return client.v1.payment_intents.confirm(payment.stripe_payment_intent_id)


def intent_secret(payment: Payment) -> str:
    """The PaymentIntent's ``client_secret``, read from Stripe the way the test can (the app never reads it)."""
    return str(stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id).client_secret)


def deliver(client, recorder: WebhookRecorder, event_type: str, payment: Payment):  # type: ignore[no-untyped-def]
    """Replay localstripe's signed webhook for ``payment`` into the app, as Stripe would send it."""
    delivery = recorder.wait_for(event_type, payment.stripe_payment_intent_id)
    return client.post(
        "/webhooks/stripe/", delivery.body, content_type="application/json", HTTP_STRIPE_SIGNATURE=delivery.signature
    )


def test_a_payment_intent_holds_the_amount_and_only_the_order_reference(self_pay_order) -> None:
    payment = start(self_pay_order)
    assert (payment.status, payment.amount_cents, payment.currency) == (S.REQUIRES_PAYMENT, 9800, "USD")
    assert payment.stripe_payment_intent_id.startswith("pi_")
    intent = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert (intent.amount, intent.currency) == (9800, "usd")
    assert intent.metadata.to_dict() == {"order_reference": self_pay_order.reference}
    fields = intent.to_dict()
    assert fields.get("description") is None and fields.get("receipt_email") is None
    assert PATIENT_NAME not in str(intent) and "mateo" not in str(intent).lower()


def test_starting_again_returns_the_same_payment_and_payment_intent(self_pay_order) -> None:
    first = start(self_pay_order)
    again = start(self_pay_order)
    assert again.pk == first.pk and again.stripe_payment_intent_id == first.stripe_payment_intent_id
    assert Payment.objects.filter(order=self_pay_order).count() == 1


def test_a_retry_after_a_lost_answer_sends_the_same_idempotency_key(self_pay_order, monkeypatch) -> None:
    sent: list[str] = []
    real = stripe.RequestsClient.request

    def lossy(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        sent.append(headers.get("Idempotency-Key", ""))
        answer = real(self, method, url, headers, post_data)
        if len(sent) == 1:
            raise stripe.APIConnectionError("the answer was lost")  # Stripe made it; we never heard
        return answer

    monkeypatch.setattr(stripe.RequestsClient, "request", lossy)
    with pytest.raises(PaymentProviderError) as caught:
        start(self_pay_order)
    assert caught.value.temporary
    payment = start(self_pay_order)
    assert sent == [payment.idempotency_key, payment.idempotency_key] == [f"hc-payment-{payment.pk}"] * 2
    # Stripe would answer the second call with the first PaymentIntent; localstripe ignores the key (a new one).


def test_a_covered_order_has_nothing_to_pay(make_order, stripe_settings) -> None:
    product = Product.objects.create(sku="BGM-C", name="Monitor", kind="device", unit_price_cents=4900)
    order = make_order(product=product, payer_name="Casco Bay Medicaid")
    with pytest.raises(NothingToPay):
        start(order)
    assert not Payment.objects.exists()


def test_without_a_secret_key_or_with_a_plain_http_api_elsewhere_payments_are_unavailable(
    self_pay_order, settings
) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(PaymentsUnavailable):
        start(self_pay_order)
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE = "sk_test_x", "http://stripe.example"
    with pytest.raises(PaymentsUnavailable):
        start(self_pay_order)


def test_a_new_amount_cancels_the_unpaid_payment_here_and_at_stripe(self_pay_order) -> None:
    first = start(self_pay_order)
    Order.objects.filter(pk=self_pay_order.pk).update(quantity=3)
    self_pay_order.refresh_from_db()
    second = start(self_pay_order)
    first.refresh_from_db()
    assert (first.status, second.amount_cents, second.status) == (S.CANCELLED, 14700, S.REQUIRES_PAYMENT)
    assert stripe_client().v1.payment_intents.retrieve(first.stripe_payment_intent_id).status == "canceled"


def test_one_live_payment_per_order_version(self_pay_order) -> None:
    payment = start(self_pay_order)
    with pytest.raises(IntegrityError):
        Payment.objects.create(
            order=self_pay_order,
            order_version=payment.order_version,
            amount_cents=1,
            currency="USD",
            idempotency_key="k",
        )


def test_the_payment_intents_client_secret_is_never_stored_or_logged(self_pay_order, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    payment = start(self_pay_order)
    secret = intent_secret(payment)
    assert secret.startswith(payment.stripe_payment_intent_id + "_secret_")
    assert secret not in caplog.text and "sk_test_healthcommerce" not in caplog.text
    assert PATIENT_NAME not in caplog.text
    assert secret not in str(Payment.objects.filter(pk=payment.pk).values().get())


def test_a_visa_payment_succeeds_through_the_signed_webhook(self_pay_order, recorder, client) -> None:
    payment = start(self_pay_order)
    assert pay_with(payment, "pm_card_visa").status == "succeeded"
    response = deliver(client, recorder, "payment_intent.succeeded", payment)
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert payment.status == S.SUCCEEDED and payment.succeeded_at is not None
    assert OrderEvent.objects.filter(order=self_pay_order, kind="payment_succeeded").count() == 1
    again = deliver(client, recorder, "payment_intent.succeeded", payment)
    assert again.json()["outcome"] == "duplicate"
    assert StripeEvent.objects.get(type="payment_intent.succeeded").outcome == "applied"


def test_a_declined_card_fails_the_payment_and_the_patient_may_try_again(self_pay_order, recorder, client) -> None:
    payment = start(self_pay_order)
    with pytest.raises(stripe.CardError):
        pay_with(payment, "pm_card_chargeCustomerFail")  # 4000000000000341: declined when charged
    response = deliver(client, recorder, "payment_intent.payment_failed", payment)
    assert response.json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert (payment.status, payment.last_error_code) == (S.FAILED, "card_declined")
    # The same PaymentIntent takes another card (Stripe: back to requires_payment_method). localstripe cannot
    # confirm a PaymentIntent again after a declined charge, so the success after a decline is a signed event.
    assert start(self_pay_order).pk == payment.pk
    retried = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert retried.status == "requires_payment_method"


def test_localstripe_charges_the_generic_decline_card_it_only_refuses_to_attach(self_pay_order) -> None:
    """Not the app: a guard on the fake. Stripe declines 4000000000000002; localstripe charges it."""
    payment = start(self_pay_order)
    assert pay_with(payment, "pm_card_visa_chargeDeclined").status == "succeeded"


def test_a_failure_delivered_after_the_success_changes_nothing(self_pay_order, recorder, client) -> None:
    declined = start(self_pay_order)
    with pytest.raises(stripe.CardError):
        pay_with(declined, "pm_card_chargeCustomerFail")
    failed = recorder.wait_for("payment_intent.payment_failed", declined.stripe_payment_intent_id)
    payment_succeeded(payment=declined)  # the success overtook the failure
    late = client.post(
        "/webhooks/stripe/", failed.body, content_type="application/json", HTTP_STRIPE_SIGNATURE=failed.signature
    )
    assert late.status_code == 200 and late.json()["outcome"] == "unchanged"
    declined.refresh_from_db()
    assert (declined.status, declined.last_error_code) == (S.SUCCEEDED, "")


@pytest.fixture
def paid(self_pay_order) -> Payment:
    payment = start(self_pay_order)
    pay_with(payment, "pm_card_visa")
    payment_succeeded(payment=payment)
    return payment


def test_the_admin_refunds_a_paid_cancelled_order_at_stripe(paid, admin_client) -> None:
    Order.objects.filter(pk=paid.order_id).update(status=Order.Status.CANCELLED)
    response = admin_client.post(PAYMENTS, {"action": "refund", ACTION_CHECKBOX_NAME: [str(paid.pk)]}, follow=True)
    assert "1 payment(s) refunded" in response.content.decode()
    paid.refresh_from_db()
    assert (paid.status, paid.amount_refunded_cents) == (S.REFUNDED, 9800)
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert [(r.id, r.amount, r.status) for r in refunds.data] == [(paid.stripe_refund_id, 9800, "succeeded")]
    assert OrderEvent.objects.filter(order=paid.order, kind="payment_refunded").count() == 1


def test_the_admin_does_not_refund_an_order_that_is_not_cancelled(paid, admin_client) -> None:
    response = admin_client.post(PAYMENTS, {"action": "refund", ACTION_CHECKBOX_NAME: [str(paid.pk)]}, follow=True)
    assert "refund_not_allowed" in response.content.decode()
    paid.refresh_from_db()
    assert paid.status == S.SUCCEEDED
    assert not stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id}).data


def test_the_payment_admin_shows_no_client_secret(paid, admin_client) -> None:
    secret = intent_secret(paid)
    for url in (PAYMENTS, f"{PAYMENTS}{paid.pk}/change/"):
        response = admin_client.get(url)
        assert response.status_code == 200 and secret not in response.content.decode()
