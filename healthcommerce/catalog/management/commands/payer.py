"""``manage.py payer``: the payer records (``catalog.Payer``) of a site or of every site.

``payer add --site "Sandbox EHR" --name Medicare --plan-type medicare --payer-id CMS --identifier
Organization/org1234 --alias "Centers for Medicare and Medicaid Services"`` creates the record or updates it to these
values (idempotent); ``payer list [--site NAME]`` prints the records that apply there.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from healthcommerce.catalog.models import Payer, PlanType
from healthcommerce.catalog.selectors import site_payers
from healthcommerce.catalog.services import payer_save
from healthcommerce.ehr.models import EHRSite


def _site(name: str | None) -> EHRSite | None:
    if not name:
        return None
    site = EHRSite.objects.filter(name=name).first() or EHRSite.objects.filter(iss=name.rstrip("/")).first()
    if site is None:
        raise CommandError(f"No EHR site named {name!r} (ehr_site list).")
    return site


class Command(BaseCommand):
    help = "Add or list payer records (who pays, as the chart names them)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Create or update a payer record.")
        add.add_argument("--site", help="The site's name or iss; left out: every site.")
        add.add_argument("--name", required=True)
        add.add_argument("--plan-type", required=True, choices=PlanType.values)
        add.add_argument("--payer-id", default="", help="The clearinghouse payer id (eligibility).")
        add.add_argument(
            "--identifier", action="append", default=[], help="Organization/<id>, system|value or a value."
        )
        add.add_argument("--alias", action="append", default=[], help="An exact name the chart writes.")
        add.add_argument("--out-of-network", action="store_true", help="Our supplier is not in its network.")
        listing = actions.add_parser("list", help="List the payer records that apply at a site (or every site's).")
        listing.add_argument("--site")

    def handle(self, *args: Any, **options: Any) -> None:
        site = _site(options["site"])
        if options["action"] == "list":
            payers = site_payers(site) if site else list(Payer.objects.filter(site=None, is_active=True))
            for payer in payers:
                self.stdout.write(f"{payer.name}\t{payer.plan_type}\t{payer.payer_id or '-'}\t{payer.site or 'all'}")
            return
        payer, created = payer_save(
            site=site,
            name=options["name"],
            plan_type=options["plan_type"],
            payer_id=options["payer_id"],
            identifiers=options["identifier"],
            aliases=options["alias"],
            supplier_in_network=not options["out_of_network"],
        )
        self.stdout.write(f"Payer {payer.name} {'created' if created else 'saved'} ({payer.site or 'all sites'}).")
