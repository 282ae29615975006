"""``manage.py medusa_sync_catalog``: create or update the Medusa products for ``catalog.Product``, by SKU.

Idempotent; run it after a catalog change and before switching ``COMMERCE_BACKEND`` to ``medusa``
(docs/adr/0007-medusa-commerce-backend.md). Needs ``MEDUSA_URL`` and ``MEDUSA_API_KEY``.
"""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from healthcommerce.catalog.models import Product
from healthcommerce.fulfillment.backends.base import BackendError
from healthcommerce.fulfillment.backends.medusa.catalog import medusa_catalog_sync
from healthcommerce.fulfillment.backends.medusa.client import medusa_client


class Command(BaseCommand):
    help = "Create or update Medusa products and variants from the catalog, matched by SKU (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sku", action="append", default=[], help="Sync only this SKU (repeatable).")

    def handle(self, *args: Any, **options: Any) -> None:
        products = Product.objects.order_by("sku")
        if options["sku"]:
            products = products.filter(sku__in=options["sku"])
        try:
            report = medusa_catalog_sync(client=medusa_client(), products=products)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except BackendError as exc:
            raise CommandError(f"Medusa sync failed ({exc.code}): {exc.message}") from exc
        for sku in report.created:
            self.stdout.write(f"created {sku}")
        for sku in report.updated:
            self.stdout.write(f"updated {sku}")
        self.stdout.write(
            f"medusa catalog: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged"
        )
