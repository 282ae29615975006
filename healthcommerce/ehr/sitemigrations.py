"""Migration helper for moving an EHR site's setting into a stage's own ``SiteSettings`` row (issue 19)."""

from typing import Any

from django.db import migrations


def site_settings_copy(model: str, fields: list[str]) -> migrations.RunPython:
    """Return a ``RunPython`` that copies ``fields`` of every ``ehr.EHRSite`` into its row of ``model``
    (``"app_label.ModelName"``, one row per site, created when missing), keeping every value; reversed, it copies
    them back onto the site. Run it while ``EHRSite`` still has the fields (the stage's migration depends on the
    ``ehr`` migration before ``0012_site_settings_moved_to_stages``, which depends on the stage's)."""

    def forward(apps: Any, schema_editor: Any) -> None:
        rows = apps.get_model(model)
        for site in apps.get_model("ehr", "EHRSite").objects.all():
            rows.objects.update_or_create(site_id=site.pk, defaults={name: getattr(site, name) for name in fields})

    def backward(apps: Any, schema_editor: Any) -> None:
        sites = apps.get_model("ehr", "EHRSite")
        for row in apps.get_model(model).objects.all():
            sites.objects.filter(pk=row.site_id).update(**{name: getattr(row, name) for name in fields})

    return migrations.RunPython(forward, backward)
