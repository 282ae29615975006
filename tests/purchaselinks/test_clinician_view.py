"""What the clinician sees of the patient's side, on relaunch: one status in plain words derived from the order,
the supplier and the patient's progress ("Awaiting patient", "Paid $98.00", "Shipped", "Delivered"), the ship-to
the order will really go to (the patient's correction, labelled), tracking as "Shipped via UPS · 1Z... (track)"
with only https links, and timeline entries that say what happened."""

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from healthcommerce.catalog.models import Product
from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.status import fulfillment_status_apply
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue, purchase_link_revoke
from tests.pipeline import deliver, signed
from tests.purchaselinks.test_checkout import VISA, card_token
from tests.purchaselinks.test_pages import CONFIRM, verified
from tests.purchaselinks.test_review import NEW_ADDRESS
from tests.relaunch import relaunch_owned

UPS = {"carrier": "UPS", "tracking_number": "1Z999AA10123456784", "tracking_url": "https://www.ups.com/track?t=1"}


@pytest.fixture
def clinician() -> Callable[[Order], tuple[Client, str]]:
    """The clinician's browser relaunching the app for the order's patient; returns it and the launch's home."""

    def relaunch(order: Order) -> tuple[Client, str]:
        browser = Client()
        launch = relaunch_owned(browser, order, fhir_user="Practitioner/pra77")
        return browser, f"/o/{launch.pk}/"

    return relaunch


def status_of(html: str) -> str:
    found = re.search(r'id="order-status"[^>]*>(.*?)</span>', html)
    assert found, "no status badge"
    return found.group(1)


def listed_status(html: str, order: Order) -> str:
    row = re.search(
        re.escape(order.reference) + r"</a>.*?<span class=\"status ([^\"]*)\"[^>]*>(.*?)</span>", html, re.S
    )
    assert row, "the order is not in the list of earlier orders"
    return row.group(2)


def ship(order: Order, status: str = "shipped", **tracking: str) -> None:
    fulfillment_status_apply(
        order_id=order.pk, update=BackendStatus(status, **tracking), source="test", backend="local", actor="t"
    )


def test_the_clinician_sees_the_patient_corrected_the_address_paid_and_what_shipped(
    make_order: Callable[..., Order], stripe_settings, clinician
) -> None:  # type: ignore[no-untyped-def]
    product = Product.objects.create(sku="BGM-T", name="Glucose monitor", kind="device", unit_price_cents=4900)
    order = make_order(status=Order.Status.SIGNED, product=product, payer_name="", quantity=2)
    deliver(signed(order))  # to the local supplier; the purchase link goes out by email
    browser, home = clinician(order)
    detail = f"{home}orders/{order.pk}/"
    assert listed_status(browser.get(f"{home}?all=1").content.decode(), order) == "Awaiting patient"
    assert status_of(browser.get(detail).content.decode()) == "Awaiting patient"

    purchase_link_revoke(link=PurchaseLink.objects.get(order=order), actor="test")  # its token is not kept
    _, token = purchase_link_issue(order=order)
    patient = verified(token)
    assert patient.post("/p/address/", NEW_ADDRESS)["Location"] == "/p/confirm/"
    assert patient.post("/p/confirm/", CONFIRM)["Location"] == "/p/pay/"
    assert "We received your payment" in patient.post("/p/pay/", {"stripeToken": card_token(VISA)}).content.decode()

    page = browser.get(detail).content.decode()
    assert status_of(page) == "Paid $98.00"
    assert 'class="status status-moving"' in page  # in progress, not green
    ship_to = re.search(r'id="ship-to">(.*?)</td>', page, re.S)
    today = timezone.localdate().isoformat()
    assert ship_to and "40 Pleasant St, Unit 2, Bangor, ME 04401" in ship_to.group(1)
    assert f"Corrected by the patient on {today}" in ship_to.group(1)
    assert "Signed with: 12 Harbor View Rd" in ship_to.group(1)
    assert "Patient corrected the ship-to address" in page and "Patient paid $98.00" in page
    assert listed_status(browser.get(f"{home}?all=1").content.decode(), order) == "Paid $98.00"

    ship(order, tracking_number="1Z999AA10123456784")  # no carrier reported
    page = browser.get(detail).content.decode()
    assert status_of(page) == "Shipped" and 'class="status status-moving"' in page
    tracking = re.search(r'id="tracking">(.*?)</td>', page, re.S)
    assert tracking and tracking.group(1).strip() == "Shipped 1Z999AA10123456784"
    assert "Carrier" not in page and "( 1Z" not in page and "Fulfilled" not in page

    ship(order, "delivered")
    page = browser.get(detail).content.decode()
    assert status_of(page) == "Delivered" and 'class="status status-done"' in page


