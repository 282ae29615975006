"""``order.signed`` -> fulfillment.submit: idempotent, retried from the database, dead-lettered with an alert;
then ``order.submitted`` -> purchaselinks.deliver sends one link."""

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment import tasks
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.services import order_of
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import BACKOFF_CAP_SECONDS, backoff_seconds, outbox_retry
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.fulfillment.conftest import PATIENT_NAME
from tests.fulfillment.fakes import RecordingBackend
from tests.pipeline import deliver, signed


def reload(message: OutboxMessage) -> OutboxMessage:
    return OutboxMessage.objects.get(pk=message.pk)


def test_submit_sends_the_order_marks_it_submitted_and_emails_one_link(message: OutboxMessage, order: Order) -> None:
    deliver(message)

    message = reload(message)
    assert message.status == OutboxMessage.Status.DONE
    assert message.attempts == 1
    local = LocalCommerceOrder.objects.get()
    assert local.idempotency_key == message.idempotency_key
    assert message.result == str(local.id)
    assert order_of(message).status == Order.Status.SUBMITTED
    assert PurchaseLink.objects.filter(order=order).count() == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["camila.lopez@example.org"]
    kinds = list(OrderEvent.objects.filter(order=order).values_list("kind", flat=True))
    assert kinds == ["status", "link_sent"]
    assert AuditEvent.objects.filter(action="fulfillment.submit", target=f"Order/{order.id}").exists()


def test_running_submit_twice_fulfils_once_and_sends_one_link(message: OutboxMessage, order: Order) -> None:
    deliver(message)
    deliver(message)
    tasks.submit_order(str(message.id))

    assert LocalCommerceOrder.objects.count() == 1
    assert PurchaseLink.objects.count() == 1
    assert len(mail.outbox) == 1
    assert OrderEvent.objects.filter(order=order, kind="status", to_status="submitted").count() == 1
    assert reload(message).attempts == 1


def test_a_message_another_worker_holds_is_left_alone(
    message: OutboxMessage, use_backend: Callable[[str], None]
) -> None:
    use_backend("recording")
    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=timezone.now() + timedelta(minutes=5))
    deliver(message)
    assert RecordingBackend.received == []
    assert reload(message).status == OutboxMessage.Status.PENDING


def test_a_second_run_after_the_backend_accepted_sends_the_same_idempotency_key(
    message: OutboxMessage, use_backend: Callable[[str], None]
) -> None:
    """A worker that died after the backend call is followed by one that resends the same key."""
    use_backend("recording")
    deliver(message)
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.PENDING)
    deliver(message)
    keys = {sent.idempotency_key for sent in RecordingBackend.received}
    assert keys == {message.idempotency_key}
    assert PurchaseLink.objects.count() == 1
    assert len(mail.outbox) == 1


def test_a_temporary_error_backs_off_and_keeps_the_row_pending(
    message: OutboxMessage, order: Order, use_backend: Callable[[str], None]
) -> None:
    use_backend("flaky")
    before = timezone.now()
    deliver(message)
    message = reload(message)
    assert message.status == OutboxMessage.Status.PENDING
    assert message.attempts == 1
    assert message.last_error == "http_503"
    assert message.locked_until is None
    assert before <= message.available_at <= timezone.now() + timedelta(seconds=BACKOFF_CAP_SECONDS)
    assert order_of(message).status == Order.Status.SIGNED
    assert not PurchaseLink.objects.exists()


def test_a_retry_after_from_the_backend_is_honoured(message: OutboxMessage, use_backend: Callable[[str], None]) -> None:
    use_backend("slow-down")
    deliver(message)
    assert reload(message).available_at >= timezone.now() + timedelta(seconds=110)


def test_backoff_grows_exponentially_with_full_jitter_under_a_cap() -> None:
    for attempt in range(1, 12):
        samples = [backoff_seconds(attempt=attempt) for _ in range(200)]
        assert all(0 <= s <= min(BACKOFF_CAP_SECONDS, 5 * 2 ** (attempt - 1)) for s in samples)
    assert len({round(backoff_seconds(attempt=6), 6) for _ in range(20)}) > 1
    assert backoff_seconds(attempt=1, retry_after=30) >= 30
    assert backoff_seconds(attempt=1, retry_after=10**9) == BACKOFF_CAP_SECONDS


