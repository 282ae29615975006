"""The staff roles (core/roles.py) may view eligibility checks: ``support`` and ``admin`` (the checks are written by
the app only; the admin shows no exchange). Permissions are created first, as core's 0001_staff_roles does."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations


def roles_grant(apps: Any, schema_editor: Any) -> None:
    coverage = apps.get_app_config("coverage")
    coverage.models_module = True
    create_permissions(coverage, apps=apps, verbosity=0)
    coverage.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="coverage", codename="view_eligibilitycheck")
    for group in Group.objects.filter(name__in=["support", "admin"]):
        group.permissions.add(*view)


class Migration(migrations.Migration):
    dependencies = [("coverage", "0001_initial"), ("core", "0001_staff_roles")]
    operations = [migrations.RunPython(roles_grant, migrations.RunPython.noop)]
