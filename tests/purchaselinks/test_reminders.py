"""A patient who has not confirmed gets one reminder before the link expires, by email and text, through the outbox
(healthcommerce.purchaselinks.reminders; issue 8 "Messages")."""

import smtplib
from datetime import timedelta

import pytest
import sms
from django.conf import settings
from django.core import mail
from django.utils import timezone

from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from healthcommerce.purchaselinks import tasks
from healthcommerce.purchaselinks.models import PatientLinkSite, PurchaseLink
from healthcommerce.purchaselinks.reminders import purchase_link_reminders_due
from healthcommerce.purchaselinks.services import (
    purchase_link_access,
    purchase_link_complete,
    purchase_link_revoke,
    purchase_link_verify,
)
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_MOBILE_E164, PATIENT_NAME
from tests.purchaselinks.test_channels import LOCMEM_SMS, retry_due, submitted, token_in

REMINDER = "purchaselinks.remind"


@pytest.fixture
def waiting(order: Order) -> Order:
    """``order`` at a texting site, its link emailed and texted six days ago, expiring in a day."""
    PatientLinkSite.objects.filter(site_id=order.site_id).update(sms_enabled=True)
    outbox_deliver(message_id=submitted(order).pk)
    age(order, sent_days_ago=6, expires_in=timedelta(days=1))
    mail.outbox.clear()
    sms.outbox.clear()  # type: ignore[attr-defined]
    return Order.objects.select_related("site").get(pk=order.pk)


def age(order: Order, *, sent_days_ago: float, expires_in: timedelta) -> None:
    """Move the order's links back in time: created and sent ``sent_days_ago``, expiring ``expires_in`` from now."""
    now = timezone.now()
    sent = now - timedelta(days=sent_days_ago)
    PurchaseLink.objects.filter(order=order).update(created_at=sent, expires_at=now + expires_in)
    PurchaseLink.objects.filter(order=order, sent_at__isnull=False).update(sent_at=sent)
    PurchaseLink.objects.filter(order=order, sms_sent_at__isnull=False).update(sms_sent_at=sent)


def reminder_rows() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(subscriber=REMINDER).order_by("created_at"))


def remind() -> None:
    """Run beat's sweep and deliver what it published, as a worker would."""
    purchase_link_reminders_due()
    for row in reminder_rows():
        if row.status == OutboxMessage.Status.PENDING:
            outbox_deliver(message_id=row.pk)


def test_a_link_about_to_expire_gets_one_reminder_by_email_and_text_with_a_fresh_link(waiting: Order) -> None:
    first = PurchaseLink.objects.get(order=waiting)

    assert tasks.remind() == 1
    (row,) = reminder_rows()
    assert row.topic == "purchase_link.reminder_due" and row.subject == f"Order/{waiting.pk}"
    assert row.idempotency_key == f"{waiting.pk}:reminder:{int(first.expires_at.timestamp())}"
    outbox_deliver(message_id=row.pk)

    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DONE
    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    email = mail.outbox[0]
    assert email.subject == f"Reminder: your order {waiting.reference} is waiting for you"
    assert email.to == ["mateo.okafor@example.net"] and sms.outbox[0].recipients == [PATIENT_MOBILE_E164]
    token = token_in(email.body)
    assert token_in(sms.outbox[0].body) == token
    reminder = purchase_link_access(token=token)
    assert (reminder.purpose, reminder.expires_at) == (PurchaseLink.Purpose.REMINDER, first.expires_at)
    first.refresh_from_db()
    assert first.revoked_at is None  # the patient may still hold the first message
    assert [(e.detail["channel"], e.detail.get("reminder")) for e in reminder_events(waiting)] == [
        ("email", True),
        ("sms", True),
    ]

    # Beat runs every hour: the same expiry is reminded once.
    assert tasks.remind() == 0
    assert len(reminder_rows()) == 1 and len(mail.outbox) == 1


