"""The patient's link in a real browser (Debian's chromium, a phone viewport), against the app in this process
(``live_server``): a covered order confirmed without paying, a wrong date of birth until the link locks (the
same answer every time), parallel guesses from many browsers at once, and expired, revoked, used and tampered
links."""

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_NAME, order_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthcommerce.outbox import tasks

    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)  # no worker in these tests


def test_a_covered_order_is_confirmed_without_a_payment_step(browser, live_server, no_broker) -> None:  # type: ignore[no-untyped-def]
    order = order_factory()()  # Casco Bay Medicaid: covered by the seeded payer rule
    _, token = purchase_link_issue(order=order)
    page = browser.new_page(viewport=PHONE)

    page.goto(f"{live_server.url}/p/{token}/")
    page.fill("input[type=date]", BIRTH_DATE.isoformat())
    page.click("button[type=submit]")
    page.wait_for_selector("text=Review your order")
    assert "$0.00" in page.inner_text("#you-pay")
    page.click("text=Confirm my order")
    assert "Please agree to the terms of sale" in page.inner_text("body")  # consent is required
    page.check("input[name=accept_terms]")
    page.click("text=Confirm my order")
    page.wait_for_selector("text=Thank you")
    assert PurchaseLink.objects.get(order=order).completed_at is not None


def test_wrong_dates_lock_the_link_with_one_answer_throughout(browser, live_server, no_broker) -> None:  # type: ignore[no-untyped-def]
    _, token = purchase_link_issue(order=order_factory()())
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{live_server.url}/p/{token}/")
    answers = []
    for day in range(1, 7):  # five wrong dates, then the right one after the lock
        page.fill("input[type=date]", f"1990-01-0{day}" if day < 6 else BIRTH_DATE.isoformat())
        page.click("button[type=submit]")
        answers.append(page.inner_text("[role=alert]"))

    assert len(set(answers)) == 1 and "could not confirm" in answers[0]
    assert "Review your order" not in page.inner_text("body")
    page.goto(f"{live_server.url}/p/{token}/")
    assert "Link not available" in page.inner_text("body")


@pytest.mark.parametrize("kind", ["expired", "revoked", "used", "tampered"])
def test_an_unusable_link_shows_one_page_without_patient_data(browser, live_server, no_broker, kind: str) -> None:  # type: ignore[no-untyped-def]
    link, token = purchase_link_issue(order=order_factory()())
    changes = {
        "expired": {"expires_at": timezone.now() - timedelta(minutes=1)},
        "revoked": {"revoked_at": timezone.now()},
        "used": {"completed_at": timezone.now() - timedelta(days=365)},  # past the tracking window too
        "tampered": {},
    }[kind]
    PurchaseLink.objects.filter(pk=link.pk).update(**changes)
    url_token = token[:-1] + ("A" if token[-1] != "A" else "B") if kind == "tampered" else token
    page = browser.new_page(viewport=PHONE)

    response = page.goto(f"{live_server.url}/p/{url_token}/")

    assert response is not None and response.status == 404
    body = page.inner_text("body")
    assert "Link not available" in body and "contact your clinic" in body
    assert PATIENT_NAME not in body and "Home sleep test" not in body


GUESSERS = 12
# The date-of-birth form (every patient page also has a language switch form), submitted at the instant ``at``.
SUBMIT_AT = (
    "at => setTimeout(() => document.querySelector('input[type=date]').form.requestSubmit(),"
    " Math.max(0, at - Date.now()))"
)


def test_parallel_guesses_from_many_browsers_are_compared_at_most_five_times(browser, live_server, no_broker) -> None:  # type: ignore[no-untyped-def]
    """Twelve browsers, each with its own session, submit a wrong date at the same instant: only five attempts are
    ever reserved and compared (the link locks), every browser gets the same answer, and the right date after
    that is refused too (issue 8: before, all parallel guesses were compared before the lock)."""
    cache.clear()  # the per-address limit (20 wrong dates an hour) counts the earlier tests' guesses from 127.0.0.1
    link, token = purchase_link_issue(order=order_factory()())
    pages = []
    for n in range(GUESSERS):
        page = browser.new_context(viewport=PHONE).new_page()
        page.goto(f"{live_server.url}/p/{token}/")
        page.fill("input[type=date]", f"1990-02-{n + 1:02d}")
        pages.append(page)

    # One instant for all: each page submits its form when the shared clock reaches it.
    fire_at = int(time.time() * 1000) + 1500
    for page in pages:
        page.evaluate(SUBMIT_AT, fire_at)
    answers = []
    for page in pages:
        page.wait_for_url("**/p/verify/**", wait_until="load")
        page.wait_for_function("() => document.querySelector('[role=alert]') !== null", timeout=60_000)
        answers.append(page.inner_text("[role=alert]"))

    assert len(answers) == GUESSERS and len(set(answers)) == 1 and "could not confirm" in answers[0]
    link.refresh_from_db()
    assert link.locked_at is not None and link.failed_attempts == 5
    verifies = AuditEvent.objects.filter(action="purchase_link.verify", actor=f"patient-link:{link.pk}")
    compared = verifies.filter(outcome__in=["wrong_birth_date", "locked"]).count()
    refused_unseen = verifies.filter(outcome__startswith="refused_").count()
    assert (compared, refused_unseen) == (5, GUESSERS - 5)

    late = browser.new_context(viewport=PHONE).new_page()
    late.goto(f"{live_server.url}/p/{token}/")
    assert "Link not available" in late.inner_text("body")  # locked: the right date is never asked for
