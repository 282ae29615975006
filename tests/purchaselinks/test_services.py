"""Purchase-link services: issue, send, access, verify, complete, revoke."""

import hashlib
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.purchaselinks import notify, services
from healthcommerce.purchaselinks.errors import UNAVAILABLE_MESSAGE, LinkUnavailable, TooManyAttempts
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import (
    purchase_link_access,
    purchase_link_complete,
    purchase_link_issue,
    purchase_link_reissue,
    purchase_link_revoke,
    purchase_link_send,
    purchase_link_verify,
)
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_NAME

Issued = tuple[PurchaseLink, str]


def test_the_token_has_256_bits_and_only_its_hash_is_stored(issued: Issued) -> None:
    link, token = issued
    assert len(token) >= 43  # 32 bytes, base64url
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM purchaselinks_purchaselink")
        rows = cursor.fetchall()
    assert token not in repr(rows)
    assert link.expires_at == pytest.approx(timezone.now() + timedelta(days=7), abs=timedelta(minutes=1))


def test_issuing_twice_returns_the_live_link_without_a_token(issued: Issued, order: Order) -> None:
    again, token = purchase_link_issue(order=order)
    assert again == issued[0]
    assert token == ""
    assert PurchaseLink.objects.count() == 1


def test_a_revoked_or_expired_link_is_replaced_on_issue(issued: Issued, order: Order) -> None:
    purchase_link_revoke(link=issued[0], actor="admin:ops")
    second, token = purchase_link_issue(order=order)
    assert second != issued[0] and token
    PurchaseLink.objects.filter(pk=second.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    third, token = purchase_link_issue(order=order)
    assert third not in (issued[0], second) and token


def test_the_email_has_the_url_and_expiry_but_no_clinical_details(issued: Issued, order: Order, settings) -> None:
    settings.APP_BASE_URL = "https://shop.example.org/"
    link, token = issued
    site_settings_update(link.order.site, {"patient_support_phone": "(207) 555-0100"})
    assert purchase_link_send(link=link, token=token) == ["email"]
    message = mail.outbox[0]
    assert message.subject == f"Your order {order.reference} is ready"
    assert f"https://shop.example.org/p/{token}/" in message.body
    assert message.body.startswith("Hello,\n")  # sent before the date of birth, maybe to a shared mailbox
    assert f"Your order {order.reference} is ready." in message.body
    assert f"Call Harbor clinic at (207) 555-0100 and give your order number, {order.reference}." in message.body
    day = timezone.localdate(link.expires_at)
    assert f"{day:%B} {day.day}, {day.year}" in message.body
    for detail in (PATIENT_NAME, "Mateo", "sleep", "Sleep", "G0399", "Casco", "Harbor View", "1961", "quantity", "$"):
        assert detail not in message.subject + message.body
    link.refresh_from_db()
    assert (link.sent_to, link.sent_at is not None) == ("mateo.okafor@example.net", True)
    assert OrderEvent.objects.filter(order=order, kind="link_sent").count() == 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"contact_email": ""}, "no_contact_email"), ({"patient_birth_date": None}, "no_birth_date")],
)
def test_a_link_that_cannot_be_used_is_not_sent(make_order: Callable[..., Order], overrides: dict, reason: str) -> None:
    order = make_order(**overrides)
    link, token = purchase_link_issue(order=order)
    assert purchase_link_send(link=link, token=token) == []
    assert mail.outbox == []
    event = OrderEvent.objects.get(order=order, kind="link_not_sent")
    assert event.detail["reason"] == reason


def test_an_email_failure_is_recorded_as_not_sent(
    issued: Issued, order: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError

    monkeypatch.setattr(notify, "send_mail", broken)
    assert purchase_link_send(link=issued[0], token=issued[1]) == []
    event = OrderEvent.objects.get(order=order, kind="link_not_sent")
    assert (event.detail["reason"], event.detail["channel"]) == ("email_error", "email")


def test_access_finds_a_live_link_by_its_token(issued: Issued) -> None:
    assert purchase_link_access(token=issued[1]) == issued[0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "expired"),
        ({"revoked_at": timezone.now()}, "revoked"),
        ({"locked_at": timezone.now()}, "locked"),
        ({"completed_at": timezone.now()}, "completed"),
    ],
)
def test_every_unusable_link_gets_the_same_message_with_an_internal_reason(
    issued: Issued, change: dict, reason: str
) -> None:
    PurchaseLink.objects.filter(pk=issued[0].pk).update(**change)
    with pytest.raises(LinkUnavailable) as caught:
        purchase_link_access(token=issued[1])
    assert (caught.value.reason, caught.value.message, caught.value.link) == (reason, UNAVAILABLE_MESSAGE, issued[0])


@pytest.mark.parametrize(
    ("token", "reason"), [("x" * 43, "unknown"), ("short", "malformed"), ("a/b" * 20, "malformed"), ("", "malformed")]
)
def test_unknown_and_tampered_tokens_get_the_same_message(issued: Issued, token: str, reason: str) -> None:
    with pytest.raises(LinkUnavailable) as caught:
        purchase_link_access(token=token)
    assert (caught.value.reason, caught.value.message) == (reason, UNAVAILABLE_MESSAGE)


def test_a_cancelled_order_closes_its_link(issued: Issued, order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED)
    with pytest.raises(LinkUnavailable) as caught:
        purchase_link_access(token=issued[1])
    assert caught.value.reason == "order_cancelled"


def test_verify_accepts_the_right_birth_date(issued: Issued) -> None:
    link = issued[0]
    assert purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9") is True
    link.refresh_from_db()
    assert link.verified_at is not None
    assert link.failed_attempts == 0


