"""``python manage.py fulfillment_reconcile [--limit N] [--max-age-days D]``: run the reconciliation now."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from healthcommerce.fulfillment.reconcile import fulfillment_reconcile


class Command(BaseCommand):
    """Ask each backend for the status of our open orders and apply it; print the report as JSON. Exits 1 when
    any order could not be checked."""

    help = "Ask the commerce backends where our open orders are and apply it (the daily reconciliation)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000, help="At most this many orders (default 1000).")
        parser.add_argument("--max-age-days", type=int, default=None, help="Only orders signed this recently.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = fulfillment_reconcile(limit=options["limit"], max_age_days=options["max_age_days"])
        self.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        if report.errors:
            raise SystemExit(1)
