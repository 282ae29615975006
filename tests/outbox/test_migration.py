"""The outbox moved from ``fulfillment`` to its own app: a row pending at the upgrade keeps its id (broker
messages queued under the old task name still find it) and its idempotency key (the backend cannot get the
order twice)."""

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("fulfillment", "0003_outbox_publish_count"), ("outbox", "0001_initial")]
AFTER = [("fulfillment", "0004_outbox_moved"), ("outbox", "0002_copy_fulfillment_outbox")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_pending_rows_move_to_the_outbox_app_with_their_ids_and_keys() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)  # with whatever depends on the later ones (core's staff roles, ehr's issue 19 move)
    executor = MigrationExecutor(connection)
    old = executor.loader.project_state(list(executor.loader.applied_migrations)).apps
    site = old.get_model("ehr", "EHRSite").objects.create(name="S", iss="https://ehr.example.org/fhir", client_id="c")
    order = old.get_model("orders", "Order").objects.create(
        site=site, reference="HC-MIGRATE01", patient_fhir_id="p1", order_date=datetime.date(2026, 11, 23)
    )
    row = old.get_model("fulfillment", "OutboxMessage").objects.create(
        topic="order.submit",
        order=order,
        idempotency_key=f"{order.pk}:v1",
        attempts=2,
        available_at=timezone.now(),
        last_error="http_503",
        external_id="",
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    executor = MigrationExecutor(connection)
    new = executor.loader.project_state(list(executor.loader.applied_migrations)).apps.get_model(
        "outbox", "OutboxMessage"
    )
    moved = new.objects.get(pk=row.pk)
    assert (moved.topic, moved.subscriber, moved.subject) == ("order.signed", "fulfillment.submit", f"Order/{order.pk}")
    assert (moved.idempotency_key, moved.status, moved.attempts, moved.last_error) == (
        f"{order.pk}:v1",
        "pending",
        2,
        "http_503",
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema for the next tests
