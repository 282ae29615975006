"""Encrypt the EHR site's secrets and the launch's OAuth tokens in place (docs/adr/0016); reversible."""

from django.db import migrations, models

from healthcommerce.core import encryption as enc

REFRESH_HELP = "Single-use when the EHR rotates it; never leaves the server."
PEM_HELP = "PEM private key for private_key_jwt."


class Migration(migrations.Migration):
    dependencies = [("ehr", "0005_site_sms_enabled")]

    operations = [
        *enc.encrypt_in_place(
            "ehr",
            "ehrsite",
            [
                (
                    "client_secret",
                    models.CharField(max_length=500, blank=True),
                    enc.EncryptedCharField(max_length=500, blank=True),
                ),
                (
                    "private_key_pem",
                    models.TextField(blank=True, help_text=PEM_HELP),
                    enc.EncryptedTextField(blank=True, help_text=PEM_HELP),
                ),
            ],
        ),
        *enc.encrypt_in_place(
            "ehr",
            "launch",
            [
                ("access_token", models.TextField(blank=True), enc.EncryptedTextField(blank=True)),
                (
                    "refresh_token",
                    models.TextField(blank=True, help_text=REFRESH_HELP),
                    enc.EncryptedTextField(blank=True, help_text=REFRESH_HELP),
                ),
            ],
        ),
    ]
