"""The patient pays in a real browser: Debian's chromium opens the link, gives the date of birth, accepts the
terms and pays on the card page with localstripe's stripe.js; a declined card is said plainly and another card
pays. The app runs in this process (pytest-django's ``live_server``) against localstripe on loopback."""

import pytest

from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.models import Payment, PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.conftest import screenshot, wait_for
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def fill_card(page, number: str) -> None:  # type: ignore[no-untyped-def]
    """Type a test card into the card element (localstripe's stand-in: one input per field)."""
    element = page.locator("#card-element")
    element.locator("input[placeholder=number]").fill(number)
    element.locator("input[placeholder=exp_month]").fill("12")
    element.locator("input[placeholder=exp_year]").fill("34")
    element.locator("input[placeholder=cvc]").fill("123")
    element.locator("input[placeholder=postal_code]").fill("04101")


def test_a_patient_pays_by_card_after_a_declined_one(
    browser,
    live_server,
    stripe_settings,
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)  # no worker in this test
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    order: Order = order_factory()(product=product, payer_name="", quantity=1)
    _, token = purchase_link_issue(order=order)
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone

    page.goto(f"{live_server.url}/p/{token}/")
    assert page.url.endswith("/p/verify/")
    screenshot(page, "1-verify")
    page.fill("input[type=date]", BIRTH_DATE.isoformat())
    page.click("button[type=submit]")
    page.wait_for_selector("text=Review your order")
    assert "$49.00" in page.inner_text("#you-pay") and "No insurance" in page.inner_text("#you-pay")
    screenshot(page, "2-review")
    page.check("input[name=accept_terms]")
    page.click("text=Continue to payment")
    page.wait_for_selector("#card-element input")

    fill_card(page, "4000000000000341")
    page.click("#pay-button")
    page.wait_for_selector("text=Your card was declined")
    screenshot(page, "3-pay-declined")
    assert PurchaseLink.objects.get(order=order).completed_at is None

    fill_card(page, "4242424242424242")
    page.click("#pay-button")
    page.wait_for_selector("text=We received your payment")
    screenshot(page, "4-paid")
    page.goto(f"{live_server.url}/p/track/")
    screenshot(page, "5-track")

    assert Payment.objects.get(order=order, status=Payment.Status.SUCCEEDED).amount_cents == 4900
    assert wait_for(lambda: PurchaseLink.objects.get(order=order).completed_at is not None)
    topic = OutboxMessage.objects.filter(subscriber="fulfillment.confirm", subject=f"Order/{order.pk}")
    assert topic.count() == 1
