"""``LocalCommerceOrder`` moves from the ``fulfillment`` app to this one (issue 19: the local backend is a folder
like the others). State only: the table keeps its name (``fulfillment_localcommerceorder``), so no row moves.
The content type moves with it, so staff permissions (the ``support`` group's view/change) and admin log entries
follow the model."""

import uuid
from typing import Any

from django.db import migrations, models

import healthcommerce.core.encryption


def _move(apps: Any, old: str, new: str) -> None:
    """Relabel the model's content type from app ``old`` to ``new`` (if one exists and the new one does not)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new, model="localcommerceorder").exists():
        ContentType.objects.filter(app_label=old, model="localcommerceorder").update(app_label=new)


def content_type_move(apps: Any, schema_editor: Any) -> None:
    _move(apps, "fulfillment", "commerce_local")


def content_type_back(apps: Any, schema_editor: Any) -> None:
    _move(apps, "commerce_local", "fulfillment")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0001_staff_roles"),
        ("fulfillment", "0011_admin_labels"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LocalCommerceOrder',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('idempotency_key', models.CharField(max_length=100, unique=True)),
                        ('submit_count', models.PositiveIntegerField(default=0, help_text='Submit calls received with this idempotency key.')),
                        ('order_reference', models.CharField(db_index=True, max_length=20)),
                        ('payload', healthcommerce.core.encryption.EncryptedJSONField()),
                        ('confirmation', healthcommerce.core.encryption.EncryptedJSONField(blank=True, default=dict)),
                        ('status', models.CharField(choices=[('received', 'Received'), ('confirmed', 'Confirmed'), ('shipped', 'Shipped'), ('delivered', 'Delivered'), ('cancelled', 'Cancelled')], default='received', max_length=20)),
                        ('carrier', models.CharField(blank=True, max_length=100)),
                        ('tracking_number', models.CharField(blank=True, max_length=100)),
                        ('tracking_url', models.URLField(blank=True, max_length=500, verbose_name='tracking URL')),
                        ('confirmed_at', models.DateTimeField(blank=True, null=True)),
                        ('shipped_at', models.DateTimeField(blank=True, null=True)),
                        ('delivered_at', models.DateTimeField(blank=True, null=True)),
                        ('phi_purged_at', models.DateTimeField(blank=True, null=True, verbose_name='PHI purged at')),
                    ],
                    options={
                        'db_table': 'fulfillment_localcommerceorder',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_move, content_type_back, elidable=True),
    ]