def test_tracking_names_the_carrier_and_links_only_https(make_order: Callable[..., Order], clinician) -> None:  # type: ignore[no-untyped-def]
    order = make_order(commerce_backend="local", commerce_id="x")
    ship(order, **UPS)
    other = make_order(commerce_backend="local", commerce_id="y")
    ship(other, carrier="UPS", tracking_number="T-1", tracking_url="javascript:alert(1)")
    browser, home = clinician(order)

    page = browser.get(f"{home}orders/{order.pk}/").content.decode()
    tracking = re.search(r'id="tracking">(.*?)</td>', page, re.S)
    assert tracking
    assert tracking.group(1).startswith('Shipped via UPS · 1Z999AA10123456784 (<a href="https://www.ups.com/track?t=1"')
    assert ">track</a>)" in tracking.group(1)
    assert "Shipped via UPS · 1Z999AA10123456784" in page.split('id="timeline"')[1]
    listing = browser.get(f"{home}?all=1").content.decode()
    assert "via UPS · 1Z999AA10123456784" in listing

    # The javascript: URL is dropped where it enters (fulfillment.status); UPS's own https page takes its place.
    unsafe = browser.get(f"{home}orders/{other.pk}/").content.decode()
    assert "via UPS · T-1" in unsafe and "javascript:" not in unsafe
    assert '<a href="https://www.ups.com/track?tracknum=T-1"' in unsafe
    other.tracking_url = "javascript:alert(1)"  # stored before the check at entry existed: never a link
    other.save(update_fields=["tracking_url"])
    stored = browser.get(f"{home}orders/{other.pk}/").content.decode()
    assert "javascript:" not in stored and "track</a>" not in stored


def test_the_timeline_says_what_happened_in_plain_words(make_order: Callable[..., Order], clinician) -> None:  # type: ignore[no-untyped-def]
    order = make_order(commerce_backend="local", commerce_id="x")
    order_event_add(order=order, kind="link_sent", actor="t", detail={"channel": "email"})
    order_event_add(
        order=order, kind="link_not_sent", actor="t", detail={"reason": "no_contact_phone", "channel": "sms"}
    )
    order_event_add(order=order, kind="status_notified", actor="t", detail={"status": "shipped", "channel": "email"})
    browser, home = clinician(order)

    page = browser.get(f"{home}orders/{order.pk}/").content.decode()

    assert "Purchase link sent to the patient by email" in page
    assert "No text sent: no mobile number on file" in page
    assert "Patient notified that it shipped by email" in page
    assert "Link not sent" not in page and "Patient told" not in page


def test_a_covered_order_the_patient_confirmed_says_so_and_nothing_was_paid(issued, order: Order, clinician) -> None:  # type: ignore[no-untyped-def]
    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")
    assert "Thank you" in verified(issued[1]).post("/p/confirm/", CONFIRM).content.decode()  # Medicaid covers it
    browser, home = clinician(order)

    page = browser.get(f"{home}orders/{order.pk}/").content.decode()

    assert status_of(page) == "Patient confirmed" and "nothing to pay" in page


@pytest.mark.parametrize(
    ("status", "kinds", "expected", "tone"),
    [
        (Order.Status.SIGNED, [], "Signed", "waiting"),
        (Order.Status.SUBMITTED, [], "Sent to supplier", "waiting"),
        (Order.Status.CANCELLED, ["link_sent"], "Cancelled", "stopped"),
        (Order.Status.FAILED, [], "Failed: not sent to the supplier", "stopped"),
        (Order.Status.SUBMITTED, ["link_sent", "payment_succeeded", "payment_refunded"], "Refunded", "stopped"),
    ],
)
def test_the_one_status_follows_the_furthest_stage(make_order, clinician, status, kinds, expected, tone) -> None:  # type: ignore[no-untyped-def]
    order = make_order(status=status)
    for kind in kinds:
        order_event_add(order=order, kind=kind, actor="t", detail={"amount_cents": 500} if "payment" in kind else {})
    browser, home = clinician(order)

    page = browser.get(f"{home}orders/{order.pk}/").content.decode()

    assert status_of(page) == expected and f'class="status status-{tone}"' in page
