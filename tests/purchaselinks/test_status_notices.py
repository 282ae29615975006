"""The patient hears that the order shipped (with tracking), was delivered or was cancelled by the supplier:
``order.status_changed`` -> ``purchaselinks.notify_status``, by email and text, each channel once."""

import smtplib

import pytest
import sms
from django.core import mail

from healthcommerce.fulfillment.backends.base import BackendStatus
from healthcommerce.fulfillment.status import fulfillment_status_apply
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from tests.pipeline import downstream
from tests.purchaselinks.conftest import PATIENT_NAME
from tests.purchaselinks.test_channels import LOCMEM_SMS, submitted, texting  # noqa: F401  (fixture)

UPS = {"carrier": "UPS", "tracking_number": "1Z999AA10123456784", "tracking_url": "https://www.ups.com/track?t=1"}


@pytest.fixture
def reached(texting: Order) -> Order:  # noqa: F811
    """``texting`` with its link sent by email and text; the outboxes emptied."""
    outbox_deliver(message_id=submitted(texting).pk)
    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    mail.outbox.clear()
    sms.outbox.clear()
    Order.objects.filter(pk=texting.pk).update(commerce_backend="local", commerce_id="x")
    return texting


def report(order: Order, status: str, **tracking: str) -> None:
    fulfillment_status_apply(
        order_id=order.pk, update=BackendStatus(status, **tracking), source="test", backend="local", actor="t"
    )


def notified(order: Order) -> list[tuple[str, str]]:
    events = OrderEvent.objects.filter(order=order, kind="status_notified").order_by("created_at")
    return [(e.detail["status"], e.detail["channel"]) for e in events]


def test_shipped_is_emailed_and_texted_with_the_tracking_and_nothing_clinical(reached: Order) -> None:
    report(reached, "shipped", **UPS)
    assert downstream() == 1

    email, text = mail.outbox[0], sms.outbox[0].body
    assert email.subject == "Your order has shipped" and email.to == ["mateo.okafor@example.net"]
    for shown in (reached.reference, "UPS", UPS["tracking_number"], UPS["tracking_url"]):
        assert shown in email.body and shown in text, shown
    assert email.body.startswith("Hello,\n") and f"Your order {reached.reference} has shipped." in email.body
    for hidden in (PATIENT_NAME, "Mateo", "Home sleep test", "G0399", "Casco Bay"):
        assert hidden not in email.body and hidden not in text, hidden
    assert notified(reached) == [("shipped", "email"), ("shipped", "sms")]
    assert downstream() == 0


def test_delivered_and_a_supplier_cancel_each_say_so(reached: Order, make_order) -> None:  # type: ignore[no-untyped-def]
    report(reached, "shipped")
    report(reached, "delivered")
    downstream()
    assert [m.subject for m in mail.outbox] == ["Your order has shipped", "Your order was delivered"]
    assert "was delivered" in sms.outbox[-1].body
    for email in mail.outbox:
        assert email.body.startswith("Hello,\n") and PATIENT_NAME not in email.body and "sleep" not in email.body

    mail.outbox.clear()
    other = make_order(contact_phone="")
    outbox_deliver(message_id=submitted(other).pk)
    Order.objects.filter(pk=other.pk).update(commerce_backend="local", commerce_id="y")
    mail.outbox.clear()
    report(other, "cancelled")
    downstream()
    assert mail.outbox[0].subject == "Your order was cancelled" and "contact your clinic" in mail.outbox[0].body
    assert PATIENT_NAME not in mail.outbox[0].body and "sleep" not in mail.outbox[0].body


def test_a_failed_email_is_retried_alone_and_the_text_is_not_sent_twice(
    reached: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def relay_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise smtplib.SMTPServerDisconnected("relay went away")

    monkeypatch.setattr("healthcommerce.purchaselinks.notify.send_mail", relay_down)
    report(reached, "shipped", **UPS)
    downstream()
    row = OutboxMessage.objects.get(subscriber="purchaselinks.notify_status")
    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "email_error")
    assert len(sms.outbox) == 1 and notified(reached) == [("shipped", "sms")]

    monkeypatch.undo()
    OutboxMessage.objects.filter(pk=row.pk).update(available_at=row.created_at)
    downstream()
    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    assert notified(reached) == [("shipped", "sms"), ("shipped", "email")]


def test_a_patient_who_never_got_a_link_hears_nothing(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")
    report(order, "shipped", **UPS)
    downstream()
    assert mail.outbox == [] and sms.outbox == [] and notified(order) == []


def test_a_confirmed_order_is_acknowledged_once_by_email_and_text(reached: Order) -> None:
    from django.utils import timezone

    from healthcommerce.purchaselinks.models import PurchaseLink
    from healthcommerce.purchaselinks.services import purchase_link_complete

    link = PurchaseLink.objects.get(order=reached)
    PurchaseLink.objects.filter(pk=link.pk).update(verified_at=timezone.now())
    link.refresh_from_db()
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    downstream()
    downstream()

    assert [m.subject for m in mail.outbox] == ["Your order is confirmed"]
    assert "is confirmed" in sms.outbox[0].body and PATIENT_NAME not in sms.outbox[0].body
    assert notified(reached) == [("confirmed", "email"), ("confirmed", "sms")]
