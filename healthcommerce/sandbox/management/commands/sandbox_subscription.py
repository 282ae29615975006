"""``manage.py sandbox_subscription add|list``: the sandbox EHR's FHIR Subscriptions (Backport IG, rest-hook,
id-only) that its "Send notification" button posts to."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.notify import SUBSCRIPTION_ID, sandbox_subscription_set


class Command(BaseCommand):
    help = "Add (or replace) or list the sandbox EHR's FHIR Subscriptions."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="add or replace a subscription")
        add.add_argument("--endpoint", required=True, help="the subscriber's notification URL")
        add.add_argument("--token", required=True, help="the bearer token sent in the Authorization header")
        add.add_argument("--id", dest="subscription_id", default=SUBSCRIPTION_ID)
        actions.add_parser("list", help="list subscriptions (endpoints only, no tokens)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for row in FhirResource.objects.filter(resource_type="Subscription"):
                self.stdout.write(f"{row}\t{row.status}\t{row.data.get('channel', {}).get('endpoint', '')}")
            return
        row = sandbox_subscription_set(
            endpoint=options["endpoint"], token=options["token"], subscription_id=options["subscription_id"]
        )
        self.stdout.write(f"Subscription {row} -> {options['endpoint']}")
