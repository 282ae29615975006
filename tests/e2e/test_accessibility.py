"""WCAG 2.1 AA on every patient page at a phone viewport: axe-core 4.12.1 (bundled by axe-playwright-python) finds
no serious or critical violation. Pages, in a self-pay order's journey: an unusable link, the date-of-birth form
(fresh and after a wrong date), the review page (fresh and with the consent error), the address form (with
errors), the card page (after a decline; localstripe's stand-in card fields are left out: with Stripe the card
Element is Stripe's own iframe), thank you, tracking and the terms; in English and in Spanish (``Accept-Language``,
ADR 0013), where axe also checks ``<html lang>`` and the switch's ``lang``."""

import pytest

from healthcommerce.catalog.models import Product
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.test_checkout import fill_card
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
# What the journey clicks and waits for, per page language.
TEXT = {
    "en-US": {
        "review": "Review your order",
        "pay": "Continue to payment",
        "address": "Change the address",
        "use": "Use this address",
        "declined": "Your card was declined",
        "paid": "We received your payment",
    },
    "es-MX": {
        "review": "Revise su pedido",
        "pay": "Continuar al pago",
        "address": "Cambiar la dirección",
        "use": "Usar esta dirección",
        "declined": "Su tarjeta fue rechazada",
        "paid": "Recibimos su pago",
    },
}


@pytest.mark.parametrize("locale", list(TEXT))
def test_no_serious_or_critical_violation_on_any_patient_page(
    browser, live_server, stripe_settings, monkeypatch, locale: str
) -> None:  # type: ignore[no-untyped-def]
    from axe_playwright_python.sync_playwright import Axe

    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    _, token = purchase_link_issue(order=order_factory()(product=product, payer_name=""))
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale=locale)
    text = TEXT[locale]
    axe = Axe()
    found: dict[str, list[str]] = {}

    def check(name: str, context: object = None) -> None:
        results = axe.run(page, context=context, options=WCAG_AA).response
        bad = [f"{v['id']} ({v['impact']})" for v in results["violations"] if v["impact"] in ("serious", "critical")]
        found[name] = bad
        print(f"axe {name}: {len(results['violations'])} violation(s), serious or critical: {bad or 'none'}")

    base = live_server.url
    page.goto(f"{base}/p/{'x' * 43}/")
    assert page.get_attribute("html", "lang") == locale[:2]
    check("unavailable")
    page.goto(f"{base}/p/{token}/")
    check("verify")
    page.fill("input[type=date]", "1990-01-01")
    page.click("button[type=submit]")
    check("verify-wrong")
    page.fill("input[type=date]", BIRTH_DATE.isoformat())
    page.click("button[type=submit]")
    page.wait_for_selector(f"text={text['review']}")
    check("review")
    page.click(f"text={text['pay']}")
    check("review-consent-error")
    page.click(f"text={text['address']}")
    page.fill("#id_postal_code", "123")
    page.click(f"text={text['use']}")
    check("address-errors")
    page.goto(f"{base}/p/terms/")
    check("terms")
    page.goto(f"{base}/p/confirm/")
    page.check("input[name=accept_terms]")
    page.click(f"text={text['pay']}")
    page.wait_for_selector("#card-element input")
    fill_card(page, "4000000000000341")
    page.click("#pay-button")
    page.wait_for_selector(f"text={text['declined']}")
    check("pay-declined", {"exclude": [["#card-element"]]})
    fill_card(page, "4242424242424242")
    page.click("#pay-button")
    page.wait_for_selector(f"text={text['paid']}")
    check("paid")
    page.goto(f"{base}/p/track/")
    check("track")

    assert {name: bad for name, bad in found.items() if bad} == {}
    # Not vacuous: the same run finds a picture without alternative text once there is one.
    page.evaluate("document.querySelector('main').append(Object.assign(document.createElement('img'), {src: 'x.png'}))")
    check("control")
    assert found["control"] == ["image-alt (critical)"]
