"""The patient pages through HTTP: /p/<token>/ (date of birth) -> /p/<token>/confirm/ -> thank you."""

import re
from datetime import date, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.models import LocalCommerceOrder
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.purchaselinks.errors import UNAVAILABLE_MESSAGE
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.pipeline import deliver, downstream, signed
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_NAME

Issued = tuple[PurchaseLink, str]
PHI = (PATIENT_NAME, "Mateo", "Harbor View", "Portland", "04101", "Home sleep test", "Casco Bay", "1961")


def assert_unavailable(response, status: int = 404) -> None:
    assert response.status_code == status
    body = response.content.decode()
    assert UNAVAILABLE_MESSAGE in body or "no longer valid" in body or "locked" in body
    for value in PHI:
        assert value not in body, value


def dob(day: date) -> dict[str, str]:
    return {"birth_date": day.isoformat()}


def test_the_whole_patient_journey_from_email_to_confirmation(make_order, settings) -> None:
    settings.APP_BASE_URL = "http://testserver"
    order: Order = make_order(status=Order.Status.SIGNED)
    deliver(signed(order))  # fulfillment submits, then the link is issued and emailed

    assert len(mail.outbox) == 1
    match = re.search(r"http://testserver(/p/[A-Za-z0-9_-]+/)", mail.outbox[0].body)
    assert match
    url = match.group(1)
    client = Client()

    page = client.get(url)
    assert page.status_code == 200
    assert 'type="date"' in page.content.decode()
    assert '<label for="id_birth_date">Date of birth</label>' in page.content.decode()
    assert PATIENT_NAME not in page.content.decode()

    wrong = client.post(url, dob(date(1961, 4, 4)))
    assert wrong.status_code == 200
    assert "That date of birth does not match." in wrong.content.decode()
    assert "4 attempts left" in wrong.content.decode()

    right = client.post(url, dob(BIRTH_DATE))
    assert right.status_code == 302
    assert right["Location"] == f"{url}confirm/"

    confirm = client.get(f"{url}confirm/")
    body = confirm.content.decode()
    assert confirm.status_code == 200
    for shown in (
        "Home sleep test kit",
        PATIENT_NAME,
        "12 Harbor View Rd",
        "Apt 4B",
        "Portland ME 04101",
        "Casco Bay Medicaid",
        order.reference,
    ):
        assert shown in body, shown

    done = client.post(f"{url}confirm/")
    assert done.status_code == 200
    assert "Thank you" in done.content.decode()
    link = PurchaseLink.objects.get(order=order)
    assert link.completed_at is not None
    # The confirmation reaches the backend through the outbox (order.patient_confirmed -> fulfillment.confirm).
    assert LocalCommerceOrder.objects.get(order_reference=order.reference).status == LocalCommerceOrder.Status.RECEIVED
    assert downstream() == 1
    assert LocalCommerceOrder.objects.get(order_reference=order.reference).status == LocalCommerceOrder.Status.CONFIRMED
    assert OrderEvent.objects.filter(order=order, kind="patient_confirmed").exists()

    # Confirmed once: the same link now leads to the tracking page, never to a second confirmation.
    assert client.post(f"{url}confirm/")["Location"] == f"{url}track/"
    assert LinkEvents.patient_confirmed(order) == 1
    later = Client()  # days later, another browser: the date of birth again, then tracking
    assert 'type="date"' in later.get(url).content.decode()
    assert later.post(url, dob(BIRTH_DATE))["Location"] == f"{url}track/"
    track = later.get(f"{url}track/").content.decode()
    assert "The supplier is preparing your order." in track and order.reference in track
    assert PATIENT_NAME not in track and "Casco Bay Medicaid" not in track

    actions = list(AuditEvent.objects.filter(actor=f"patient-link:{link.id}").values_list("action", "outcome"))
    assert ("purchase_link.open", "success") in actions
    assert ("purchase_link.verify", "wrong_birth_date") in actions
    assert ("purchase_link.verify", "success") in actions
    assert ("purchase_link.view", "success") in actions
    assert ("purchase_link.complete", "success") in actions
    assert ("purchase_link.track", "success") in actions


