"""The stages hand over through named outbox topics (ADR 0008): who subscribes to what, a link email that fails
is retried with a fresh link, the patient's confirmation reaches the backend, and a cancel stops a hand-over."""

import smtplib

import pytest
from django.core import mail

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_cancel
from healthcommerce.outbox.subscribers import subscribers_of
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.pipeline import deliver, downstream, rows_of


def test_each_stage_subscribes_to_the_topic_of_the_stage_before_it() -> None:
    assert [s.name for s in subscribers_of("order.signed")] == ["fulfillment.submit"]
    # orders' HL7 v2 status back also follows the order's later events (it acts only for HL7 v2 orders).
    assert [s.name for s in subscribers_of("order.submitted")] == [
        "orders.hl7_status_submitted",
        "purchaselinks.deliver",
    ]
    assert [s.name for s in subscribers_of("order.patient_confirmed")] == [
        "fulfillment.confirm",
        "purchaselinks.notify_confirmed",
    ]
    assert [s.name for s in subscribers_of("order.cancelled")] == ["fulfillment.cancel", "orders.hl7_status_cancelled"]
    assert [s.name for s in subscribers_of("order.status_changed")] == [
        "orders.hl7_status_changed",
        "purchaselinks.notify_status",
    ]
    # A stage may also hand work to itself later: beat's reminder sweep to the worker that sends it.
    assert [s.name for s in subscribers_of("purchase_link.reminder_due")] == ["purchaselinks.remind"]


def test_submitting_publishes_order_submitted_with_the_backend_id_and_no_phi(message: OutboxMessage, order: Order):
    deliver(message)
    handed = rows_of(order, "purchaselinks.deliver").get()
    local = LocalCommerceOrder.objects.get()
    assert handed.topic == "order.submitted" and handed.idempotency_key == message.idempotency_key
    assert handed.payload == {"backend": "local", "external_id": str(local.pk)}
    assert handed.status == OutboxMessage.Status.DONE


def test_a_failed_link_email_is_retried_with_a_fresh_link(
    message: OutboxMessage, order: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("relay went away")

    monkeypatch.setattr("healthcommerce.purchaselinks.notify.send_mail", refuse)
    deliver(message)
    handed = rows_of(order, "purchaselinks.deliver").get()
    assert (handed.status, handed.last_error, handed.attempts) == (OutboxMessage.Status.PENDING, "email_error", 1)
    first = PurchaseLink.objects.get(order=order)
    assert first.sent_at is None and mail.outbox == []

    monkeypatch.undo()
    OutboxMessage.objects.filter(pk=handed.pk).update(available_at=handed.created_at)  # the backoff has passed
    assert downstream() == 1
    first.refresh_from_db()
    assert first.revoked_at is not None  # its token was never sent and no longer exists
    sent = PurchaseLink.objects.get(order=order, revoked_at__isnull=True)
    assert sent.sent_at is not None and len(mail.outbox) == 1
    assert rows_of(order, "purchaselinks.deliver").get().status == OutboxMessage.Status.DONE
    assert downstream() == 0  # nothing more to do: a later duplicate delivery sends nothing


def test_the_patients_confirmation_reaches_the_backend_through_the_registry(
    message: OutboxMessage, order: Order
) -> None:
    from datetime import date

    from healthcommerce.purchaselinks.services import purchase_link_complete, purchase_link_verify

    deliver(message)
    link = PurchaseLink.objects.get(order=order)
    assert purchase_link_verify(link=link, birth_date=date(1987, 9, 12), ip="203.0.113.9")
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    confirm = rows_of(order, "fulfillment.confirm").get()
    assert confirm.topic == "order.patient_confirmed" and confirm.status == OutboxMessage.Status.PENDING
    assert downstream() == 2  # fulfillment.confirm, and the message to the patient
    assert LocalCommerceOrder.objects.get().status == LocalCommerceOrder.Status.CONFIRMED
    assert AuditEvent.objects.filter(action="fulfillment.confirm", target=f"Order/{order.pk}").exists()


def test_cancelling_stops_a_hand_over_nobody_has_taken(message: OutboxMessage, order: Order) -> None:
    assert outbox_cancel(subject=f"Order/{order.pk}", topic="order.signed", actor="admin:ops") == 1
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.CANCELLED
    deliver(message)
    assert not LocalCommerceOrder.objects.exists()
    assert AuditEvent.objects.filter(action="outbox.cancel", target=f"Order/{order.pk}").exists()


def test_an_unknown_backend_retries_with_a_clear_code_then_dead_letters_and_fails_the_order(
    message: OutboxMessage, order: Order, settings
) -> None:
    settings.COMMERCE_BACKEND = "no-such-backend"
    settings.FULFILLMENT_MAX_ATTEMPTS = 2
    deliver(message)
    message.refresh_from_db()
    assert (message.status, message.last_error) == (OutboxMessage.Status.PENDING, "backend_misconfigured")
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=message.created_at)
    deliver(message)
    message.refresh_from_db()
    order.refresh_from_db()
    assert message.status == OutboxMessage.Status.DEAD and order.status == Order.Status.FAILED