def reminder_events(order: Order) -> list[OrderEvent]:
    return [
        event
        for event in OrderEvent.objects.filter(order=order, kind="link_sent").order_by("created_at")
        if event.detail.get("reminder")
    ]


def test_the_reminder_holds_nothing_clinical_and_no_name(waiting: Order) -> None:
    remind()

    text, email = sms.outbox[0].body, mail.outbox[0].body
    assert text.startswith("Harbor clinic: reminder") and len(text) <= 320
    assert email.startswith("Hello,\n") and "Questions? Please contact Harbor clinic" in email
    for body in (text, email):
        for detail in (PATIENT_NAME, "Mateo", "sleep", "Sleep", "SLEEP-KIT", "G0399", "Casco", "Harbor View", "1961"):
            assert detail not in body
    assert waiting.reference not in text  # a text shows on a lock screen
    expiry = timezone.localdate(PurchaseLink.objects.filter(order=waiting).first().expires_at)  # type: ignore[union-attr]
    assert f"{expiry:%B} {expiry.day}, {expiry.year}" in email


@pytest.mark.parametrize(
    ("sent_days_ago", "expires_in"),
    [
        (1, timedelta(days=6)),  # far from expiry
        (0.5, timedelta(hours=20)),  # sent less than a day ago: no reminder right after the link
        (7, timedelta(hours=-1)),  # already expired
    ],
)
def test_no_reminder_outside_the_window(waiting: Order, sent_days_ago: float, expires_in: timedelta) -> None:
    age(waiting, sent_days_ago=sent_days_ago, expires_in=expires_in)

    assert purchase_link_reminders_due() == 0
    assert reminder_rows() == []


def test_no_reminder_for_a_link_that_is_locked_completed_or_revoked_or_an_order_no_longer_waiting(
    waiting: Order,
) -> None:
    link = PurchaseLink.objects.get(order=waiting)
    cases = [
        lambda: PurchaseLink.objects.filter(pk=link.pk).update(locked_at=timezone.now()),
        lambda: PurchaseLink.objects.filter(pk=link.pk).update(completed_at=timezone.now()),
        lambda: purchase_link_revoke(link=link, actor="test"),
        lambda: Order.objects.filter(pk=waiting.pk).update(status=Order.Status.CANCELLED),
        lambda: Order.objects.filter(pk=waiting.pk).update(status=Order.Status.FULFILLED),
    ]
    for change in cases:
        snapshot = PurchaseLink.objects.get(pk=link.pk)
        change()
        assert purchase_link_reminders_due() == 0, change
        PurchaseLink.objects.filter(pk=link.pk).update(
            locked_at=snapshot.locked_at, completed_at=snapshot.completed_at, revoked_at=None
        )
        Order.objects.filter(pk=waiting.pk).update(status=Order.Status.SUBMITTED)
    assert purchase_link_reminders_due() == 1  # the control: restored, it is due


def test_a_link_never_sent_gets_no_reminder(order: Order) -> None:
    outbox_deliver(message_id=submitted(order).pk)
    PurchaseLink.objects.filter(order=order).update(sent_at=None, sms_sent_at=None)
    age(order, sent_days_ago=6, expires_in=timedelta(days=1))

    assert purchase_link_reminders_due() == 0


def test_a_patient_who_confirms_before_the_worker_runs_gets_no_reminder(waiting: Order) -> None:
    purchase_link_reminders_due()
    Order.objects.filter(pk=waiting.pk).update(status=Order.Status.FULFILLED)

    outbox_deliver(message_id=reminder_rows()[0].pk)

    assert mail.outbox == [] and sms.outbox == []
    assert reminder_rows()[0].status == OutboxMessage.Status.DONE
    assert not PurchaseLink.objects.filter(order=waiting, purpose=PurchaseLink.Purpose.REMINDER).exists()