def test_five_wrong_birth_dates_lock_the_link_even_for_the_right_one_after(issued: Issued, settings) -> None:
    link = issued[0]
    for n in range(1, settings.PURCHASE_LINK_MAX_FAILURES + 1):
        assert purchase_link_verify(link=link, birth_date=date(1970, 1, n), ip="203.0.113.9") is False
        assert link.failed_attempts == n
    assert link.locked_at is not None
    assert purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9") is False  # not even compared
    with pytest.raises(LinkUnavailable) as caught:
        purchase_link_access(token=issued[1])
    assert caught.value.reason == "locked"
    link.refresh_from_db()
    assert link.failed_attempts == settings.PURCHASE_LINK_MAX_FAILURES


def test_one_address_is_limited_to_twenty_wrong_dates_an_hour_across_links(make_order: Callable[..., Order]) -> None:
    links = [purchase_link_issue(order=make_order())[0] for _ in range(5)]
    for n in range(services.IP_FAILURE_LIMIT):
        purchase_link_verify(link=links[n // 4], birth_date=date(1970, 1, 1 + n % 4), ip="198.51.100.7")
    with pytest.raises(TooManyAttempts):
        purchase_link_verify(link=links[4], birth_date=BIRTH_DATE, ip="198.51.100.7")
    assert purchase_link_verify(link=links[4], birth_date=BIRTH_DATE, ip="192.0.2.1") is True
    assert AuditEvent.objects.filter(action="purchase_link.verify", outcome="ip_rate_limited").count() == 1


def test_complete_requires_a_verified_link(issued: Issued) -> None:
    with pytest.raises(LinkUnavailable):
        purchase_link_complete(link=issued[0], actor_ip="203.0.113.9")
    assert AuditEvent.objects.filter(action="purchase_link.complete", outcome="not_completable").exists()
    assert PurchaseLink.objects.get(pk=issued[0].pk).completed_at is None


def test_complete_is_single_use_and_records_the_confirmation(issued: Issued, order: Order) -> None:
    link = issued[0]
    purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9")
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    assert link.completed_at is not None
    event = OrderEvent.objects.get(order=order, kind="patient_confirmed")
    assert event.actor == f"patient-link:{link.id}"
    with pytest.raises(LinkUnavailable):
        purchase_link_complete(link=link, actor_ip="203.0.113.9")
    assert OrderEvent.objects.filter(order=order, kind="patient_confirmed").count() == 1


def test_verify_and_complete_write_audit_rows(issued: Issued, order: Order) -> None:
    link = issued[0]
    purchase_link_verify(link=link, birth_date=date(1999, 1, 1), ip="203.0.113.9")
    purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9")
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    rows = AuditEvent.objects.filter(actor=f"patient-link:{link.id}").order_by("created_at")
    assert [(r.action, r.outcome) for r in rows] == [
        ("purchase_link.verify", "wrong_birth_date"),
        ("purchase_link.verify", "success"),
        ("purchase_link.complete", "success"),
    ]
    assert {(r.target, r.where) for r in rows} == {(f"Order/{order.id}", "203.0.113.9")}


def test_revoke_is_idempotent_and_audited(issued: Issued, order: Order) -> None:
    purchase_link_revoke(link=issued[0], actor="admin:ops")
    purchase_link_revoke(link=issued[0], actor="admin:ops")
    assert issued[0].revoked_at is not None
    assert OrderEvent.objects.filter(order=order, kind="link_revoked").count() == 1
    assert AuditEvent.objects.filter(action="purchase_link.revoke", actor="admin:ops").count() == 1


def test_reissue_revokes_the_old_link_and_sends_a_new_one(issued: Issued, order: Order) -> None:
    assert purchase_link_reissue(order=order, actor="admin:ops") == ["email"]
    assert PurchaseLink.objects.get(pk=issued[0].pk).revoked_at is not None
    assert PurchaseLink.objects.filter(order=order, revoked_at__isnull=True).count() == 1
    assert len(mail.outbox) == 1
    assert issued[1] not in mail.outbox[0].body


def test_a_right_date_clears_the_count_of_wrong_ones(issued: Issued) -> None:
    link = issued[0]
    for n in range(1, 5):
        purchase_link_verify(link=link, birth_date=date(1970, 1, n), ip="203.0.113.9")
    assert purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9") is True
    link.refresh_from_db()
    assert (link.failed_attempts, link.locked_at) == (0, None)


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_parallel_guesses_are_reserved_before_they_are_compared(make_order: Callable[..., Order], settings) -> None:
    """80 guesses at once on PostgreSQL, the right date among them: at most PURCHASE_LINK_MAX_FAILURES are ever
    compared; every other one is refused unseen (issue 8: the review's 80 parallel guesses)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency needs PostgreSQL (CI runs it)")
    link, _ = purchase_link_issue(order=make_order())
    guesses = [date(1950, 1, 1) + timedelta(days=n) for n in range(79)] + [BIRTH_DATE]

    def guess(day: date) -> bool:
        try:
            fresh = PurchaseLink.objects.select_related("order").get(pk=link.pk)
            return purchase_link_verify(link=fresh, birth_date=day, ip=f"198.51.100.{day.toordinal() % 250}")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(guess, guesses))

    compared = AuditEvent.objects.filter(
        action="purchase_link.verify", outcome__in=["success", "wrong_birth_date", "locked"]
    ).count()
    assert compared <= settings.PURCHASE_LINK_MAX_FAILURES
    assert sum(results) <= 1
    link.refresh_from_db()
    assert link.failed_attempts <= settings.PURCHASE_LINK_MAX_FAILURES
