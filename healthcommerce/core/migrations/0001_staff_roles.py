"""The staff roles as groups (healthcommerce/core/roles.py): ``support`` (operations, PHI masked) and ``admin``
(every permission that exists when this runs). Permissions are created first: Django makes them only after all
migrations (post_migrate), and a fresh database runs this before that."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

# (app label, model, actions): view everything an operator needs; change only where an operating action needs it.
SUPPORT = [
    ("orders", "order", ["view"]),
    ("orders", "orderevent", ["view"]),
    ("ehr", "launch", ["view"]),
    ("ehr", "ehrsite", ["view"]),
    ("catalog", "product", ["view"]),
    ("catalog", "codemapping", ["view"]),
    ("catalog", "orderablerule", ["view"]),
    ("catalog", "payerrule", ["view"]),
    ("outbox", "outboxmessage", ["view", "change"]),  # Retry now
    ("fulfillment", "localcommerceorder", ["view", "change"]),  # Mark shipped / delivered
    ("purchaselinks", "purchaselink", ["view", "change"]),  # Revoke, re-issue
    ("purchaselinks", "payment", ["view"]),
    ("purchaselinks", "stripeevent", ["view"]),
    ("audit", "auditevent", ["view"]),
]


def roles_create(apps: Any, schema_editor: Any) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    support, _ = Group.objects.get_or_create(name="support")
    for app_label, model, actions in SUPPORT:
        codenames = [f"{action}_{model}" for action in actions]
        support.permissions.add(
            *Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        )
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.add(*Permission.objects.all())


def roles_remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=["support", "admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("axes", "0010_accessattemptexpiration"),
        ("otp_totp", "0003_add_timestamps"),
        ("audit", "0001_initial"),
        ("outbox", "0002_copy_fulfillment_outbox"),
        ("ehr", "0005_site_sms_enabled"),
        ("catalog", "0006_seed_payer_rules"),
        ("orders", "0004_patient_language"),
        ("fulfillment", "0007_local_order_confirmation"),
        ("purchaselinks", "0004_link_purpose"),
    ]

    operations = [migrations.RunPython(roles_create, roles_remove)]
