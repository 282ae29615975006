"""Encrypt the order's PHI columns in place (docs/adr/0016-encryption-at-rest.md); reversible."""

from django.db import migrations, models

from healthcommerce.core import encryption as enc


class Migration(migrations.Migration):
    dependencies = [("orders", "0004_patient_language")]

    operations = enc.encrypt_in_place(
        "orders",
        "order",
        [
            ("patient_name", models.CharField(max_length=300), enc.EncryptedCharField(max_length=300)),
            (
                "patient_birth_date",
                models.DateField(null=True, blank=True),
                enc.EncryptedDateField(null=True, blank=True),
            ),
            ("ship_to", models.JSONField(default=dict, blank=True), enc.EncryptedJSONField(default=dict, blank=True)),
            ("contact_email", models.EmailField(max_length=254, blank=True), enc.EncryptedEmailField(blank=True)),
            (
                "contact_phone",
                models.CharField(max_length=40, blank=True),
                enc.EncryptedCharField(max_length=40, blank=True),
            ),
            (
                "payer_member_id",
                models.CharField(max_length=100, blank=True),
                enc.EncryptedCharField(max_length=100, blank=True),
            ),
            (
                "patient_ship_to",
                models.JSONField(default=dict, blank=True, help_text="The patient's corrected ship-to."),
                enc.EncryptedJSONField(default=dict, blank=True, help_text="The patient's corrected ship-to."),
            ),
        ],
    )
