"""The transactional outbox: publish inside the sign-off transaction, fast path on commit, relay later."""

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import kombu.exceptions
import pytest
from django.db import transaction
from django.utils import timezone

from healthcommerce.orders.events import TOPIC_ORDER_SIGNED, order_event_key, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.outbox import services, tasks
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import RELAY_LEASE_SECONDS, outbox_publish, outbox_relay, relay_lease


def enqueue(order: Order) -> OutboxMessage:
    """Publish ``order.signed`` in the caller's transaction, as ``order_sign`` does; return fulfillment's row."""
    rows = outbox_publish(topic=TOPIC_ORDER_SIGNED, key=order_event_key(order), subject=order_subject(order))
    return next(row for row in rows if row.subscriber == "fulfillment.submit")


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def apply_async(*args: Any, **kwargs: Any) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.deliver, "apply_async", apply_async)
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", apply_async)


def test_enqueue_writes_one_pending_row_keyed_by_order_and_version(order: Order) -> None:
    message = enqueue(order)
    assert (message.topic, message.subscriber) == ("order.signed", "fulfillment.submit")
    assert message.subject == f"Order/{order.id}"
    assert message.idempotency_key == f"{order.id}:v{order.version}"
    assert message.status == OutboxMessage.Status.PENDING
    assert message.available_at <= timezone.now()
    assert enqueue(order) == message
    assert OutboxMessage.objects.count() == 1  # one subscriber of order.signed


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_enqueue_refuses_to_run_outside_a_transaction(order: Order) -> None:
    with pytest.raises(RuntimeError):
        enqueue(order)
    assert not OutboxMessage.objects.exists()


def test_the_fast_path_publishes_only_after_commit(
    order: Order, published: list[str], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = enqueue(order)
        assert published == []
    assert len(callbacks) == 1
    assert published == [str(message.id)]
    message.refresh_from_db()
    assert message.published_at is not None
    assert message.available_at > timezone.now() + timedelta(seconds=RELAY_LEASE_SECONDS - 5)


def test_a_rolled_back_sign_off_publishes_nothing(
    order: Order, published: list[str], django_capture_on_commit_callbacks
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ZeroDivisionError),
        transaction.atomic(),
    ):
        enqueue(order)
        1 / 0  # noqa: B018
    assert callbacks == []
    assert published == []
    assert not OutboxMessage.objects.exists()


def test_a_broker_failure_on_the_fast_path_is_logged_and_left_to_the_relay(
    order: Order, broker_down: None, django_capture_on_commit_callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        message = enqueue(order)
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.published_at is None
    assert message.available_at <= timezone.now()
    assert "relay will publish" in caplog.text


def test_the_relay_publishes_due_pending_rows_only(make_order: Callable[..., Order], published: list[str]) -> None:
    now = timezone.now()
    due = enqueue(make_order())
    later = enqueue(make_order())
    OutboxMessage.objects.filter(pk=later.pk).update(available_at=now + timedelta(minutes=5))
    done = enqueue(make_order())
    OutboxMessage.objects.filter(pk=done.pk).update(status=OutboxMessage.Status.DONE)
    dead = enqueue(make_order())
    OutboxMessage.objects.filter(pk=dead.pk).update(status=OutboxMessage.Status.DEAD)

    assert outbox_relay() == 1
    assert published == [str(due.id)]


def test_the_relay_does_not_republish_a_row_within_its_lease(message: OutboxMessage, published: list[str]) -> None:
    assert outbox_relay() == 1
    assert outbox_relay() == 0
    assert published == [str(message.id)]
    message.refresh_from_db()
    assert message.published_at is not None
    assert message.available_at > timezone.now()


def test_the_relay_republishes_after_the_lease_when_no_worker_took_the_row(
    message: OutboxMessage, published: list[str]
) -> None:
    outbox_relay()
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert outbox_relay() == 1
    assert published == [str(message.id), str(message.id)]


def test_the_relay_honours_its_limit(make_order: Callable[..., Order], published: list[str]) -> None:
    for _ in range(3):
        enqueue(make_order())
    assert outbox_relay(limit=2) == 2
    assert outbox_relay(limit=2) == 1


def test_the_relay_leaves_rows_for_next_time_when_the_broker_is_down(message: OutboxMessage, broker_down: None) -> None:
    before = OutboxMessage.objects.get(pk=message.pk).available_at
    assert outbox_relay() == 0
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.available_at == before
    assert message.published_at is None


def test_the_relay_task_runs_the_relay_service(message: OutboxMessage, published: list[str]) -> None:
    assert tasks.relay() == 1
    assert published == [str(message.id)]


def lease_after_relay(message: OutboxMessage) -> float:
    """Make the row due, run the relay, and return the lease it got (seconds from now)."""
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert outbox_relay() == 1
    message.refresh_from_db()
    return (message.available_at - timezone.now()).total_seconds()


def test_each_republication_of_an_untaken_row_doubles_its_lease_up_to_an_hour(
    message: OutboxMessage, published: list[str]
) -> None:
    leases = [lease_after_relay(message) for _ in range(8)]
    expected = [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert [round(lease / 10) * 10 for lease in leases] == expected
    message.refresh_from_db()
    assert message.publish_count == 8 and len(published) == 8


def test_an_hour_long_worker_outage_republishes_a_row_a_handful_of_times(message: OutboxMessage) -> None:
    publications, elapsed = 0, 0.0
    while elapsed < 3600:
        publications += 1
        elapsed += relay_lease(publications).total_seconds()
    assert publications <= 7  # a fixed 60 s lease would have been 60


def test_a_worker_that_takes_the_row_resets_the_republish_backoff(
    message: OutboxMessage, published: list[str], settings
) -> None:
    for _ in range(3):
        lease_after_relay(message)
    services._message_retry_later(message, code="backend_unavailable")
    message.refresh_from_db()
    assert message.publish_count == 0
    assert 55 <= lease_after_relay(message) <= 60


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_relay_holds_no_transaction_or_row_lock_while_it_talks_to_the_broker(
    make_order: Callable[..., Order], monkeypatch: pytest.MonkeyPatch
) -> None:
    with transaction.atomic():
        enqueue(make_order())
        enqueue(make_order())
    OutboxMessage.objects.update(available_at=timezone.now() - timedelta(seconds=1))
    seen: list[bool] = []

    def apply_async(args: tuple[str], **options: Any) -> None:
        seen.append(transaction.get_connection().in_atomic_block)

    monkeypatch.setattr(tasks.deliver, "apply_async", apply_async)
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", apply_async)  # both rows in one batch
    assert outbox_relay() == 2
    assert seen and not any(seen)