def test_temporary_errors_dead_letter_after_max_attempts_and_fail_the_order(
    message: OutboxMessage, order: Order, use_backend: Callable[[str], None], settings, caplog: pytest.LogCaptureFixture
) -> None:
    use_backend("flaky")
    settings.FULFILLMENT_MAX_ATTEMPTS = 3
    with caplog.at_level(logging.INFO):
        for attempt in range(1, 4):
            assert reload(message).status == OutboxMessage.Status.PENDING
            deliver(message)
            assert reload(message).attempts == attempt
    message = reload(message)
    assert message.status == OutboxMessage.Status.DEAD
    assert message.last_error == "http_503"
    assert order_of(message).status == Order.Status.FAILED
    assert OrderEvent.objects.filter(order=order, kind="fulfillment_failed", detail__code="http_503").exists()
    assert AuditEvent.objects.filter(
        action="fulfillment.dead_letter", target=f"Order/{order.id}", outcome="http_503"
    ).exists()
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1
    assert order.reference in alerts[0].getMessage()
    assert "backend=flaky" in alerts[0].getMessage() and "subscriber=fulfillment.submit" in alerts[0].getMessage()
    assert "error=http_503" in alerts[0].getMessage()
    deliver(message)  # a late duplicate delivery changes nothing
    assert reload(message).attempts == 3


def test_a_permanent_error_dead_letters_at_once(
    message: OutboxMessage, order: Order, use_backend: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    use_backend("rejecting")
    deliver(message)
    message = reload(message)
    assert (message.status, message.attempts, message.last_error) == (OutboxMessage.Status.DEAD, 1, "http_422")
    assert order_of(message).status == Order.Status.FAILED
    assert f"subject=Order/{order.id} error=http_422" in caplog.text
    assert f"order={order.reference} backend=rejecting" in caplog.text


def test_an_order_without_an_address_is_dead_lettered_without_calling_the_backend(
    make_order: Callable[..., Order], use_backend: Callable[[str], None]
) -> None:
    use_backend("recording")
    message = signed(make_order(ship_to={}))
    deliver(message)
    assert reload(message).last_error == "ship_to_incomplete"
    assert RecordingBackend.received == []


def test_a_cancelled_order_is_not_sent(make_order: Callable[..., Order], use_backend: Callable[[str], None]) -> None:
    use_backend("recording")
    message = signed(make_order(status=Order.Status.CANCELLED))
    deliver(message)
    message = reload(message)
    assert (message.status, message.last_error) == (OutboxMessage.Status.DEAD, "order_cancelled")
    assert order_of(message).status == Order.Status.CANCELLED
    assert RecordingBackend.received == []


def test_attempts_used_up_by_lost_workers_dead_letter_on_the_next_delivery(
    message: OutboxMessage, order: Order, settings
) -> None:
    settings.FULFILLMENT_MAX_ATTEMPTS = 2
    OutboxMessage.objects.filter(pk=message.pk).update(attempts=2, locked_until=timezone.now() - timedelta(seconds=1))
    deliver(message)
    message = reload(message)
    assert (message.status, message.last_error) == (OutboxMessage.Status.DEAD, "attempts_exhausted")
    assert order_of(message).status == Order.Status.FAILED
    assert not LocalCommerceOrder.objects.exists()


def test_retry_now_re_drives_a_dead_letter_to_success(
    message: OutboxMessage, order: Order, use_backend: Callable[[str], None]
) -> None:
    use_backend("rejecting")
    deliver(message)
    assert reload(message).status == OutboxMessage.Status.DEAD

    assert len(outbox_retry(message_ids=[message.id], actor="admin:ops")) == 1
    message = reload(message)
    assert (message.status, message.attempts) == (OutboxMessage.Status.PENDING, 0)
    use_backend("local")
    deliver(message)
    message = reload(message)
    assert message.status == OutboxMessage.Status.DONE
    assert order_of(message).status == Order.Status.SUBMITTED
    assert AuditEvent.objects.filter(action="outbox.retry", actor="admin:ops").count() == 1


def test_retry_now_skips_done_rows_and_rows_a_worker_holds(
    message: OutboxMessage, make_order: Callable[..., Order]
) -> None:
    held = signed(make_order())
    OutboxMessage.objects.filter(pk=held.pk).update(locked_until=timezone.now() + timedelta(minutes=5))
    deliver(message)
    assert outbox_retry(message_ids=[message.id, held.id], actor="admin:ops") == []


def test_no_patient_data_reaches_the_logs(
    message: OutboxMessage,
    order: Order,
    make_order: Callable[..., Order],
    use_backend: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        deliver(message)
        use_backend("rejecting")
        deliver(signed(make_order()))
    assert order.reference in caplog.text
    for phi in (
        PATIENT_NAME,
        "Camila",
        "camila.lopez@example.org",
        "7525 Colshire",
        "1987-09-12",
        "BRH987654321",
        "K0553",
    ):
        assert phi not in caplog.text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_workers_fulfil_once_and_send_one_link(
    make_order: Callable[..., Order], use_backend: Callable[[str], None]
) -> None:
    use_backend("slow-local")
    with transaction.atomic():
        message = signed(make_order())
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            deliver(message)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert reload(message).status == OutboxMessage.Status.DONE
    assert LocalCommerceOrder.objects.count() == 1
    assert PurchaseLink.objects.count() == 1
    assert len(mail.outbox) == 1
