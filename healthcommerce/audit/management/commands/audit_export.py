"""``manage.py audit_export [--since ISO] [--until ISO] [--patient <fhir id>] > bundle.json``: the audit trail as a
FHIR R4 Bundle of AuditEvent resources (``audit.fhir``), by period and/or patient. The export is itself audited."""

import json
from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from healthcommerce.audit.fhir import audit_bundle
from healthcommerce.audit.selectors import audit_events
from healthcommerce.audit.services import audit_record


def _instant(text: str | None, name: str) -> datetime | None:
    """Parse an ISO 8601 date or date-time (a naive one is in ``TIME_ZONE``); ``None`` for no value."""
    if not text:
        return None
    value = parse_datetime(text)
    if value is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"--{name}: not an ISO 8601 date or date-time: {text!r}")
        value = datetime(day.year, day.month, day.day)
    return timezone.make_aware(value) if timezone.is_naive(value) else value


class Command(BaseCommand):
    help = "Write the audit rows of a period (and/or a patient) as a FHIR R4 Bundle of AuditEvent resources."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--since", help="first instant (ISO 8601 date or date-time), inclusive")
        parser.add_argument("--until", help="last instant (ISO 8601 date or date-time), exclusive")
        parser.add_argument("--patient", default="", help="only rows about this patient (FHIR Patient id)")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = _instant(options["since"], "since"), _instant(options["until"], "until")
        rows = list(audit_events(since=since, until=until, patient_id=options["patient"]))
        self.stdout.write(json.dumps(audit_bundle(rows), indent=2))
        audit_record(
            actor="command:audit_export",
            action="audit.export",
            target=f"Patient/{options['patient']}" if options["patient"] else "",
            detail={
                "rows": len(rows),
                "since": since.isoformat() if since else "",
                "until": until.isoformat() if until else "",
            },
        )
