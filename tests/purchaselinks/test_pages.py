"""The patient pages through HTTP: /p/<token>/ binds the session and redirects -> /p/verify/ (date of birth) ->
/p/confirm/ -> thank you -> /p/track/. The token is in one URL only."""

import logging
import re
from datetime import date, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
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


CONFIRM = {"delivery_preference": "standard", "accept_terms": "on"}


def dob(day: date) -> dict[str, str]:
    return {"birth_date": day.isoformat()}


def opened(token: str, client: Client | None = None) -> Client:
    """A browser that opened ``/p/<token>/`` (bound to the link, not yet verified)."""
    client = client or Client()
    response = client.get(f"/p/{token}/")
    assert (response.status_code, response["Location"]) == (302, "/p/verify/"), response.status_code
    return client


def verified(token: str) -> Client:
    client = opened(token)
    assert client.post("/p/verify/", dob(BIRTH_DATE))["Location"] == "/p/confirm/"
    return client


def test_the_whole_patient_journey_from_email_to_confirmation(make_order, settings) -> None:
    settings.APP_BASE_URL = "http://testserver"
    order: Order = make_order(status=Order.Status.SIGNED)
    deliver(signed(order))  # fulfillment submits, then the link is issued and emailed

    assert len(mail.outbox) == 1
    match = re.search(r"http://testserver(/p/[A-Za-z0-9_-]+/)", mail.outbox[0].body)
    assert match
    url = match.group(1)
    client = Client()

    first = client.get(url)  # the only request that carries the token
    assert (first.status_code, first["Location"]) == (302, "/p/verify/")
    page = client.get("/p/verify/")
    assert page.status_code == 200
    assert 'type="date"' in page.content.decode()
    assert '<label for="id_birth_date">Date of birth</label>' in page.content.decode()
    assert PATIENT_NAME not in page.content.decode()

    wrong = client.post("/p/verify/", dob(date(1961, 4, 4)))
    assert wrong.status_code == 200
    assert "We could not confirm that date of birth" in wrong.content.decode()
    assert "attempt" not in wrong.content.decode()  # no counter: wrong and locked look alike

    right = client.post("/p/verify/", dob(BIRTH_DATE))
    assert (right.status_code, right["Location"]) == (302, "/p/confirm/")

    confirm = client.get("/p/confirm/")
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

    done = client.post("/p/confirm/", CONFIRM)
    assert done.status_code == 200
    assert "Thank you" in done.content.decode()
    link = PurchaseLink.objects.get(order=order)
    assert link.completed_at is not None
    # The confirmation reaches the backend through the outbox (order.patient_confirmed -> fulfillment.confirm).
    assert LocalCommerceOrder.objects.get(order_reference=order.reference).status == LocalCommerceOrder.Status.RECEIVED
    assert downstream() == 2  # fulfillment.confirm and the patient's confirmation message
    assert mail.outbox[-1].subject == "Your order is confirmed"
    assert LocalCommerceOrder.objects.get(order_reference=order.reference).status == LocalCommerceOrder.Status.CONFIRMED
    assert OrderEvent.objects.filter(order=order, kind="patient_confirmed").exists()

    # Confirmed once: the same link now leads to the tracking page, never to a second confirmation.
    assert client.post("/p/confirm/")["Location"] == "/p/track/"
    assert LinkEvents.patient_confirmed(order) == 1
    later = opened(url.strip("/").split("/")[1])  # days later, another browser: the date of birth again
    assert later.post("/p/verify/", dob(BIRTH_DATE))["Location"] == "/p/track/"
    track = later.get("/p/track/").content.decode()
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
        client.get("/p/verify/"),
        client.post("/p/verify/", dob(date(2000, 1, 1))),
        client.get(f"/p/{'x' * 43}/"),
        client.post("/p/verify/", dob(BIRTH_DATE)),
        client.get("/p/confirm/"),
        Client().get("/p/confirm/"),
    ]
    for response in responses:
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "same-origin"


