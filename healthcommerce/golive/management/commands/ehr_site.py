"""``manage.py ehr_site add|list|check``: register and inspect EHR sites from the command line.

``check NAME [--patient ID]`` is the go-live readiness check (``healthcommerce.golive.readiness``): it prints a
pass/warn/fail report with the fix for each problem and exits 1 when anything fails.
"""

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from healthcommerce.ehr.models import DEFAULT_SCOPES, EHRSite
from healthcommerce.golive.readiness import report_dict, site_readiness


class Command(BaseCommand):
    help = "Register (add), list, or check EHR sites. See README 'Register a real Epic site'."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register or update a site (keyed by --iss)")
        add.add_argument("--name", required=True)
        add.add_argument("--iss", required=True, help="FHIR base URL exactly as the EHR sends it")
        add.add_argument("--client-id", required=True)
        secret = add.add_mutually_exclusive_group()
        secret.add_argument("--client-secret", help="confidential symmetric client (client_secret_basic)")
        secret.add_argument("--private-key", help="path to a PEM private key (private_key_jwt)")
        add.add_argument("--key-id", default="", help="kid of the signing key in our JWKS")
        add.add_argument("--alg", default="RS384", choices=["RS384", "ES384"])
        add.add_argument("--scopes", default=DEFAULT_SCOPES)
        add.add_argument("--epic", action="store_true", help="Epic quirks: Epic-Client-ID on metadata, POST authorize")
        sub.add_parser("list", help="list sites")
        check = sub.add_parser("check", help="readiness check against the live EHR (exit 1 on any failure)")
        check.add_argument("site", nargs="?", help="the site's name (or its iss)")
        check.add_argument("--iss", help="the site's iss (instead of NAME)")
        check.add_argument("--patient", default="", help="a test patient's FHIR id to read with backend services")
        check.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _add(self, options: dict[str, Any]) -> None:
        iss = options["iss"].rstrip("/")
        if not iss.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise CommandError("--iss must be an https URL (http only on this machine).")
        fields: dict[str, Any] = {
            "name": options["name"],
            "client_id": options["client_id"],
            "scopes": " ".join(options["scopes"].split()),
            "auth_method": EHRSite.AuthMethod.PUBLIC,
            "client_secret": "",
            "private_key_pem": "",
            "key_id": options["key_id"],
            "signing_alg": options["alg"],
        }
        if options["client_secret"]:
            fields |= {"auth_method": EHRSite.AuthMethod.CLIENT_SECRET_BASIC, "client_secret": options["client_secret"]}
        if options["private_key"]:
            pem = Path(options["private_key"]).read_text()
            if "PRIVATE KEY" not in pem:
                raise CommandError("--private-key must be a PEM private key file.")
            fields |= {"auth_method": EHRSite.AuthMethod.PRIVATE_KEY_JWT, "private_key_pem": pem}
        if options["epic"]:
            fields["quirks"] = {"epic_client_id_header": True, "authorize_post": True}
        site, created = EHRSite.objects.update_or_create(iss=iss, defaults=fields)
        self.stdout.write(
            f"{'Registered' if created else 'Updated'} {site.name}: iss={site.iss} auth={site.auth_method}"
        )

    def _list(self, options: dict[str, Any]) -> None:
        for site in EHRSite.objects.all():
            active = "active" if site.is_active else "inactive"
            self.stdout.write(f"{site.name}\t{site.iss}\t{site.client_id}\t{site.auth_method}\t{active}")

    def _check(self, options: dict[str, Any]) -> None:
        key = options["iss"] or options["site"]
        if not key:
            raise CommandError("Name the site: ehr_site check NAME (or --iss ISS).")
        site = EHRSite.objects.filter(Q(name=key) | Q(iss=key.rstrip("/"))).first()
        if site is None:
            raise CommandError(f"No site named {key!r} (see `ehr_site list`).")
        report = site_readiness(site, patient_id=options["patient"].strip(), actor="manage.py ehr_site check")
        if options["json"]:
            self.stdout.write(json.dumps(report_dict(report), indent=2))
        else:
            self.stdout.write(report.as_text(), ending="")
        if not report.passed:
            raise CommandError(f"{len(report.failures)} check(s) failed for {site.name}.", returncode=1)