class LinkEvents:
    @staticmethod
    def patient_confirmed(order: Order) -> int:
        return OrderEvent.objects.filter(order=order, kind="patient_confirmed").count()


def test_every_page_forbids_caching_and_referrers(issued: Issued) -> None:
    client = Client()
    token = issued[1]
    responses = [
        client.get(f"/p/{token}/"),
        client.post(f"/p/{token}/", dob(date(2000, 1, 1))),
        client.get(f"/p/{'x' * 43}/"),
        client.post(f"/p/{token}/", dob(BIRTH_DATE)),
        client.get(f"/p/{token}/confirm/"),
    ]
    for response in responses:
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "same-origin"


def test_an_expired_link_shows_the_generic_page_without_phi(issued: Issued) -> None:
    PurchaseLink.objects.filter(pk=issued[0].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert_unavailable(Client().get(f"/p/{issued[1]}/"))
    assert AuditEvent.objects.filter(
        action="purchase_link.open", outcome="expired", actor=f"patient-link:{issued[0].id}"
    ).exists()


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t[:20], lambda t: t + "x" * 500]
)
def test_a_tampered_token_shows_the_generic_page(issued: Issued, mangle) -> None:
    token = mangle(issued[1])
    assert_unavailable(Client().get(f"/p/{token}/"))
    assert_unavailable(Client().post(f"/p/{token}/", dob(BIRTH_DATE)))
    assert AuditEvent.objects.filter(action="purchase_link.open", actor="patient-link:unknown").exists()


def test_a_revoked_link_shows_the_generic_page(issued: Issued) -> None:
    PurchaseLink.objects.filter(pk=issued[0].pk).update(revoked_at=timezone.now())
    assert_unavailable(Client().get(f"/p/{issued[1]}/"))


def test_five_wrong_dates_lock_the_link_even_with_the_right_date_afterwards(issued: Issued) -> None:
    client = Client()
    url = f"/p/{issued[1]}/"
    for n in range(1, 5):
        response = client.post(url, dob(date(1990, 1, n)))
        assert f"{5 - n} attempt" in response.content.decode()
    locked = client.post(url, dob(date(1990, 1, 5)))
    assert locked.status_code == 403
    assert "locked" in locked.content.decode()
    assert_unavailable(locked, status=403)
    assert_unavailable(client.post(url, dob(BIRTH_DATE)))
    assert_unavailable(client.get(url))
    assert client.get(f"{url}confirm/").status_code == 302


def test_the_confirm_page_needs_a_verified_session(issued: Issued) -> None:
    url = f"/p/{issued[1]}/"
    response = Client().get(f"{url}confirm/")
    assert response.status_code == 302
    assert response["Location"] == url
    assert Client().post(f"{url}confirm/").status_code == 302
    assert PurchaseLink.objects.get(pk=issued[0].pk).completed_at is None


def test_a_session_verified_for_one_link_cannot_open_another(issued: Issued, make_order) -> None:
    from healthcommerce.purchaselinks.services import purchase_link_issue

    _, other_token = purchase_link_issue(order=make_order())
    client = Client()
    client.post(f"/p/{issued[1]}/", dob(BIRTH_DATE))
    response = client.get(f"/p/{other_token}/confirm/")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{other_token}/"


@pytest.mark.parametrize("value", ["", "not-a-date", "1961-13-45", "2999-01-01", "0001-01-01", "9" * 500])
def test_bad_date_input_re_renders_the_form_without_counting_a_failure(issued: Issued, value: str) -> None:
    response = Client().post(f"/p/{issued[1]}/", {"birth_date": value})
    assert response.status_code == 200
    assert 'aria-invalid="true"' in response.content.decode()
    assert PurchaseLink.objects.get(pk=issued[0].pk).failed_attempts == 0


def test_odd_requests_never_answer_500(issued: Issued) -> None:
    client = Client()
    assert client.put(f"/p/{issued[1]}/").status_code == 405
    assert client.post(f"/p/{issued[1]}/", {}).status_code == 200
    assert client.get("/p/%00%ff/").status_code == 404
    assert client.get(f"/p/{'é' * 50}/").status_code == 404
    session = client.session
    session["purchaselinks_verified"] = "garbage"
    session.save()
    assert client.get(f"/p/{issued[1]}/confirm/").status_code == 302
