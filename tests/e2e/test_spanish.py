"""A Spanish-speaking patient in a real browser (Debian's chromium, a phone viewport, ``Accept-Language: es-MX``
and JavaScript off): the pages come in Spanish, a covered order is confirmed in Spanish, the switch goes to English
and back with plain forms, the token is in the first URL only, and the choice is kept for later messages."""

import re

import pytest

from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.conftest import screenshot
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PHONE = {"width": 390, "height": 844}


def test_a_patient_confirms_a_covered_order_in_spanish_and_switches_to_english_and_back(
    browser, live_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)  # no worker in this test
    order = order_factory()()  # Casco Bay Medicaid: covered by the seeded payer rule
    _, token = purchase_link_issue(order=order)
    context = browser.new_context(viewport=PHONE, locale="es-MX", java_script_enabled=False)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{live_server.url}/p/{token}/")
    assert page.url.endswith("/p/verify/")
    assert page.get_attribute("html", "lang") == "es"
    assert "Confirme su identidad" in page.inner_text("h1")
    screenshot(page, "es-1-verify")
    page.fill("input[type=date]", BIRTH_DATE.isoformat())
    page.click("button[type=submit]")
    page.wait_for_selector("text=Revise su pedido")
    you_pay = page.inner_text("#you-pay")
    assert "$0.00" in you_pay and "Su plan Casco Bay Medicaid cubre este artículo." in you_pay
    page.click("text=Confirmar mi pedido")
    assert "Para continuar, acepte las condiciones de venta." in page.inner_text("[role=alert]")
    screenshot(page, "es-2-review-consent")

    page.click("form.language-switch button")  # "English"
    page.wait_for_selector("text=Review your order")
    assert page.url.endswith("/p/confirm/") and page.get_attribute("html", "lang") == "en"
    assert page.inner_text("form.language-switch button") == "Español"
    page.click("form.language-switch button")  # "Español"
    page.wait_for_selector("text=Revise su pedido")
    assert page.url.endswith("/p/confirm/") and page.get_attribute("html", "lang") == "es"

    page.check("input[name=accept_terms]")
    page.click("text=Confirmar mi pedido")
    page.wait_for_selector("text=Gracias")
    assert "está confirmado" in page.inner_text("main")
    screenshot(page, "es-3-done")
    page.click("text=Ver el estado de su pedido ahora")
    page.wait_for_selector("text=Historial")
    assert re.search(r"\d{1,2} de [a-z]+ de \d{4}: Usted confirmó el pedido", page.inner_text("main"))
    screenshot(page, "es-4-track")

    assert PurchaseLink.objects.get(order=order).completed_at is not None
    assert Order.objects.get(pk=order.pk).patient_language == "es"  # later emails and texts in Spanish
    assert [url for url in requested if token in url] == [f"{live_server.url}/p/{token}/"]
    context.close()
