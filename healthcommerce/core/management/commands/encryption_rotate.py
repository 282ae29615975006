"""``manage.py encryption_rotate``: re-encrypt every encrypted column with the first of ``FIELD_ENCRYPTION_KEYS``."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from healthcommerce.core.encryption import encryption_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column (PHI, OAuth tokens, EHR site secrets) with the first key of "
        "FIELD_ENCRYPTION_KEYS, in batches; idempotent. Run after putting a new key first, before removing the old "
        "one (docs/deploy.md 'Encryption keys')."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        report = encryption_rotate(batch_size=options["batch_size"], progress=self.stdout.write)
        rotated, current, failed = (sum(counts.values()) for counts in (report.rotated, report.current, report.failed))
        self.stdout.write(f"Total: {rotated} rotated, {current} already under the first key, {failed} failed.")
        if failed:
            raise CommandError(
                f"{failed} value(s) decrypt with none of FIELD_ENCRYPTION_KEYS: they were left as they are. Put the "
                "key they were written with back into FIELD_ENCRYPTION_KEYS and run this again."
            )
