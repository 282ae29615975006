"""``LocalCommerceOrder`` now belongs to the ``commerce_local`` app (``healthcommerce.fulfillment.backends.local``):
removed from this app's state only; its table stays where it is and is the other app's from now on."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0012_fulfillment_site"),
        ("commerce_local", "0001_local_order_moved_here"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="LocalCommerceOrder")],
            database_operations=[],
        ),
    ]
