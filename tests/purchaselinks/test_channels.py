"""The link goes by email and by text through the outbox, each channel once: a failed channel is retried alone
(docs/adr/0010)."""

import smtplib
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import sms
from django.core import mail
from django.db import transaction
from django.utils import timezone

from healthcommerce.orders.events import TOPIC_ORDER_SUBMITTED, order_event_key, order_subject
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver, outbox_publish
from healthcommerce.purchaselinks.models import PatientLinkSite, PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_complete, purchase_link_reissue, purchase_link_verify
from tests.pipeline import downstream
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_MOBILE, PATIENT_MOBILE_E164, PATIENT_NAME

LOCMEM_SMS = "sms.backends.locmem.SmsBackend.send_messages"


class ProviderDown(ConnectionError):
    """What an SMS provider's client raises when the provider does not answer."""


class ProviderRefused(Exception):
    """What an SMS provider's client raises for a number it will never text (Twilio: HTTP 400, code 21610)."""

    status = 400


@pytest.fixture
def texting(order: Order) -> Order:
    """``order`` at a site that enables texts."""
    PatientLinkSite.objects.filter(site_id=order.site_id).update(sms_enabled=True)
    return Order.objects.select_related("site").get(pk=order.pk)


def submitted(order: Order) -> OutboxMessage:
    """Publish ``order.submitted`` as fulfillment does; return the ``purchaselinks.deliver`` row."""
    with transaction.atomic():
        rows = outbox_publish(topic=TOPIC_ORDER_SUBMITTED, key=order_event_key(order), subject=order_subject(order))
    return next(row for row in rows if row.subscriber == "purchaselinks.deliver")


def retry_due(row: OutboxMessage) -> int:
    """Let the backoff pass and deliver what is due; return how many rows ran."""
    OutboxMessage.objects.filter(pk=row.pk).update(available_at=row.created_at)
    return downstream()


def token_in(text: str) -> str:
    url = next(word for word in text.split() if "/p/" in word)
    return urlsplit(url).path.split("/")[2]


def sent_events(order: Order) -> list[tuple[str, str]]:
    events = OrderEvent.objects.filter(order=order, kind__in=["link_sent", "link_not_sent"]).order_by("created_at")
    return [(e.kind, e.detail.get("channel", "")) for e in events]


def test_one_link_goes_by_email_and_by_text_to_the_e164_number(texting: Order) -> None:
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)

    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    text = sms.outbox[0]
    assert (text.recipients, text.originator) == ([PATIENT_MOBILE_E164], "+12075550100")
    assert token_in(text.body) == token_in(mail.outbox[0].body)
    link = PurchaseLink.objects.get(order=texting)
    assert (link.sent_to, link.sms_sent_to) == ("mateo.okafor@example.net", PATIENT_MOBILE_E164)
    assert link.sent_at is not None and link.sms_sent_at is not None
    assert sent_events(texting) == [("link_sent", "email"), ("link_sent", "sms")]
    assert OutboxMessage.objects.get(pk=row.pk).status == OutboxMessage.Status.DONE


