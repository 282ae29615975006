"""The local backend's model moved to its own app (``commerce_local``) without moving data: the table keeps its
name, rows stored before the move are read after it, and the content type (staff permissions) follows."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("fulfillment", "0012_fulfillment_site"), ("commerce_local", None)]
AFTER = [("fulfillment", "0013_local_order_moved_out"), ("commerce_local", "0001_local_order_moved_here")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_local_order_stored_before_the_move_is_read_after_it_with_its_permissions() -> None:
    executor = MigrationExecutor(connection)
    # every other app at its latest migration except those that come after the move (core's staff roles is
    # before it: it needs the model where it was)
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in ("fulfillment", "commerce_local")]
    executor.migrate(others + BEFORE)
    old = executor.loader.project_state([node for node in others + BEFORE if node[1]]).apps
    ContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    old_type, _ = ContentType.objects.get_or_create(app_label="fulfillment", model="localcommerceorder")
    Permission.objects.get_or_create(
        content_type=old_type, codename="change_localcommerceorder", defaults={"name": "Can change"}
    )
    old.get_model("fulfillment", "LocalCommerceOrder").objects.create(
        idempotency_key="k-before", order_reference="HC-BEFORE", payload={"items": []}, submit_count=1
    )

    executor = MigrationExecutor(connection)
    executor.migrate(others + AFTER)

    new = executor.loader.project_state(others + AFTER).apps
    row = new.get_model("commerce_local", "LocalCommerceOrder").objects.get(idempotency_key="k-before")
    assert (row.order_reference, row.payload, row._meta.db_table) == (
        "HC-BEFORE",
        {"items": []},
        "fulfillment_localcommerceorder",
    )
    moved = new.get_model("contenttypes", "ContentType").objects.get(pk=old_type.pk)
    assert moved.app_label == "commerce_local"
    assert (
        new.get_model("auth", "Permission")
        .objects.filter(content_type=moved, codename="change_localcommerceorder")
        .exists()
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema for the next tests