def test_the_reminder_link_keeps_the_wrong_dates_already_tried(waiting: Order) -> None:
    first = PurchaseLink.objects.get(order=waiting)
    wrong = BIRTH_DATE.replace(year=1970)
    for _ in range(3):
        assert purchase_link_verify(link=first, birth_date=wrong, ip="198.51.100.7") is False

    remind()

    reminder = PurchaseLink.objects.get(order=waiting, purpose=PurchaseLink.Purpose.REMINDER)
    assert reminder.failed_attempts == 3
    for _ in range(settings.PURCHASE_LINK_MAX_FAILURES - 3):
        assert purchase_link_verify(link=reminder, birth_date=wrong, ip="198.51.100.8") is False
    reminder.refresh_from_db()
    assert reminder.locked_at is not None  # two guesses, not five more


def test_confirming_through_the_reminder_revokes_the_first_link(waiting: Order) -> None:
    first = PurchaseLink.objects.get(order=waiting)
    remind()
    reminder = purchase_link_access(token=token_in(mail.outbox[0].body))

    assert purchase_link_verify(link=reminder, birth_date=BIRTH_DATE, ip="198.51.100.7") is True
    purchase_link_complete(link=reminder, actor_ip="198.51.100.7")

    first.refresh_from_db()
    assert first.revoked_at is not None


def test_a_failed_email_is_retried_alone_and_the_text_is_not_sent_twice(
    waiting: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise smtplib.SMTPServerDisconnected("relay went away")

    monkeypatch.setattr("healthcommerce.purchaselinks.notify.send_mail", refuse)
    remind()
    (row,) = reminder_rows()
    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "email_error")
    assert mail.outbox == [] and len(sms.outbox) == 1

    monkeypatch.undo()
    assert retry_due(row) == 1

    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DONE
    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    reminders = PurchaseLink.objects.filter(order=waiting, purpose=PurchaseLink.Purpose.REMINDER, revoked_at=None)
    assert sorted((link.sent_at is not None, link.sms_sent_at is not None) for link in reminders) == [
        (False, True),
        (True, False),
    ]
    assert token_in(mail.outbox[0].body) != token_in(sms.outbox[0].body)


def test_a_text_that_keeps_failing_is_retried_alone_and_its_unsent_links_are_revoked(
    waiting: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(self: object, messages: object) -> int:
        raise ConnectionError("provider timed out")

    monkeypatch.setattr(LOCMEM_SMS, down)
    remind()
    (row,) = reminder_rows()
    retry_due(row)
    retry_due(row)

    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (OutboxMessage.Status.PENDING, 3, "sms_error")
    assert len(mail.outbox) == 1 and sms.outbox == []
    links = PurchaseLink.objects.filter(order=waiting, purpose=PurchaseLink.Purpose.REMINDER).order_by("created_at")
    emailed, unsent, latest = links
    assert emailed.sent_at is not None and emailed.revoked_at is None
    assert (unsent.sent_at, unsent.sms_sent_at, unsent.revoked_at is not None) == (None, None, True)
    assert latest.revoked_at is None  # revoked in turn by the next try unless it goes out


def test_reminders_can_be_turned_off(waiting: Order, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PURCHASE_LINK_REMINDER_HOURS = 0

    assert purchase_link_reminders_due() == 0


def test_beat_runs_the_sweep_every_hour() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["remind-purchase-links"]
    assert entry["task"] == tasks.remind.name == "healthcommerce.purchaselinks.tasks.remind"


def test_a_spanish_speaking_patient_is_reminded_in_spanish(waiting: Order) -> None:
    Order.objects.filter(pk=waiting.pk).update(patient_language="es")

    remind()

    email, text = mail.outbox[0], sms.outbox[0].body
    assert email.subject == f"Recordatorio: su pedido {waiting.reference} lo está esperando"
    assert "todavía lo está esperando" in email.body and "Se le pedirá su fecha de nacimiento" in email.body
    assert text.startswith("Harbor clinic: recordatorio") and len(text) <= 320
