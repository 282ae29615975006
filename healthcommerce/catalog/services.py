"""Catalog writes: payer records (``catalog.Payer``)."""

from django.db import transaction

from healthcommerce.catalog.models import Payer
from healthcommerce.ehr.models import EHRSite


@transaction.atomic
def payer_save(
    *,
    site: EHRSite | None,
    name: str,
    plan_type: str,
    payer_id: str = "",
    identifiers: list[str] | None = None,
    aliases: list[str] | None = None,
    supplier_in_network: bool = True,
    is_active: bool = True,
) -> tuple[Payer, bool]:
    """Create or update the payer record named ``name`` at ``site`` (None: every site) with these values; return it
    and whether it was created. Idempotent: saving the same values twice changes nothing the second time (no
    history row). ``identifiers`` and ``aliases`` are lists, stored one per line."""
    values = {
        "plan_type": plan_type,
        "payer_id": payer_id,
        "identifiers": "\n".join(identifiers or []),
        "aliases": "\n".join(aliases or []),
        "supplier_in_network": supplier_in_network,
        "is_active": is_active,
    }
    payer = Payer.objects.select_for_update().filter(site=site, name=name).first()
    if payer is None:
        return Payer.objects.create(site=site, name=name, **values), True
    changed = [key for key, value in values.items() if getattr(payer, key) != value]
    for key in changed:
        setattr(payer, key, values[key])
    if changed:
        payer.save(update_fields=[*changed, "updated_at"])
    return payer, False
