"""System checks of the catalog's payer rules, run by ``manage.py check`` and at every start.

``catalog.W001``: a payer rule still matches by regular expression. Text matching on the payer name is retired
(a typo made the patient self-pay); the payer records migration (0011) could not turn a regular expression into
payer records safely, so it deactivated each such rule and kept its pattern: an admin re-points it to a payer or a
plan type (Catalog > Payer rules), or deletes it. Source: issue 21 "payer identity".
"""

from typing import Any

from django.core import checks
from django.db import DatabaseError


def retired_payer_rules_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Return a ``Warning`` naming each payer rule left with a retired ``regex`` match; ``[]`` when none is (or the
    table does not exist yet: before ``migrate``)."""
    from healthcommerce.catalog.models import PayerRule

    try:
        rules = list(PayerRule.objects.filter(match=PayerRule.Match.REGEX).select_related("site"))
    except DatabaseError:
        return []
    return [
        checks.Warning(
            f"Payer rule {rule.pk} ({rule.site or 'all sites'}, priority {rule.priority}) matched payer names by the"
            f" regular expression {rule.pattern!r}; it is inactive and matches nothing.",
            hint="Re-point it to a payer record or a plan type in the admin (Catalog > Payer rules), or delete it.",
            obj=rule,
            id="catalog.W001",
        )
        for rule in rules
    ]
