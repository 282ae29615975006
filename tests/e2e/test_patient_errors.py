"""A patient at phone size (390x844) in a real browser, in English and in Spanish: a failed submit puts an error
summary at the top and the cursor on the first invalid field; the thank-you page is a receipt; the track page
links carrier and number to the carrier's tracking page."""

import pytest

from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PatientLinkSite
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.conftest import screenshot
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory
from tests.purchaselinks.test_status_notices import report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PHONE = {"width": 390, "height": 844}
TEXT = {
    "en": {
        "review": "Review your order",
        "confirm": "Confirm my order",
        "done": "Your receipt",
        "fix": "Please correct",
    },
    "es": {"review": "Revise su pedido", "confirm": "Confirmar mi pedido", "done": "Su recibo", "fix": "Corrija"},
}


def focused_id(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_failed_submit_focuses_the_first_invalid_field_under_a_summary(
    browser, live_server, monkeypatch, language: str
) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)  # no worker in this test
    order = order_factory()()
    PatientLinkSite.objects.filter(site_id=order.site_id).update(patient_support_phone="(207) 555-0100")
    _, token = purchase_link_issue(order=order)
    locale = "es-US" if language == "es" else "en-US"
    context = browser.new_context(viewport=PHONE, locale=locale)
    page = context.new_page()
    words = TEXT[language]

    page.goto(f"{live_server.url}/p/{token}/")
    page.click("button[type=submit]")  # no date of birth
    page.wait_for_selector("#error-summary")  # the refused page has loaded (the click does not wait for it)
    assert focused_id(page) == "id_birth_date"
    screenshot(page, f"{language}-1-verify-error")
    page.fill("input[type=date]", BIRTH_DATE.isoformat())
    page.click("button[type=submit]")
    page.wait_for_selector(f"text={words['review']}")
    screenshot(page, f"{language}-2-review")

    page.click(f"text={words['confirm']}")  # the terms not accepted
    page.wait_for_selector("#error-summary")
    assert focused_id(page) == "id_accept_terms"
    assert words["fix"] in page.inner_text("#error-summary")
    assert page.get_attribute("#id_accept_terms", "aria-invalid") == "true"
    screenshot(page, f"{language}-3-terms-error")

    page.goto(f"{live_server.url}/p/address/")
    page.fill("#id_postal_code", "123")
    page.click("button[type=submit]")
    page.wait_for_selector("#error-summary")
    assert focused_id(page) == "id_postal_code"
    page.click("#error-summary a")  # the summary's link goes to the field
    assert focused_id(page) == "id_postal_code"
    screenshot(page, f"{language}-4-address-error")
    page.fill("#id_postal_code", "04101")
    page.click("button[type=submit]")
    page.wait_for_selector(f"text={words['review']}")

    page.check("#id_accept_terms")
    page.click(f"text={words['confirm']}")
    page.wait_for_selector(f"text={words['done']}")
    assert "(207) 555-0100" in page.inner_text("main")
    screenshot(page, f"{language}-5-receipt")

    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")
    report(order, "shipped", carrier="usps", tracking_number="9400100000000000000000")
    page.goto(f"{live_server.url}/p/track/")
    link = page.locator("#track-number a")
    assert link.inner_text() == "USPS 9400100000000000000000"
    assert link.get_attribute("href", timeout=5000).startswith("https://tools.usps.com/")  # type: ignore[union-attr]
    screenshot(page, f"{language}-6-track")
    context.close()
