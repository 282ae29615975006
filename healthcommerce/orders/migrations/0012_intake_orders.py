"""The intake queue (``orders.HeldOrder``, a proxy of ``Order``) and its permissions for the staff roles
(core/roles.py): ``support`` views and releases held orders (an operating action; PHI masked), ``admin`` may do
everything. Permissions are created first, as core's 0001_staff_roles does (Django makes them only after all
migrations)."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_ACTIONS = ("view", "change")


def roles_grant(apps: Any, schema_editor: Any) -> None:
    orders = apps.get_app_config("orders")
    orders.models_module = True
    create_permissions(orders, apps=apps, verbosity=0)
    orders.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    queue = Permission.objects.filter(content_type__app_label="orders", content_type__model="heldorder")
    for group in Group.objects.filter(name="support"):
        group.permissions.add(*queue.filter(codename__in=[f"{action}_heldorder" for action in SUPPORT_ACTIONS]))
    for group in Group.objects.filter(name="admin"):
        group.permissions.add(*queue)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0011_order_source"),
        ("core", "0001_staff_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="HeldOrder",
            fields=[],
            options={
                "verbose_name": "held order (intake queue)",
                "verbose_name_plural": "intake queue",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("orders.order",),
        ),
        migrations.RunPython(roles_grant, migrations.RunPython.noop),
    ]
