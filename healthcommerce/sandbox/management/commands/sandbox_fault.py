"""``manage.py sandbox_fault set|clear|list``: inject failures into the sandbox's FHIR API."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from healthcommerce.sandbox.models import FaultKind, SandboxFault
from healthcommerce.sandbox.services import sandbox_fault_clear, sandbox_fault_set


class Command(BaseCommand):
    help = "Set, clear or list injected FHIR API faults of the sandbox EHR."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("set", help="add a fault")
        add.add_argument("--type", dest="resource_type", default="*", help="resource type, or * for all (default)")
        add.add_argument("--kind", required=True, choices=FaultKind.values)
        add.add_argument("--count", type=int, default=None, help="fail this many requests (default: until cleared)")
        actions.add_parser("clear", help="delete every fault")
        actions.add_parser("list", help="list faults")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "clear":
            self.stdout.write(f"Cleared {sandbox_fault_clear()} fault(s).")
        elif action == "list":
            for fault in SandboxFault.objects.all():
                left = "until cleared" if fault.remaining is None else f"{fault.remaining} left"
                self.stdout.write(f"{fault.resource_type}\t{fault.kind}\t{'active' if fault.active else 'off'}\t{left}")
        else:
            try:
                fault = sandbox_fault_set(
                    resource_type=options["resource_type"], kind=options["kind"], count=options["count"]
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Set {fault}.")