def test_cancelling_a_signed_order_stops_its_hand_over_before_any_backend_call(
    message: OutboxMessage, order: Order
) -> None:
    from healthcommerce.orders.services import order_cancel

    order_cancel(order=order, actor="admin:ops", reason="duplicate")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.CANCELLED
    assert downstream() == 1  # fulfillment.cancel: nothing reached the backend, nothing to undo
    assert not LocalCommerceOrder.objects.exists()
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    assert AuditEvent.objects.filter(action="order.cancel", target=f"Order/{order.pk}").exists()


def test_cancelling_a_submitted_order_cancels_it_at_the_backend(message: OutboxMessage, order: Order) -> None:
    from healthcommerce.orders.services import order_cancel

    deliver(message)
    order_cancel(order=Order.objects.get(pk=order.pk), actor="admin:ops")
    assert downstream() == 1
    assert LocalCommerceOrder.objects.get().status == LocalCommerceOrder.Status.CANCELLED
    assert rows_of(order, "fulfillment.cancel").get().status == OutboxMessage.Status.DONE
    assert OrderEvent.objects.filter(order=order, kind="cancelled_at_backend").exists()
    link = PurchaseLink.objects.get(order=order)
    from healthcommerce.purchaselinks.services import _unavailable_reason

    assert _unavailable_reason(link) == "order_cancelled"  # the patient's link stops working


def test_a_fulfilled_order_cannot_be_cancelled(message: OutboxMessage, order: Order) -> None:
    from healthcommerce.fulfillment.backends.local.services import local_order_mark
    from healthcommerce.orders.errors import InvalidTransition
    from healthcommerce.orders.services import order_cancel

    deliver(message)
    local = LocalCommerceOrder.objects.get()
    local_order_mark(local_order_id=local.pk, status="shipped", actor="admin:ops", tracking_number="1Z999")
    with pytest.raises(InvalidTransition):
        order_cancel(order=Order.objects.get(pk=order.pk), actor="admin:ops")


def test_a_platform_that_shipped_before_the_cancel_arrived_dead_letters_it_with_an_alert(
    message: OutboxMessage, order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from healthcommerce.orders.services import order_cancel

    deliver(message)
    order_cancel(order=Order.objects.get(pk=order.pk), actor="admin:ops")
    LocalCommerceOrder.objects.update(status=LocalCommerceOrder.Status.SHIPPED)  # the supplier shipped meanwhile
    with caplog.at_level(logging.ERROR):
        assert downstream() == 1
    row = rows_of(order, "fulfillment.cancel").get()
    assert (row.status, row.last_error) == (OutboxMessage.Status.DEAD, "too_late")
    assert OrderEvent.objects.filter(order=order, kind="cancel_failed", detail__code="too_late").exists()
    assert f"order={order.reference}" in caplog.text and "may ship a cancelled order" in caplog.text


def test_the_admin_cancels_an_order(admin_client, message: OutboxMessage, order: Order) -> None:
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    response = admin_client.post(
        "/admin/orders/order/", {"action": "cancel_orders", ACTION_CHECKBOX_NAME: [str(order.pk)]}
    )
    assert response.status_code == 302
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    assert rows_of(order, "fulfillment.cancel").exists()


def test_a_cancel_that_races_a_running_submit_still_cancels_at_the_backend(
    message: OutboxMessage, order: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    from healthcommerce.fulfillment.backends.local.backend import LocalCommerceBackend
    from healthcommerce.orders.services import order_cancel

    original = LocalCommerceBackend.submit

    def submit_while_the_admin_cancels(self, commerce_order):  # type: ignore[no-untyped-def]
        # The worker holds the order.signed row, so the cancel cannot stop it and finds no backend order yet.
        order_cancel(order=Order.objects.get(pk=order.pk), actor="admin:ops")
        return original(self, commerce_order)

    monkeypatch.setattr(LocalCommerceBackend, "submit", submit_while_the_admin_cancels)
    deliver(message)

    message.refresh_from_db()
    order.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE  # not a dead letter
    assert order.status == Order.Status.CANCELLED and order.commerce_id
    assert LocalCommerceOrder.objects.get().status == LocalCommerceOrder.Status.CANCELLED
    assert OrderEvent.objects.filter(order=order, kind="submitted_after_cancel").exists()
    assert not PurchaseLink.objects.filter(order=order).exists() and mail.outbox == []
    assert set(rows_of(order, "fulfillment.cancel").values_list("status", flat=True)) == {OutboxMessage.Status.DONE}
