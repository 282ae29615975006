"""Each stage's settings of an EHR site as the site's admin page posts them (the inlines built from
``ehr.sitefeatures``): management forms plus one form per registered feature."""

from typing import Any

from django.db import models

from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_features


def _posted(field: models.Field, value: Any) -> str | None:
    """``value`` as the browser sends it: a ticked box ``on`` (an unticked one is left out), a list one per line."""
    if isinstance(field, models.BooleanField):
        return "on" if value in (True, "on") else None
    if isinstance(value, list):
        return "\n".join(value)
    return str(value)


def settings_form(site: EHRSite | None = None, **values: Any) -> dict[str, str]:
    """The inline forms of every registered feature for ``site`` (None: the add page), each setting its stored
    value (or default) unless ``values`` names it."""
    data: dict[str, str] = {}
    for feature in site_features():
        prefix = feature.model._meta.model_name
        row = feature.model.objects.filter(site=site).first() if site is not None and site.pk else None
        data |= {
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "1" if row else "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1",
        }
        if row is not None:
            data |= {f"{prefix}-0-id": str(row.pk), f"{prefix}-0-site": str(site.pk)}  # type: ignore[union-attr]
        for field in feature.fields:
            value = values[field.name] if field.name in values else getattr(row, field.name, field.get_default())
            if (posted := _posted(field, value)) is not None:
                data[f"{prefix}-0-{field.name}"] = posted
    return data
