"""Copy the rows of the old ``fulfillment.OutboxMessage`` (topic ``order.submit``) into the outbox app as
``order.signed`` rows for ``fulfillment.submit``, keeping their ids (so broker messages already queued under
the old task name still find them) and their idempotency keys (so the backend cannot receive an order twice)."""

from django.db import migrations

FIELDS = (
    "id", "created_at", "updated_at", "idempotency_key", "status", "attempts", "available_at", "published_at",
    "publish_count", "locked_until", "last_error",
)  # fmt: skip


def copy(apps, schema_editor):
    old = apps.get_model("fulfillment", "OutboxMessage")
    new = apps.get_model("outbox", "OutboxMessage")
    rows = [
        new(
            topic="order.signed",
            subscriber="fulfillment.submit",
            subject=f"Order/{row.order_id}",
            result=row.external_id,
            **{name: getattr(row, name) for name in FIELDS},
        )
        for row in old.objects.all().iterator()
    ]
    new.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial"), ("fulfillment", "0003_outbox_publish_count")]
    operations = [migrations.RunPython(copy, migrations.RunPython.noop)]
