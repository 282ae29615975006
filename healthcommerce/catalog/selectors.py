"""Catalog look-ups."""

from collections.abc import Iterable

from django.db.models import Q

from healthcommerce.catalog.models import CodeMapping, Product
from healthcommerce.ehr.models import EHRSite


def mapping_for_codes(*, site: EHRSite, codings: Iterable[tuple[str, str]]) -> CodeMapping | None:
    """Return the mapping for the first ``(system, code)`` that maps to an active product, or None.

    A mapping for ``site`` wins over a global one (``site`` null), so local codes are per-site configuration.
    """
    for system, code in codings:
        if not system or not code:
            continue
        rows = CodeMapping.objects.select_related("product").filter(
            Q(site=site) | Q(site__isnull=True), system=system, code=code, product__is_active=True
        )
        found = sorted(rows, key=lambda m: m.site_id is None)
        if found:
            return found[0]
    return None


def products_active() -> list[Product]:
    """Return every active product, devices first, for the clinician's manual pick."""
    return list(Product.objects.filter(is_active=True).order_by("kind", "name"))
