"""``fulfillment.submit`` in batches (ADR 0014): the local backend stores a batch in one INSERT, each order is
submitted once with its own audit row, status event and ``order.submitted`` row, and a failure costs only its
order."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.base import PermanentBackendError, SubmitResult
from healthcommerce.fulfillment.backends.local.backend import LocalCommerceBackend
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.commerce import commerce_order_build
from healthcommerce.fulfillment.services import fulfillment_submits_in_batches
from healthcommerce.orders.events import order_subject
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox import services
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver_batch, outbox_relay
from tests.pipeline import signed

LINKS = "purchaselinks.deliver"


def signed_rows(make_order: Callable[..., Order], count: int, **overrides: Any) -> list[OutboxMessage]:
    return [signed(make_order(**overrides)) for _ in range(count)]


def order_of(row: OutboxMessage) -> Order:
    return Order.objects.get(pk=row.subject.removeprefix("Order/"))


def test_the_local_backend_takes_batches_and_a_one_call_per_order_backend_does_not(use_backend: Any) -> None:
    assert fulfillment_submits_in_batches()  # local, the default
    use_backend("recording")
    assert not fulfillment_submits_in_batches()
    use_backend("no-such-backend")
    assert not fulfillment_submits_in_batches()


def test_a_batch_submits_each_order_once_with_its_own_audit_event_and_hand_over(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 3)
    outbox_deliver_batch(message_ids=[str(r.pk) for r in rows])
    for row in rows:
        order = order_of(row)
        stored = LocalCommerceOrder.objects.get(idempotency_key=row.idempotency_key)
        assert stored.submit_count == 1 and stored.order_reference == order.reference
        assert (order.status, order.commerce_backend, order.commerce_id) == ("submitted", "local", str(stored.pk))
        row.refresh_from_db()
        assert (row.status, row.result, row.attempts) == ("done", str(stored.pk), 1)
        event = OrderEvent.objects.get(order=order, kind="status", to_status="submitted")
        assert event.from_status == "signed" and event.detail["message_id"] == str(row.pk)
        audit = AuditEvent.objects.get(action="fulfillment.submit", target=f"Order/{order.pk}")
        assert audit.where == "local" and audit.detail["external_id"] == str(stored.pk)
        link_row = OutboxMessage.objects.get(subscriber=LINKS, subject=order_subject(order))
        assert link_row.idempotency_key == row.idempotency_key
        assert link_row.payload == {"backend": "local", "external_id": str(stored.pk)}
    assert AuditEvent.objects.filter(action="fulfillment.submit").count() == 3


def test_an_incomplete_order_in_a_batch_is_dead_lettered_alone(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    good = signed_rows(make_order, 2)
    bad = signed(make_order(ship_to={}))
    outbox_deliver_batch(message_ids=[good[0].pk, bad.pk, good[1].pk])
    assert [order_of(r).status for r in good] == ["submitted", "submitted"]
    bad.refresh_from_db()
    assert bad.status == "dead" and order_of(bad).status == "failed"
    assert not LocalCommerceOrder.objects.filter(idempotency_key=bad.idempotency_key).exists()
    assert OrderEvent.objects.filter(order=order_of(bad), kind="fulfillment_failed").count() == 1


def test_a_key_reused_for_another_payload_fails_only_that_order(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 3)
    LocalCommerceOrder.objects.create(
        idempotency_key=rows[1].idempotency_key, order_reference="HC-OTHER", payload={"other": True}, submit_count=1
    )
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    statuses = [OutboxMessage.objects.get(pk=r.pk).status for r in rows]
    assert statuses == ["done", "dead", "done"]
    assert OutboxMessage.objects.get(pk=rows[1].pk).last_error == "idempotency_key_reused"


def test_an_order_cancelled_before_its_batch_is_not_sent(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 2)
    Order.objects.filter(pk=order_of(rows[0]).pk).update(status=Order.Status.CANCELLED)
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert [OutboxMessage.objects.get(pk=r.pk).status for r in rows] == ["dead", "done"]
    assert OutboxMessage.objects.get(pk=rows[0].pk).last_error == "order_cancelled"
    assert not LocalCommerceOrder.objects.filter(idempotency_key=rows[0].idempotency_key).exists()


def test_a_killed_batch_is_claimed_again_after_its_lease_and_fulfils_each_order_once(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 3)
    ids = [r.pk for r in rows]
    claimed = services._messages_claim(ids)
    # The worker stored the orders at the backend, then was SIGKILLed before its transaction committed.
    LocalCommerceBackend().submit_many(
        [commerce_order_build(order=order_of(m), idempotency_key=m.idempotency_key) for m in claimed]
    )
    outbox_deliver_batch(message_ids=ids)  # a redelivery during the lease changes nothing
    assert {OutboxMessage.objects.get(pk=i).status for i in ids} == {"pending"}

    past = timezone.now() - timedelta(seconds=1)
    OutboxMessage.objects.filter(pk__in=ids).update(locked_until=past, available_at=past)
    published.clear()
    assert outbox_relay() == 3
    outbox_deliver_batch(message_ids=published)
    for row in rows:
        stored = LocalCommerceOrder.objects.get(idempotency_key=row.idempotency_key)
        assert stored.submit_count == 2  # the replay is counted, not stored again
        assert OutboxMessage.objects.get(pk=row.pk).status == "done"
        assert OrderEvent.objects.filter(order=order_of(row), kind="status", to_status="submitted").count() == 1
        assert OutboxMessage.objects.filter(subscriber=LINKS, subject=row.subject).count() == 1
    assert LocalCommerceOrder.objects.count() == 3


def test_a_row_finished_by_another_run_is_not_recorded_twice(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 2)
    claimed = services._messages_claim([r.pk for r in rows])
    OutboxMessage.objects.filter(pk=rows[0].pk).update(status="done")  # another run won it meanwhile
    from healthcommerce.fulfillment.services import fulfillment_submit_batch

    assert fulfillment_submit_batch(claimed) == {}
    assert OrderEvent.objects.filter(kind="status", to_status="submitted").count() == 1
    assert order_of(rows[0]).status == "signed"


def test_a_failing_batch_transaction_falls_back_to_one_order_at_a_time(
    make_order: Callable[..., Order], published: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = signed_rows(make_order, 3)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("deadlock detected")

    monkeypatch.setattr("healthcommerce.fulfillment.services._submitted_many", broken)
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    for row in rows:
        assert OutboxMessage.objects.get(pk=row.pk).status == "done"
        assert order_of(row).status == "submitted"
        assert LocalCommerceOrder.objects.get(idempotency_key=row.idempotency_key).submit_count == 2


def test_a_batch_of_twenty_costs_a_few_statements_not_twenty_per_order(
    make_order: Callable[..., Order], published: list[str]
) -> None:
    rows = signed_rows(make_order, 20)
    with CaptureQueriesContext(connection) as queries:
        outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert {order_of(r).status for r in rows} == {"submitted"}
    # 22 today, on SQLite and PostgreSQL alike: claim 2, orders loaded 1, backend 2, done 2, orders 3, events 1,
    # audit 1, hand-over 2, and the transaction statements around them (one order alone used to cost 26).
    assert len(queries) <= 25, [q["sql"][:80] for q in queries]


def test_the_local_backend_answers_a_batch_as_it_answers_one_order_at_a_time(
    make_order: Callable[..., Order],
) -> None:
    orders = [make_order() for _ in range(3)]
    built = [commerce_order_build(order=o, idempotency_key=f"{o.pk}:v1") for o in orders]
    backend = LocalCommerceBackend()
    first = backend.submit(built[0])
    answers = backend.submit_many(built)
    assert answers[0] == first and all(isinstance(a, SubmitResult) for a in answers)
    assert backend.submit_many(built) == answers
    assert [LocalCommerceOrder.objects.get(idempotency_key=b.idempotency_key).submit_count for b in built] == [3, 2, 2]
    other = commerce_order_build(order=orders[1], idempotency_key=built[0].idempotency_key)
    (reused,) = backend.submit_many([other])
    assert isinstance(reused, PermanentBackendError) and reused.code == "idempotency_key_reused"
