"""The review page: consent to the terms is required, a delivery preference is kept, and a corrected ship-to is
validated, kept beside the signed one, and reaches the commerce backend with the confirmation."""

from django.test import Client

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.pipeline import deliver, downstream, signed
from tests.purchaselinks.conftest import SHIP_TO
from tests.purchaselinks.test_pages import CONFIRM, Issued, verified

NEW_ADDRESS = {"line1": "40 Pleasant St", "line2": "Unit 2", "city": "Bangor", "state": "ME", "postal_code": "04401"}


def test_confirming_needs_consent_to_the_terms(issued: Issued) -> None:
    browser = verified(issued[1])

    page = browser.post("/p/confirm/", {"delivery_preference": "standard"})

    assert page.status_code == 200 and "Please agree to the terms of sale" in page.content.decode()
    assert 'aria-invalid="true"' in page.content.decode()
    assert PurchaseLink.objects.get(pk=issued[0].pk).completed_at is None


def test_the_preference_and_the_accepted_terms_are_kept_on_the_order(issued: Issued, order: Order) -> None:
    browser = verified(issued[1])
    assert "Thank you" in browser.post("/p/confirm/", {**CONFIRM, "delivery_preference": "signature"}).content.decode()

    order.refresh_from_db()
    assert (order.delivery_preference, order.terms_version) == ("signature", "2026-11")
    assert order.terms_accepted_at is not None
    assert Client().get("/p/terms/").status_code == 200


def test_a_corrected_address_is_validated(issued: Issued, order: Order) -> None:
    browser = verified(issued[1])
    form = browser.get("/p/address/").content.decode()
    assert 'value="12 Harbor View Rd"' in form and 'value="04101"' in form

    bad = browser.post("/p/address/", {**NEW_ADDRESS, "state": "XX", "postal_code": "4401"})
    body = bad.content.decode()
    assert bad.status_code == 200 and body.count('role="alert"') == 1  # one error summary for both fields
    assert 'href="#id_state"' in body and 'href="#id_postal_code"' in body
    order.refresh_from_db()
    assert order.patient_ship_to == {}


def test_a_corrected_address_reaches_the_backend_and_the_signed_one_stays(make_order) -> None:  # type: ignore[no-untyped-def]
    order: Order = make_order(status=Order.Status.SIGNED)
    deliver(signed(order))
    link = PurchaseLink.objects.get(order=order)
    from healthcommerce.purchaselinks.services import purchase_link_issue, purchase_link_revoke

    purchase_link_revoke(link=link, actor="test")
    _, token = purchase_link_issue(order=order)
    browser = verified(token)

    assert browser.post("/p/address/", NEW_ADDRESS)["Location"] == "/p/confirm/"
    review = browser.get("/p/confirm/").content.decode()
    assert "40 Pleasant St" in review and "the address you gave us" in review
    browser.post("/p/confirm/", {**CONFIRM, "delivery_preference": "leave_at_door"})
    assert downstream() == 2  # order.patient_confirmed -> fulfillment.confirm, and the patient's message

    order.refresh_from_db()
    assert order.ship_to == SHIP_TO  # the signed order keeps its address
    assert order.patient_ship_to["line"] == ["40 Pleasant St", "Unit 2"]
    local = LocalCommerceOrder.objects.get(order_reference=order.reference)
    assert local.payload["ship_to"]["line1"] == "12 Harbor View Rd"  # what was submitted stays as it was
    assert local.confirmation["ship_to"]["line1"] == "40 Pleasant St"
    assert local.confirmation["ship_to"]["postal_code"] == "04401"
    assert local.confirmation["delivery_preference"] == "leave_at_door"
    changed = OrderEvent.objects.get(order=order, kind="ship_to_changed_by_patient")
    assert changed.detail["fields"] == ["city", "line", "postal_code"]
    assert "Bangor" not in str(changed.detail)
    assert AuditEvent.objects.filter(action="purchase_link.ship_to_change").exists()


def test_the_address_page_needs_a_verified_session(issued: Issued) -> None:
    assert Client().get("/p/address/").status_code == 403
    browser = verified(issued[1])
    browser.post("/p/confirm/", CONFIRM)
    assert browser.get("/p/address/")["Location"] == "/p/track/"  # too late to change once confirmed