def test_the_token_leaves_the_address_bar_at_once_and_never_reaches_a_log(
    issued: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    token = issued[1]
    client = opened(token)
    client.get(f"/p/{'x' * 43}/")  # a 404 that Django logs with its path
    client.post("/p/verify/", dob(BIRTH_DATE))
    client.get("/p/confirm/")

    logged = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert token not in logged and "x" * 43 not in logged


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
    assert AuditEvent.objects.filter(action="purchase_link.open", actor="patient-link:unknown").exists()


def test_a_revoked_link_shows_the_generic_page(issued: Issued) -> None:
    PurchaseLink.objects.filter(pk=issued[0].pk).update(revoked_at=timezone.now())
    assert_unavailable(Client().get(f"/p/{issued[1]}/"))


def test_five_wrong_dates_lock_the_link_and_locked_answers_like_wrong(issued: Issued) -> None:
    client = opened(issued[1])
    answers = [client.post("/p/verify/", dob(date(1990, 1, n))) for n in range(1, 6)]
    after_lock = client.post("/p/verify/", dob(BIRTH_DATE))  # the right date, too late

    assert PurchaseLink.objects.get(pk=issued[0].pk).locked_at is not None
    bodies = {(r.status_code, r.content.decode().replace(get_token_of(r), "")) for r in [*answers, after_lock]}
    assert len(bodies) == 1  # wrong, wrong at the limit and locked: one answer
    assert_unavailable(client.get("/p/confirm/"))
    assert_unavailable(Client().get(f"/p/{issued[1]}/"))


def get_token_of(response) -> str:  # type: ignore[no-untyped-def]
    """The CSRF token rendered in ``response`` (differs per render), to compare pages without it."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    return match.group(1) if match else ""


def test_the_confirm_page_needs_a_verified_session(issued: Issued) -> None:
    assert Client().get("/p/confirm/").status_code == 403  # no session: open the link again
    client = opened(issued[1])
    assert client.get("/p/confirm/")["Location"] == "/p/verify/"
    assert client.post("/p/confirm/")["Location"] == "/p/verify/"
    assert PurchaseLink.objects.get(pk=issued[0].pk).completed_at is None


def test_opening_another_link_rebinds_the_session_and_needs_its_own_date(issued: Issued, make_order) -> None:
    from healthcommerce.purchaselinks.services import purchase_link_issue

    _, other_token = purchase_link_issue(order=make_order())
    client = verified(issued[1])
    opened(other_token, client)
    assert client.get("/p/confirm/")["Location"] == "/p/verify/"


def test_an_idle_session_ends_after_fifteen_minutes(issued: Issued, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock

    client = verified(issued[1])
    now = clock.time()
    monkeypatch.setattr("healthcommerce.purchaselinks.views.time.time", lambda: now + 15 * 60 + 1)
    ended = client.get("/p/confirm/")
    assert ended.status_code == 403 and "open the link from your message again" in ended.content.decode()


@pytest.mark.parametrize("value", ["", "not-a-date", "1961-13-45", "2999-01-01", "0001-01-01", "9" * 500])
def test_bad_date_input_re_renders_the_form_without_counting_a_failure(issued: Issued, value: str) -> None:
    response = opened(issued[1]).post("/p/verify/", {"birth_date": value})
    assert response.status_code == 200
    assert 'aria-invalid="true"' in response.content.decode()
    assert PurchaseLink.objects.get(pk=issued[0].pk).failed_attempts == 0


def test_odd_requests_never_answer_500(issued: Issued) -> None:
    client = Client()
    assert client.put(f"/p/{issued[1]}/").status_code == 405
    assert client.post(f"/p/{issued[1]}/").status_code == 405
    assert client.post("/p/verify/", {}).status_code == 403
    assert client.get("/p/%00%ff/").status_code == 404
    assert client.get(f"/p/{'é' * 50}/").status_code == 404
    session = client.session
    session["purchaselinks_link"] = "garbage"
    session.save()
    assert client.get("/p/confirm/").status_code == 403
    session = client.session
    session["purchaselinks_link"] = {"link_id": "not-a-uuid", "seen": clock_now(), "verified": True}
    session.save()
    assert client.get("/p/confirm/").status_code == 403


def clock_now() -> float:
    import time as clock

    return clock.time()
