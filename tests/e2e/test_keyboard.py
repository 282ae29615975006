"""A patient who uses only a keyboard completes a purchase: date of birth, review, consent, card and payment,
with Tab, Space, Enter and typing only (Debian's chromium, phone viewport, localstripe on loopback)."""

import pytest

from healthcommerce.catalog.models import Product
from healthcommerce.purchaselinks.models import Payment, PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.conftest import wait_for
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def tab_to(page, selector: str, limit: int = 40) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the element ``selector`` has the focus (none if it has it already); fail after ``limit``."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"Tab never reached {selector}")


def test_a_keyboard_only_patient_pays_and_confirms(browser, live_server, stripe_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    order = order_factory()(product=product, payer_name="")
    _, token = purchase_link_issue(order=order)
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{live_server.url}/p/{token}/")

    tab_to(page, "input[type=date]")
    page.keyboard.type(BIRTH_DATE.strftime("%m%d%Y"))  # a date input takes the digits in the locale's order
    tab_to(page, "button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Review your order")

    tab_to(page, "input[name=accept_terms]")
    page.keyboard.press("Space")
    tab_to(page, "form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#card-element input")

    card = {"number": "4242424242424242", "exp_month": "12", "exp_year": "34", "cvc": "123", "postal_code": "04101"}
    for field, value in card.items():  # the stand-in card element may move the focus on by itself
        tab_to(page, f"#card-element input[placeholder={field}]")
        page.keyboard.type(value)
    tab_to(page, "#pay-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=We received your payment")

    assert Payment.objects.get(order=order).status == Payment.Status.SUCCEEDED
    assert wait_for(lambda: PurchaseLink.objects.get(order=order).completed_at is not None)
