"""The patient's checkout through HTTP against a real localstripe: the review page shows what the patient pays
and why; a covered order is confirmed at once; a self-pay order goes to the card page, whose token pays the
PaymentIntent, and only then is the link completed and the confirmation sent to the commerce backend."""

from collections.abc import Callable

import pytest
from django.test import Client

from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.models import Payment, PurchaseLink
from healthcommerce.purchaselinks.payments import stripe_client
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.purchaselinks.test_pages import CONFIRM, verified

VISA, DECLINED = "4242424242424242", "4000000000000341"  # localstripe refuses 0341 when charged


@pytest.fixture
def self_pay(make_order: Callable[..., Order], stripe_settings) -> tuple[Order, str]:  # type: ignore[no-untyped-def]
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    order = make_order(product=product, payer_name="", quantity=2)
    _, token = purchase_link_issue(order=order)
    return order, token


def card_token(number: str) -> str:
    """What stripe.js's createToken(card) returns for ``number`` (made here through localstripe's API)."""
    token = stripe_client().v1.tokens.create(
        params={"card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}}  # type: ignore[typeddict-item]
    )
    return str(token.id)


def confirmations(order: Order) -> int:
    return OutboxMessage.objects.filter(subscriber="fulfillment.confirm", subject=f"Order/{order.pk}").count()


def test_the_review_page_shows_the_price_and_who_pays(self_pay: tuple[Order, str]) -> None:
    _, token = self_pay
    page = verified(token).get("/p/confirm/").content.decode()

    assert "$49.00 \u00d7 2 = $98.00" in page and "<strong>$98.00</strong>" in page
    assert "Continue to payment" in page


def test_a_covered_order_is_confirmed_without_paying(issued, order: Order) -> None:  # type: ignore[no-untyped-def]
    browser = verified(issued[1])
    page = browser.get("/p/confirm/").content.decode()
    assert "Confirm my order" in page and "covers" in page.lower()

    assert "Thank you" in browser.post("/p/confirm/", CONFIRM).content.decode()
    assert not Payment.objects.exists() and confirmations(order) == 1


def test_a_self_pay_order_is_paid_by_card_before_it_is_confirmed(self_pay: tuple[Order, str], settings) -> None:
    order, token = self_pay
    browser = verified(token)

    assert browser.post("/p/confirm/", CONFIRM)["Location"] == "/p/pay/"
    assert confirmations(order) == 0  # not before the money
    page = browser.get("/p/pay/")
    body = page.content.decode()
    assert page.status_code == 200 and settings.STRIPE_JS_URL in body and "pk_test_healthcommerce" in body
    assert settings.STRIPE_API_BASE in page["Content-Security-Policy"]

    done = browser.post("/p/pay/", {"stripeToken": card_token(VISA)})

    assert done.status_code == 200 and "We received your payment" in done.content.decode()
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.amount_cents) == (Payment.Status.SUCCEEDED, 9800)
    assert PurchaseLink.objects.get(order=order).completed_at is not None
    assert confirmations(order) == 1
    order.refresh_from_db()
    assert (order.terms_version, order.delivery_preference) == ("2026-11", "standard")
    assert browser.get("/p/pay/")["Location"] == "/p/track/"


def test_a_declined_card_is_said_plainly_and_another_card_pays(self_pay: tuple[Order, str]) -> None:
    order, token = self_pay
    browser = verified(token)
    browser.post("/p/confirm/", CONFIRM)

    declined = browser.post("/p/pay/", {"stripeToken": card_token(DECLINED)})

    assert declined.status_code == 402 and "Your card was declined" in declined.content.decode()
    assert confirmations(order) == 0
    assert OrderEvent.objects.filter(order=order, kind="payment_failed").exists()
    paid = browser.post("/p/pay/", {"stripeToken": card_token(VISA)})
    assert "We received your payment" in paid.content.decode()
    statuses = sorted(Payment.objects.filter(order=order).values_list("status", flat=True))
    assert statuses == [Payment.Status.CANCELLED, Payment.Status.SUCCEEDED]
    assert confirmations(order) == 1


def test_the_pay_page_refuses_a_missing_token_and_needs_a_session(self_pay: tuple[Order, str]) -> None:
    _, token = self_pay
    assert Client().get("/p/pay/").status_code == 403
    browser = verified(token)
    assert browser.get("/p/pay/")["Location"] == "/p/confirm/"  # nothing started yet
    browser.post("/p/confirm/", CONFIRM)
    missing = browser.post("/p/pay/", {"stripeToken": "not-a-token"})
    assert missing.status_code == 402 and "Enter your card details" in missing.content.decode()
