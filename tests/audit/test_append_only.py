"""On PostgreSQL the database refuses to change or delete audit rows; only the seal may fill the chain columns.

Run with ``DATABASE_URL=postgres://...``; skipped on SQLite (the migration's trigger is PostgreSQL only).
"""

import threading

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from healthcommerce.audit.models import AuditEvent
from healthcommerce.audit.services import audit_record, audit_seal, audit_verify

# Skipped before any database set-up: a transactional test skipped after it would flush the tables under the
# serialized-rollback browser tests that follow.
pytestmark = [
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="the append-only trigger exists on PostgreSQL only",
    ),
    pytest.mark.django_db,
]


def _refused(statement) -> bool:  # type: ignore[no-untyped-def]
    try:
        with transaction.atomic():
            statement()
    except DatabaseError as exc:
        return "append-only" in str(exc)
    return False


def test_an_audit_row_cannot_be_updated_or_deleted() -> None:
    event = audit_record(actor="admin:a", action="admin.view", target="Order/1")
    rows = AuditEvent.objects.filter(pk=event.pk)
    assert _refused(lambda: rows.update(outcome="success-ish"))
    assert _refused(lambda: rows.delete())
    audit_seal()
    assert _refused(lambda: rows.update(outcome="tampered"))
    assert _refused(lambda: rows.update(hash="0" * 64))
    assert _refused(lambda: rows.delete())
    assert audit_verify().ok


def test_an_unsealed_row_cannot_be_changed_while_it_is_sealed() -> None:
    event = audit_record(actor="admin:a", action="admin.view")
    rows = AuditEvent.objects.filter(pk=event.pk)
    assert _refused(lambda: rows.update(seq=1, prev_hash="0" * 64, hash="1" * 64, actor="admin:b"))
    assert _refused(lambda: rows.update(seq=1, prev_hash="0" * 64))  # a seal needs the hash too


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # later serialized tests need no post_migrate rows
def test_writers_do_not_wait_for_each_other_and_concurrent_sealers_keep_one_chain() -> None:
    errors: list[Exception] = []

    def write_and_seal(n: int) -> None:
        try:
            for i in range(10):
                with transaction.atomic():
                    audit_record(actor=f"system:w{n}", action="fulfillment.submit", target=f"Order/{n}-{i}")
                audit_seal(wait=n % 2 == 0)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write_and_seal, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    audit_seal(wait=True)
    report = audit_verify()
    assert report.ok and report.sealed == 60 and report.unsealed == 0
