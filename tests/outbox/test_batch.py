"""Batch claiming (ADR 0014): one task claims many rows, a failure costs only its row, a killed batch is claimed
again after its lease, and rows committed together are published as batches.

A test subscriber (``test.batch``) with handlers in this module keeps these tests about the outbox alone; the
fulfillment batch handler has its own tests in ``tests/fulfillment/test_batch.py``.
"""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.outbox import services, subscribers, tasks
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import (
    BATCH_SIZE,
    outbox_deliver_batch,
    outbox_publish,
    outbox_relay,
)

TOPIC = "test.happened"
NAME = "test.batch"
HERE = "tests.outbox.test_batch"


class Flaky(HealthcommerceError):
    code = "flaky"
    temporary = True


class Refused(HealthcommerceError):
    code = "refused"


# What the handlers saw and what they should do, reset per test by the ``subscriber`` fixture.
CALLS: dict[str, list[Any]] = {"batch": [], "single": []}
FAIL: dict[str, Exception] = {}  # subject -> the exception its row gets
BATCHES_ON = {"value": True}


def batch_handler(messages: list[OutboxMessage]) -> dict[Any, Exception]:
    CALLS["batch"].append([m.subject for m in messages])
    if "raise" in FAIL:
        raise FAIL["raise"]
    return {m.pk: FAIL[m.subject] for m in messages if m.subject in FAIL}


def single_handler(message: OutboxMessage) -> None:
    CALLS["single"].append(message.subject)
    if message.subject in FAIL:
        raise FAIL[message.subject]


def batches_on() -> bool:
    return BATCHES_ON["value"]


@pytest.fixture
def subscriber(monkeypatch: pytest.MonkeyPatch) -> subscribers.Subscriber:
    """Register ``test.batch`` on ``test.happened`` for this test only."""
    registered = subscribers.Subscriber(
        name=NAME,
        topic=TOPIC,
        handler=f"{HERE}.single_handler",
        batch_handler=f"{HERE}.batch_handler",
        batch_if=f"{HERE}.batches_on",
    )
    monkeypatch.setitem(subscribers._SUBSCRIBERS, NAME, registered)
    CALLS["batch"], CALLS["single"] = [], []
    FAIL.clear()
    BATCHES_ON["value"] = True
    return registered


