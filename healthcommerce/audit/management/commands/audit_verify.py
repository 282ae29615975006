"""``manage.py audit_verify [--seal]``: recompute the audit hash chain and report the first broken link (ADR 0015)."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from healthcommerce.audit.services import audit_seal, audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain (exit status 1 at the first broken link); --seal seals first."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--seal", action="store_true", help="seal the committed unsealed rows before verifying")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seal"]:
            self.stdout.write(f"sealed {audit_seal(wait=True)} row(s)")
        report = audit_verify()
        if not report.ok:
            raise CommandError(
                f"audit chain BROKEN at seq {report.broken_seq} (row {report.broken_id}): {report.problem}; "
                f"{report.head_seq} row(s) verified before it"
            )
        self.stdout.write(
            f"audit chain ok: {report.sealed} row(s) sealed, seq 1..{report.head_seq}, head {report.head_hash}; "
            f"{report.unsealed} not yet sealed"
        )
