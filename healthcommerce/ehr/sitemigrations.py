"""Migration helper for moving an EHR site's setting into a stage's own ``SiteSettings`` row (issue 19)."""

import uuid
from typing import Any

from django.db import migrations


def site_settings_copy(model: str, fields: list[str]) -> migrations.RunPython:
    """Return a ``RunPython`` that copies ``fields`` of every ``ehr.EHRSite`` into its row of ``model``
    (``"app_label.ModelName"``, one row per site, created when missing), keeping every value; reversed, it copies
    them back onto the site. Run it while ``EHRSite`` still has the fields (the stage's migration depends on the
    ``ehr`` migration before ``0012_site_settings_moved_to_stages``, which depends on the stage's).

    The site's versions (django-simple-history, ADR 0019) keep these settings too: each ``HistoricalEHRSite`` row
    is copied into the stage's history (same date, user, reason and type, the row's values), so who changed a
    setting and when survives the move; a deleted site's versions get an id of their own."""

    def forward(apps: Any, schema_editor: Any) -> None:
        rows = apps.get_model(model)
        for site in apps.get_model("ehr", "EHRSite").objects.all():
            rows.objects.update_or_create(site_id=site.pk, defaults={name: getattr(site, name) for name in fields})
        _history_copy(apps, model, fields)

    def backward(apps: Any, schema_editor: Any) -> None:
        sites = apps.get_model("ehr", "EHRSite")
        for row in apps.get_model(model).objects.all():
            sites.objects.filter(pk=row.site_id).update(**{name: getattr(row, name) for name in fields})

    return migrations.RunPython(forward, backward)


def _history_copy(apps: Any, model: str, fields: list[str]) -> None:
    app_label, name = model.split(".")
    history = apps.get_model(app_label, f"Historical{name}")
    row_ids = dict(apps.get_model(model).objects.values_list("site_id", "id"))
    lost: dict[Any, uuid.UUID] = {}  # deleted sites: one id per site for all its versions
    history.objects.bulk_create(
        history(
            id=row_ids.get(version.id) or lost.setdefault(version.id, uuid.uuid4()),
            site_id=version.id,
            created_at=version.created_at,
            updated_at=version.updated_at,
            history_date=version.history_date,
            history_change_reason=version.history_change_reason,
            history_type=version.history_type,
            history_user_id=version.history_user_id,
            **{field: getattr(version, field) for field in fields},
        )
        for version in apps.get_model("ehr", "HistoricalEHRSite").objects.order_by("history_date", "history_id")
    )