def test_the_text_holds_the_clinic_link_and_expiry_but_nothing_clinical_or_personal(texting: Order) -> None:
    outbox_deliver(message_id=submitted(texting).pk)

    body = sms.outbox[0].body
    link = PurchaseLink.objects.get(order=texting)
    day = timezone.localdate(link.expires_at)
    assert body.startswith("Harbor clinic: ")
    assert "/p/" in body and f"{day:%B} {day.day}, {day.year}" in body
    for detail in (PATIENT_NAME, "Mateo", "sleep", "Sleep", "SLEEP-KIT", "G0399", "Casco", "Harbor View", "1961"):
        assert detail not in body
    assert texting.reference not in body
    assert len(body) <= 320  # two SMS segments at most


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("call me maybe", "phone_unparseable"),
        ("555-01", "phone_unparseable"),
        ("+44 20 7946 0958", "phone_not_mobile"),  # a London landline
        ("800-555-0100", "phone_not_mobile"),  # toll free
        ("", "no_contact_phone"),
    ],
)
def test_a_number_that_cannot_take_a_text_gets_none_and_the_email_still_goes(
    make_order: Callable[..., Order], phone: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    order = make_order(contact_phone=phone)
    PatientLinkSite.objects.filter(site_id=order.site_id).update(sms_enabled=True)
    row = submitted(order)
    with caplog.at_level("DEBUG"):
        outbox_deliver(message_id=row.pk)

    assert sms.outbox == [] and len(mail.outbox) == 1
    warning = OrderEvent.objects.get(order=order, kind="link_not_sent")
    assert warning.detail == {"reason": reason, "channel": "sms", "link_id": warning.detail["link_id"]}
    assert OutboxMessage.objects.get(pk=row.pk).status == OutboxMessage.Status.DONE
    for phi in (phone or "no phone", "mateo.okafor", PATIENT_NAME):
        assert phi not in caplog.text


def test_a_site_that_has_not_enabled_texts_gets_email_only_and_no_warning(order: Order) -> None:
    outbox_deliver(message_id=submitted(order).pk)

    assert sms.outbox == [] and len(mail.outbox) == 1
    assert sent_events(order) == [("link_sent", "email")]


def test_with_no_sms_backend_configured_nobody_is_texted(texting: Order, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMS_BACKEND = ""
    outbox_deliver(message_id=submitted(texting).pk)

    assert sms.outbox == [] and len(mail.outbox) == 1
    assert sent_events(texting) == [("link_sent", "email")]


def test_a_failed_text_is_retried_alone_and_the_email_is_not_sent_twice(
    texting: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(self: object, messages: object) -> int:
        raise ProviderDown("provider timed out")

    monkeypatch.setattr(LOCMEM_SMS, down)
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.last_error, row.attempts) == (OutboxMessage.Status.PENDING, "sms_error", 1)
    assert len(mail.outbox) == 1 and sms.outbox == []
    emailed = PurchaseLink.objects.get(order=texting)

    monkeypatch.undo()
    assert retry_due(row) == 1

    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DONE
    emailed.refresh_from_db()
    texted = PurchaseLink.objects.exclude(pk=emailed.pk).get(order=texting)
    assert emailed.revoked_at is None  # the patient holds it: it keeps working
    assert (texted.sms_sent_at is not None, texted.sent_at, texted.expires_at) == (True, None, emailed.expires_at)
    assert token_in(sms.outbox[0].body) != token_in(mail.outbox[0].body)
    assert sent_events(texting) == [
        ("link_sent", "email"),
        ("link_not_sent", "sms"),
        ("link_sent", "sms"),
    ]
    assert downstream() == 0


def test_a_failed_email_is_retried_alone_and_the_text_is_not_sent_twice(
    texting: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise smtplib.SMTPServerDisconnected("relay went away")

    monkeypatch.setattr("healthcommerce.purchaselinks.notify.send_mail", refuse)
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "email_error")
    assert mail.outbox == [] and len(sms.outbox) == 1

    monkeypatch.undo()
    assert retry_due(row) == 1

    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DONE
    live = PurchaseLink.objects.filter(order=texting, revoked_at__isnull=True)
    assert sorted((link.sent_at is not None, link.sms_sent_at is not None) for link in live) == [
        (False, True),
        (True, False),
    ]
    assert downstream() == 0


def test_both_channels_failing_retry_both_with_one_fresh_link(texting: Order, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise smtplib.SMTPServerDisconnected("relay went away")

    def down(self: object, messages: object) -> int:
        raise ProviderDown("provider timed out")

    monkeypatch.setattr("healthcommerce.purchaselinks.notify.send_mail", refuse)
    monkeypatch.setattr(LOCMEM_SMS, down)
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)
    first = PurchaseLink.objects.get(order=texting)

    monkeypatch.undo()
    assert retry_due(row) == 1

    first.refresh_from_db()
    assert first.revoked_at is not None  # sent nowhere, and its token is gone
    sent = PurchaseLink.objects.get(order=texting, revoked_at__isnull=True)
    assert sent.sent_at is not None and sent.sms_sent_at is not None
    assert token_in(sms.outbox[0].body) == token_in(mail.outbox[0].body)


def test_a_number_the_provider_refuses_for_good_is_not_retried(texting: Order, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(self: object, messages: object) -> int:
        raise ProviderRefused("Attempt to send to unsubscribed recipient")

    monkeypatch.setattr(LOCMEM_SMS, refused)
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)

    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DONE and len(mail.outbox) == 1
    assert OrderEvent.objects.get(order=texting, kind="link_not_sent").detail["reason"] == "sms_rejected"


def test_completing_one_link_revokes_the_other_channels_link(texting: Order, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOCMEM_SMS, lambda self, messages: 0)  # the provider reports nothing sent
    row = submitted(texting)
    outbox_deliver(message_id=row.pk)
    monkeypatch.undo()
    retry_due(row)
    emailed, texted = PurchaseLink.objects.filter(order=texting).order_by("created_at")

    purchase_link_verify(link=texted, birth_date=BIRTH_DATE, ip="203.0.113.9")
    purchase_link_complete(link=texted, actor_ip="203.0.113.9")

    emailed.refresh_from_db()
    assert emailed.revoked_at is not None


def test_reissue_texts_the_new_link_when_the_site_enables_texts(texting: Order) -> None:
    assert purchase_link_reissue(order=texting, actor="admin:ops") == ["email", "sms"]
    assert token_in(sms.outbox[0].body) == token_in(mail.outbox[0].body)


def test_a_mobile_without_a_country_code_is_read_in_the_default_region(
    make_order: Callable[..., Order],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.SMS_DEFAULT_REGION = "GB"
    order = make_order(contact_phone="07400 123456")
    PatientLinkSite.objects.filter(site_id=order.site_id).update(sms_enabled=True)
    outbox_deliver(message_id=submitted(order).pk)

    assert sms.outbox[0].recipients == ["+447400123456"]
    assert PATIENT_MOBILE not in sms.outbox[0].body
