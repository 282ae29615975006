"""Every admin page in a real browser at 1280x800, as ``admin`` and as ``support`` (core/roles.py), logged in through
the login form with a TOTP code: each page opens, support sees no patient id anywhere, and the pages an admin
works in (index, orders, an order, an EHR site, a product, readiness, the dashboard) fit the window: nothing
wider than it, no list or inline table scrolling sideways. With ``HC_SCREENSHOTS`` set, each page is saved as a
picture (tests/e2e/conftest.py ``screenshot``)."""

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.e2e.conftest import screenshot
from tests.purchaselinks.conftest import order_factory
from tests.staff import staff_user, totp_code, totp_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


SCROLLED = """Math.max(0, ...Array.from(
    document.querySelectorAll('#changelist .results, .inline-group, #content-main .module')
).map(e => e.scrollWidth - e.clientWidth))"""


MUST_FIT = {
    "index",
    "dashboard",
    "orders-order",
    "orders-order-change",
    "order-change",
    "orders-drafts",
    "ehrsite-change",
    "ehr-ehrsite-change",
    "catalog-product-change",
    "readiness",
    "audit-auditevent",
    "ehr-ehrsite",
}


def _seed() -> Order:
    """An order with a long timeline, its purchase link, a draft, a launch and audit rows naming a patient."""
    make = order_factory()
    order = make()
    make(status=Order.Status.DRAFT, signed_at=None)
    purchase_link_issue(order=order)
    order_event_add(order=order, kind="link_sent", actor="purchaselinks:deliver", detail={"channel": "email"})
    order_event_add(order=order, kind="payment_succeeded", actor="purchaselinks:payments", detail={"a": "b" * 400})
    order_event_add(order=order, kind="status_conflict", actor="fulfillment:webhook:" + "x" * 200, detail={})
    order.site.frame_origins = ["https://epic.harbor.example"]
    order.site.quirks = {"authorize_post": True}
    order.site.discovery = {"authorization_endpoint": "https://ehr.harbor.example/oauth2/authorize"}
    order.site.save()
    Launch.objects.create(
        site=order.site,
        status=Launch.Status.ACTIVE,
        browser_key="b" * 64,
        state="s",
        code_verifier="v" * 43,
        nonce="n",
        launch_token="t",
        expires_at=timezone.now() + timedelta(hours=1),
        patient_id=order.patient_fhir_id,
    )
    audit_record(actor="clinician:Practitioner/pra77", action="phi.read", target=f"Patient/{order.patient_fhir_id}")
    return order


def _log_in(page, base: str, user) -> None:  # type: ignore[no-untyped-def]
    """A refused login first (wrong code after the right password: the page must not tell), then the real one."""
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")
    page.fill("#id_otp_token", "000000" if totp_code(totp_device(user)) != "000000" else "111111")
    page.click("input[type=submit]")
    page.wait_for_selector(".errornote")
    assert "Login refused." in page.inner_text(".errornote")
    screenshot(page, f"{user.groups.get().name}-login-refused")
    # django-otp makes the device wait after a wrong code (1 s, doubling): the staff member would wait; we reset
    TOTPDevice.objects.filter(user=user).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")
    page.fill("#id_otp_token", totp_code(totp_device(user)))
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")  # logged in


def _urls(order: Order) -> list[tuple[str, str]]:
    site: EHRSite = order.site
    urls = [("index", "/admin/"), ("dashboard", "/admin/monitoring/dashboard/")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append((f"{meta.app_label}-{meta.model_name}", f"/admin/{meta.app_label}/{meta.model_name}/"))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(
                (
                    f"{meta.app_label}-{meta.model_name}-change",
                    f"/admin/{meta.app_label}/{meta.model_name}/{first.pk}/change/",
                )
            )
    urls += [
        ("order-change", f"/admin/orders/order/{order.pk}/change/"),
        ("ehrsite-change", f"/admin/ehr/ehrsite/{site.pk}/change/"),
        ("readiness", f"/admin/golive/sites/{site.pk}/readiness/"),
        ("orders-drafts", "/admin/orders/order/?status=any"),
    ]
    return urls


@pytest.mark.parametrize("role", ["admin", "support"])
def test_every_admin_page_opens_and_fits_1280_pixels(browser, live_server, django_user_model, role: str) -> None:
    order = _seed()
    user = staff_user(django_user_model, f"{role}-walker", role)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _log_in(page, live_server.url, user)
    too_wide, failed = [], []
    for name, url in _urls(order):
        response = page.goto(f"{live_server.url}{url}")
        status = response.status if response else 0
        if status not in (200, 403) or "/admin/login/" in page.url:
            failed.append(f"{url}: {status}")
            continue
        screenshot(page, f"{role}-{name}")
        width = page.evaluate("document.documentElement.scrollWidth")
        hidden = page.evaluate(SCROLLED)  # a list or inline table scrolling sideways inside the page
        if (width > 1280 or hidden > 2) and name in MUST_FIT:
            too_wide.append(f"{url}: page {width}px, {hidden}px scrolled out of a table")
        if role == "support" and status == 200:
            text = page.content()
            assert order.patient_fhir_id not in re.sub(r'value="[^"]*"', "", text), url
    assert not failed and not too_wide, "\n".join(failed + too_wide)
