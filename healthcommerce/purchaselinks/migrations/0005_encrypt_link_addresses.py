"""Encrypt the email address and phone number each link went to, in place (docs/adr/0016); reversible."""

from django.db import migrations, models

from healthcommerce.core import encryption as enc


class Migration(migrations.Migration):
    dependencies = [("purchaselinks", "0004_link_purpose")]

    operations = enc.encrypt_in_place(
        "purchaselinks",
        "purchaselink",
        [
            (
                "sent_to",
                models.CharField(max_length=300, blank=True),
                enc.EncryptedCharField(max_length=300, blank=True),
            ),
            (
                "sms_sent_to",
                models.CharField(max_length=20, blank=True),
                enc.EncryptedCharField(max_length=20, blank=True),
            ),
        ],
    )