@pytest.fixture
def publications(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record each publication: ``[id]`` for ``outbox.deliver``, the ids of an ``outbox.deliver_batch``."""
    sent: list[list[str]] = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, **options: sent.append([args[0]]))
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda args, **options: sent.append(list(args[0])))
    return sent


def publish(count: int, prefix: str = "") -> list[OutboxMessage]:
    with transaction.atomic():
        return [outbox_publish(topic=TOPIC, key=f"{prefix}k{n}", subject=f"S/{prefix}{n}")[0] for n in range(count)]


def refreshed(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    by_pk = OutboxMessage.objects.in_bulk([r.pk for r in rows])
    return [by_pk[r.pk] for r in rows]


@pytest.mark.django_db
def test_a_batch_runs_the_batch_handler_once_and_marks_every_row_done(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    outbox_deliver_batch(message_ids=[str(r.pk) for r in rows])
    assert CALLS == {"batch": [["S/0", "S/1", "S/2"]], "single": []}
    assert {(r.status, r.attempts, r.locked_until) for r in refreshed(rows)} == {("done", 1, None)}


@pytest.mark.django_db
def test_one_failing_row_retries_alone_and_the_others_are_done(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    FAIL["S/1"] = Flaky()
    before = timezone.now()
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    first, failed, last = refreshed(rows)
    assert (first.status, last.status) == ("done", "done")
    assert failed.status == "pending" and failed.attempts == 1 and failed.locked_until is None
    assert failed.last_error == "flaky" and failed.available_at >= before
    # The next try claims that row only.
    OutboxMessage.objects.filter(pk=failed.pk).update(available_at=timezone.now())
    FAIL.clear()
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert refreshed(rows)[1].status == "done" and refreshed(rows)[1].attempts == 2
    assert CALLS["batch"][-1:] == [["S/1"]] or CALLS["single"] == ["S/1"]  # a lone row runs the single handler


@pytest.mark.django_db
def test_a_permanent_failure_dead_letters_only_its_row(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    FAIL["S/2"] = Refused()
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert [r.status for r in refreshed(rows)] == ["done", "done", "dead"]
    dead = AuditEvent.objects.get(action="outbox.dead_letter")
    assert (dead.target, dead.outcome) == ("S/2", "refused")


@pytest.mark.django_db
def test_an_unexpected_exception_of_one_row_retries_it_as_an_internal_error(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(2)
    FAIL["S/0"] = KeyError("boom")
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    failed, done = refreshed(rows)
    assert (failed.status, failed.last_error, done.status) == ("pending", "internal_error:KeyError", "done")


@pytest.mark.django_db
def test_when_the_batch_handler_itself_raises_each_row_runs_alone(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    FAIL["raise"] = RuntimeError("the batch transaction failed")
    FAIL["S/1"] = Flaky()
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert CALLS["single"] == ["S/0", "S/1", "S/2"]
    assert [r.status for r in refreshed(rows)] == ["done", "pending", "done"]
    assert [r.attempts for r in refreshed(rows)] == [1, 1, 1]  # the fallback is the same attempt


@pytest.mark.django_db
def test_a_row_another_worker_holds_is_skipped(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    held_until = timezone.now() + timedelta(minutes=5)
    OutboxMessage.objects.filter(pk=rows[1].pk).update(locked_until=held_until, attempts=1)
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert CALLS["batch"] == [["S/0", "S/2"]]
    held = refreshed(rows)[1]
    assert (held.status, held.attempts, held.locked_until) == ("pending", 1, held_until)


@pytest.mark.django_db
def test_done_dead_cancelled_and_unknown_rows_are_skipped(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(4)
    for row, status in zip(rows[1:], ["done", "dead", "cancelled"], strict=True):
        OutboxMessage.objects.filter(pk=row.pk).update(status=status)
    outbox_deliver_batch(message_ids=[r.pk for r in rows] + ["00000000-0000-0000-0000-000000000000"])
    assert CALLS == {"batch": [], "single": ["S/0"]}  # one claimable row: the single handler


@pytest.mark.django_db
def test_a_killed_batch_leaves_its_rows_to_be_claimed_again_after_the_lease(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish(3)
    ids = [r.pk for r in rows]
    claimed = services._messages_claim(ids)  # the worker claims, then is SIGKILLed before the handler ran
    assert len(claimed) == 3
    outbox_deliver_batch(message_ids=ids)  # a redelivered task meanwhile: every row is still held
    assert CALLS == {"batch": [], "single": []}
    assert outbox_relay() == 0  # and the relay leaves them alone during the lease
    lease = claimed[0].locked_until
    assert lease is not None and lease - timezone.now() > timedelta(seconds=60)

    past = timezone.now() - timedelta(seconds=1)
    OutboxMessage.objects.filter(pk__in=ids).update(locked_until=past, available_at=past)  # the lease ran out
    publications.clear()
    assert outbox_relay() == 3
    assert len(publications) == 1 and sorted(publications[0]) == sorted(str(i) for i in ids)  # as one batch
    outbox_deliver_batch(message_ids=publications[0])
    assert CALLS["batch"] == [["S/0", "S/1", "S/2"]]
    assert {(r.status, r.attempts) for r in refreshed(rows)} == {("done", 2)}


@pytest.mark.django_db
def test_rows_out_of_attempts_are_dead_lettered_by_the_claim(
    subscriber: subscribers.Subscriber, publications: list[list[str]], settings: Any
) -> None:
    rows = publish(3)
    OutboxMessage.objects.filter(pk=rows[0].pk).update(attempts=settings.FULFILLMENT_MAX_ATTEMPTS)
    outbox_deliver_batch(message_ids=[r.pk for r in rows])
    assert [r.status for r in refreshed(rows)] == ["dead", "done", "done"]
    assert CALLS["batch"] == [["S/1", "S/2"]]
    assert AuditEvent.objects.get(action="outbox.dead_letter").outcome == "attempts_exhausted"


@pytest.mark.django_db
def test_a_row_that_keeps_failing_in_batches_is_dead_lettered_after_the_last_attempt(
    subscriber: subscribers.Subscriber, publications: list[list[str]], settings: Any
) -> None:
    settings.FULFILLMENT_MAX_ATTEMPTS = 3
    rows = publish(2)
    FAIL["S/0"] = Flaky()
    for _ in range(3):
        OutboxMessage.objects.filter(pk=rows[0].pk).update(available_at=timezone.now())
        outbox_deliver_batch(message_ids=[r.pk for r in rows])
    failed, done = refreshed(rows)
    assert (failed.status, failed.attempts, failed.last_error, done.status) == ("dead", 3, "flaky", "done")


@pytest.mark.django_db
def test_rows_committed_together_are_published_in_batches_and_a_lone_row_alone(
    subscriber: subscribers.Subscriber, publications: list[list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        rows = publish(2 * BATCH_SIZE + 3)
    ids = [str(r.pk) for r in rows]
    assert publications == [ids[:BATCH_SIZE], ids[BATCH_SIZE : 2 * BATCH_SIZE], ids[2 * BATCH_SIZE :]]
    assert {r.publish_count for r in refreshed(rows)} == {1}
    publications.clear()
    with django_capture_on_commit_callbacks(execute=True):
        (lone,) = publish(1, prefix="lone")
    assert publications == [[str(lone.pk)]]


@pytest.mark.django_db
def test_a_subscriber_that_takes_no_batches_now_gets_one_task_per_row(
    subscriber: subscribers.Subscriber, publications: list[list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    BATCHES_ON["value"] = False
    with django_capture_on_commit_callbacks(execute=True):
        rows = publish(3)
    assert publications == [[str(r.pk)] for r in rows]


@pytest.mark.django_db
def test_a_row_rolled_back_with_its_savepoint_is_not_published_alone(
    subscriber: subscribers.Subscriber, publications: list[list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        kept = outbox_publish(topic=TOPIC, key="kept", subject="S/kept")[0]
        try:
            with transaction.atomic():
                outbox_publish(topic=TOPIC, key="gone", subject="S/gone")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
    assert str(kept.pk) in publications[0]
    outbox_deliver_batch(message_ids=publications[0])  # the rolled-back row's id, if any, finds nothing
    assert refreshed([kept])[0].status == "done"
    assert not OutboxMessage.objects.filter(idempotency_key="gone").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_on_postgresql_a_row_locked_by_another_claim_is_skipped_without_waiting(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite serializes writers)")
    rows = publish(3)
    locked, release = threading.Event(), threading.Event()

    def hold_row() -> None:
        with transaction.atomic():
            OutboxMessage.objects.select_for_update().filter(pk=rows[0].pk).get()
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_row)
    holder.start()
    try:
        assert locked.wait(10)
        claimed = services._messages_claim([r.pk for r in rows])
        assert [m.subject for m in claimed] == ["S/1", "S/2"]
    finally:
        release.set()
        holder.join()
    assert refreshed(rows)[0].attempts == 0


@pytest.mark.django_db
def test_the_fast_path_leases_rows_before_it_publishes_them(
    subscriber: subscribers.Subscriber, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """A worker may claim a row the moment its task is published; the lease UPDATE must be over by then, or the
    claim's SKIP LOCKED would skip the row and leave it to the relay for a whole lease."""
    seen: list[set[int]] = []

    def apply_async(args: tuple[list[str]], **options: Any) -> None:
        seen.append(set(OutboxMessage.objects.filter(pk__in=args[0]).values_list("publish_count", flat=True)))

    monkeypatch.setattr(tasks.deliver_batch, "apply_async", apply_async)
    with django_capture_on_commit_callbacks(execute=True):
        publish(3)
    assert seen == [{1}]


def publish_one_by_one(count: int, prefix: str = "s") -> list[OutboxMessage]:
    """``count`` rows, each committed by its own transaction, as separate sign-offs commit them."""
    return [publish(1, prefix=f"{prefix}{n}-")[0] for n in range(count)]


@pytest.mark.django_db
def test_a_stream_of_separate_rows_is_drained_in_batches_by_the_first_task_that_runs(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    rows = publish_one_by_one(5)  # each its own task (on commit), none batched at publication

    services.outbox_deliver(message_id=str(rows[0].pk))

    assert CALLS == {"batch": [["S/s0-0", "S/s1-0", "S/s2-0", "S/s3-0", "S/s4-0"]], "single": []}
    assert {r.status for r in refreshed(rows)} == {"done"}
    for row in rows[1:]:  # the later tasks find their rows done
        services.outbox_deliver(message_id=str(row.pk))
    assert len(CALLS["batch"]) == 1 and CALLS["single"] == []


@pytest.mark.django_db
def test_draining_leaves_rows_backing_off_held_by_another_worker_or_of_another_subscriber(
    subscriber: subscribers.Subscriber, publications: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = subscribers.Subscriber(name="test.other", topic=TOPIC, handler=f"{HERE}.single_handler")
    monkeypatch.setitem(subscribers._SUBSCRIBERS, other.name, other)
    mine = publish_one_by_one(4)  # each event also gets a row of test.other
    theirs = list(OutboxMessage.objects.filter(subscriber=other.name))
    assert len(theirs) == 4
    later = timezone.now() + timedelta(minutes=5)
    OutboxMessage.objects.filter(pk=mine[1].pk).update(attempts=1, available_at=later)  # backing off
    OutboxMessage.objects.filter(pk=mine[2].pk).update(attempts=1, locked_until=later, available_at=later)  # held

    services.outbox_deliver(message_id=str(mine[0].pk))

    assert CALLS["batch"] == [["S/s0-0", "S/s3-0"]]
    states = {r.subject: (r.status, r.attempts) for r in refreshed(mine)}
    assert states["S/s1-0"] == ("pending", 1) and states["S/s2-0"] == ("pending", 1)
    assert {r.status for r in refreshed(theirs)} == {"pending"}


@pytest.mark.django_db
def test_a_lone_row_or_a_subscriber_not_taking_batches_runs_alone(
    subscriber: subscribers.Subscriber, publications: list[list[str]]
) -> None:
    (alone,) = publish_one_by_one(1)
    services.outbox_deliver(message_id=str(alone.pk))
    assert CALLS == {"batch": [], "single": ["S/s0-0"]}

    BATCHES_ON["value"] = False
    rows = publish_one_by_one(3, prefix="t")
    services.outbox_deliver(message_id=str(rows[0].pk))
    assert CALLS["batch"] == [] and CALLS["single"] == ["S/s0-0", "S/t0-0"]
    assert [r.status for r in refreshed(rows)] == ["done", "pending", "pending"]
