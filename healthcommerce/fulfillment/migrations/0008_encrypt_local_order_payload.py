"""Encrypt the local backend's payload and confirmation (ship-to, contact) in place (docs/adr/0016); reversible."""

from django.db import migrations, models

from healthcommerce.core import encryption as enc


class Migration(migrations.Migration):
    dependencies = [("fulfillment", "0007_local_order_confirmation")]

    operations = enc.encrypt_in_place(
        "fulfillment",
        "localcommerceorder",
        [
            ("payload", models.JSONField(), enc.EncryptedJSONField()),
            (
                "confirmation",
                models.JSONField(default=dict, blank=True),
                enc.EncryptedJSONField(default=dict, blank=True),
            ),
        ],
    )
