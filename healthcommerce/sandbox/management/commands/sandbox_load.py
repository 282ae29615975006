"""``manage.py sandbox_load [--dir DIR ...]``: load the FHIR fixtures and register the default client."""

import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from healthcommerce.sandbox.loader import FixtureError, default_fixture_dirs, sandbox_resources_load
from healthcommerce.sandbox.services import sandbox_default_client_ensure


class Command(BaseCommand):
    help = (
        "Load FHIR R4 fixtures (single resources or Bundles) into the sandbox EHR, idempotently, and make sure the "
        "default OAuth client exists. Without --dir: FHIR_FIXTURES_DIR (the fixtures kept in this repository)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dir", dest="dirs", action="append", type=Path, metavar="DIR", help="folder to load (repeatable)"
        )
        parser.add_argument("--no-client", action="store_true", help="do not register the default client")

    def handle(self, *args: Any, **options: Any) -> None:
        dirs: list[Path] = options["dirs"] or default_fixture_dirs()
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise CommandError(f"Not a folder: {', '.join(missing)}")
        started = time.monotonic()
        try:
            counts = sandbox_resources_load(dirs=dirs)
        except FixtureError as exc:
            raise CommandError(exc.message) from exc
        for resource_type, count in counts.items():
            self.stdout.write(f"{resource_type}: {count}")
        elapsed = time.monotonic() - started
        self.stdout.write(f"Loaded {sum(counts.values())} resources in {elapsed:.1f}s.")
        if not options["no_client"]:
            client, created = sandbox_default_client_ensure()
            verb = "Registered" if created else "Kept"
            self.stdout.write(f"{verb} client {client.client_id} ({client.token_endpoint_auth_method}).")
