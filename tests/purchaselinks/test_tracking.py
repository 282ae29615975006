"""The patient's tracking page: the same link, once confirmed, shows where the order is, for
``PURCHASE_LINK_TRACKING_DAYS``; the date of birth is asked again in a new session."""

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.status import fulfillment_status_apply
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.purchaselinks.conftest import BIRTH_DATE
from tests.purchaselinks.test_pages import CONFIRM, Issued, assert_unavailable, dob, opened, verified


def confirmed(issued: Issued) -> tuple[str, Client]:
    """Verify and confirm the link in a browser; return its URL and that browser."""
    _, token = issued
    url = f"/p/{token}/"
    browser = verified(token)
    assert "Thank you" in browser.post("/p/confirm/", CONFIRM).content.decode()
    return url, browser


def ship(order: Order, **tracking: str) -> None:
    fulfillment_status_apply(
        order_id=order.pk, update=BackendStatus("shipped", **tracking), source="test", backend="local", actor="t"
    )


def test_the_tracking_page_shows_carrier_and_tracking_once_shipped(issued: Issued, order: Order) -> None:
    _url, browser = confirmed(issued)
    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")
    ship(order, carrier="UPS", tracking_number="1Z999AA10123456784", tracking_url="https://www.ups.com/track?t=1")

    page = browser.get("/p/track/")
    body = page.content.decode()

    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    assert "Your order is on its way." in body
    assert 'href="https://www.ups.com/track?t=1"' in body and "1Z999AA10123456784" in body
    assert "You confirmed the order" in body and "Shipped" in body
    assert AuditEvent.objects.filter(action="purchase_link.track", outcome="success").exists()


def test_a_tracking_url_that_is_not_https_is_shown_as_text_only(issued: Issued, order: Order) -> None:
    _url, browser = confirmed(issued)
    ship(order, tracking_number="T-1", tracking_url="javascript:alert(1)")

    body = browser.get("/p/track/").content.decode()

    assert "T-1" in body and "javascript:" not in body


def test_tracking_needs_the_date_of_birth_in_a_new_session(issued: Issued) -> None:
    url, _ = confirmed(issued)
    assert Client().get("/p/track/").status_code == 403  # no session at all
    stranger = opened(url.split("/")[2])

    assert stranger.get("/p/track/")["Location"] == "/p/verify/"
    assert stranger.post("/p/verify/", dob(BIRTH_DATE.replace(year=1970))).status_code == 200  # wrong: the form
    assert stranger.get("/p/track/")["Location"] == "/p/verify/"


def test_before_confirmation_the_tracking_page_sends_the_patient_to_confirm(issued: Issued) -> None:
    _, token = issued
    browser = verified(token)

    assert browser.get("/p/track/")["Location"] == "/p/confirm/"


def test_after_the_tracking_window_the_link_is_unavailable(issued: Issued, settings) -> None:  # type: ignore[no-untyped-def]
    url, browser = confirmed(issued)
    link, _ = issued
    PurchaseLink.objects.filter(pk=link.pk).update(
        completed_at=timezone.now() - timedelta(days=settings.PURCHASE_LINK_TRACKING_DAYS + 1)
    )

    assert_unavailable(browser.get("/p/track/"))
    assert_unavailable(Client().get(url))


def test_a_revoked_link_tracks_nothing(issued: Issued) -> None:
    _url, browser = confirmed(issued)
    link, _ = issued
    PurchaseLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())

    assert_unavailable(browser.get("/p/track/"))
