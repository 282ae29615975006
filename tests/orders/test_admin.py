"""The admin's order list and order page (healthcommerce/orders/admin.py): few columns, a payment column read from
the timeline (orders/selectors.py ``order_payment_label``), signed-and-later orders by default with drafts one
filter away, and a timeline whose long entries are clipped with the whole text as a tooltip."""

import html
import re

import pytest
from django.test import Client

from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from tests.purchaselinks.conftest import order_factory
from tests.staff import staff_login, staff_user

LIST = "/admin/orders/order/"


@pytest.fixture
def orders(db: None) -> dict[str, Order]:
    make = order_factory()
    made = {
        "draft": make(status=Order.Status.DRAFT, signed_at=None),
        "paid": make(),
        "refunded": make(),
        "failed": make(),
        "free": make(),
        "waiting": make(),
        "new": make(status=Order.Status.SIGNED),
    }
    actor = "purchaselinks:payments"
    order_event_add(order=made["paid"], kind="payment_failed", actor=actor, detail={"code": "card_declined"})
    order_event_add(order=made["paid"], kind="payment_succeeded", actor=actor)
    order_event_add(order=made["paid"], kind="patient_confirmed", actor=actor)
    order_event_add(order=made["refunded"], kind="payment_succeeded", actor=actor)
    order_event_add(order=made["refunded"], kind="payment_refunded", actor=actor)
    order_event_add(order=made["failed"], kind="link_sent", actor=actor)
    order_event_add(order=made["failed"], kind="payment_failed", actor=actor)
    order_event_add(order=made["free"], kind="patient_confirmed", actor=actor)
    order_event_add(order=made["waiting"], kind="link_sent", actor=actor)
    return made


def _rows(html: str) -> dict[str, str]:
    """Each listed order's reference and its payment cell."""
    rows = re.findall(r'<tr>.*?field-reference.*?>([^<]+)</a>.*?class="field-payment">([^<]*)</td>', html, re.S)
    return {reference.strip(): payment for reference, payment in rows}


def test_the_order_list_leaves_drafts_out_by_default_and_shows_them_on_request(orders, admin_client) -> None:
    shown = _rows(admin_client.get(LIST).content.decode())
    assert orders["draft"].reference not in shown and orders["new"].reference in shown
    page = admin_client.get(LIST).content.decode()
    assert "Signed and later" in page and "Any, drafts included" in page
    assert orders["draft"].reference in _rows(admin_client.get(LIST, {"status": "draft"}).content.decode())
    everything = _rows(admin_client.get(LIST, {"status": "any"}).content.decode())
    assert {order.reference for order in orders.values()} <= set(everything)


def test_the_order_list_has_a_payment_column_read_from_the_timeline(orders, admin_client) -> None:
    shown = _rows(admin_client.get(LIST).content.decode())
    expected = {
        "paid": "Paid",
        "refunded": "Refunded",
        "failed": "Payment failed",
        "free": "Confirmed, no payment",
        "waiting": "Awaiting patient",
        "new": "-",
    }
    assert {name: shown[orders[name].reference] for name in expected} == expected


def test_the_order_list_has_six_short_columns(orders, admin_client) -> None:
    page = admin_client.get(LIST).content.decode()
    header = page.split("<thead>")[1].split("</thead>")[0]
    assert header.count("<th") <= 7  # the action checkbox and six columns fit 1280 px (tests/e2e/test_admin_pages.py)
    assert "Harbor clinic</td>" in page and "https://ehr.harbor.example" not in page.split("<tbody>")[1]


def test_a_long_timeline_entry_is_clipped_with_the_whole_text_as_its_tooltip(orders, admin_client) -> None:
    order = orders["paid"]
    long_detail = {"reason": "x" * 300}
    order_event_add(order=order, kind="status_conflict", actor="fulfillment:webhook", detail=long_detail)
    page = admin_client.get(f"{LIST}{order.pk}/change/").content.decode()
    assert "x" * 300 in page  # in the tooltip
    shown = re.search(r'<span class="order-event-text" title="[^"]*x{300}[^"]*">([^<]*)</span>', page)
    assert shown and len(html.unescape(shown.group(1))) <= 60
    assert "admin/healthcommerce.css" in page


def test_the_order_page_shows_each_ship_to_as_an_address_line_and_none_as_an_editable_field(
    orders, admin_client, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: the admin's order page showed the ship-to as a raw dict; support still sees it hidden."""
    order = orders["paid"]
    order.patient_ship_to = {"line": ["1600 Sagamore Hill Rd"], "city": "Oyster Bay", "state": "NY",
                             "postal_code": "11771", "country": "US"}  # fmt: skip
    order.save(update_fields=["patient_ship_to"])

    page = admin_client.get(f"{LIST}{order.pk}/change/").content.decode()

    assert "1600 Sagamore Hill Rd, Oyster Bay, NY 11771" in page
    assert "{&#x27;line&#x27;" not in page and "{'line'" not in page and 'name="ship_to"' not in page
    support = staff_login(Client(), staff_user(django_user_model, "helpdesk", "support"))
    masked = support.get(f"{LIST}{order.pk}/change/").content.decode()
    assert "Sagamore" not in masked and "(hidden)" in masked
