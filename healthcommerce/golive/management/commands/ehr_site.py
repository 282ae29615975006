"""``manage.py ehr_site add|list|check|export|import|schema``: register, inspect, export and import EHR sites from
the command line (the site record file: docs/adr/0019; ``schema`` prints its JSON Schema).

``add`` has one flag per registered stage setting (``ehr.sitefeatures``: ``--shipto-reread``, ``--writeback``,
``--cds-issuers URL ...``), derived from the setting's model field; a flag left out keeps the stored value.

``check NAME [--patient ID]`` is the go-live readiness check (``healthcommerce.golive.readiness``): it prints a
pass/warn/fail report with the fix for each problem and exits 1 when anything fails.
"""

import json
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.ehr.sitefeatures import (
    site_settings_arguments,
    site_settings_options,
    site_settings_update,
    site_settings_values,
)
from healthcommerce.golive.readiness import report_dict, site_readiness
from healthcommerce.golive.siterecord import (
    ImportResult,
    site_by_name,
    site_record_dumps,
    site_record_export,
    site_record_import,
    site_record_schema,
)

EPIC_QUIRKS = {"epic_client_id_header": True, "authorize_post": True}
SECRET_FIELDS = ("client_secret", "private_key_pem")


def _change(name: str, old: Any, new: Any) -> str:
    """Say how field ``name`` of an existing site changes (``""`` when it does not); secrets only as set,
    replaced or removed, never their value."""
    if old == new:
        return ""
    if name in SECRET_FIELDS:
        return f"{name}: {'removed' if not new else 'replaced' if old else 'set'}"
    return f"{name}: {json.dumps(old, sort_keys=True)} -> {json.dumps(new, sort_keys=True)}"


class Command(BaseCommand):
    help = (
        "Register (add), list, check, export or import EHR sites, or print the site record's JSON Schema (schema)."
        " See README 'Register a real Epic site'."
    )

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
        add.add_argument("--scopes", default=default_scopes())
        add.add_argument(
            "--epic",
            action="store_true",
            help="Epic quirks: Epic-Client-ID on metadata, POST authorize (without it, an existing site's quirks are"
            " cleared: add sets the site to exactly what its flags say)",
        )
        site_settings_arguments(add)  # each stage's settings; left out: unchanged
        sub.add_parser("list", help="list sites")
        check = sub.add_parser("check", help="readiness check against the live EHR (exit 1 on any failure)")
        check.add_argument("site", nargs="?", help="the site's name (or its iss)")
        check.add_argument("--iss", help="the site's iss (instead of NAME)")
        check.add_argument("--patient", default="", help="a test patient's FHIR id to read with backend services")
        check.add_argument("--json", action="store_true", help="print the report as JSON")
        export = sub.add_parser("export", help="print a site's record file (JSON; secrets only by reference)")
        export.add_argument("name", help="the site's name (or its iss)")
        load = sub.add_parser("import", help="make a site match a record file, in one transaction")
        load.add_argument("file", help="the site record file, or - for standard input")
        load.add_argument("--dry-run", action="store_true", help="print the changes without saving them")
        load.add_argument("--user", help="the staff username the history and audit rows name")
        sub.add_parser("schema", help="print the site record's JSON Schema (draft 2020-12)")

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
        # Exactly what the flags say: without --epic, Epic quirks an earlier --epic set are cleared.
        fields["quirks"] = dict(EPIC_QUIRKS) if options["epic"] else {}
        self._add_save(iss, fields, site_settings_options(options))

    def _add_save(self, iss: str, fields: dict[str, Any], stage_settings: dict[str, Any]) -> None:
        """Create or update the site ``iss`` with ``fields`` and its stages' ``stage_settings``; print what changed."""
        before = EHRSite.objects.filter(iss=iss).first()
        stored = site_settings_values(before) if before is not None else {}
        site, created = EHRSite.objects.update_or_create(iss=iss, defaults=fields)
        site_settings_update(site, stage_settings)
        self.stdout.write(
            f"{'Registered' if created else 'Updated'} {site.name}: iss={site.iss} auth={site.auth_method}"
        )
        if before is not None:
            old = {name: getattr(before, name) for name in fields} | stored
            changes = [_change(name, old[name], value) for name, value in (fields | stage_settings).items()]
            for line in [c for c in changes if c] or ["No changes."]:
                self.stdout.write(f"  {line}")

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

    def _export(self, options: dict[str, Any]) -> None:
        try:
            site = site_by_name(name=options["name"])
        except HealthcommerceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(site_record_dumps(site_record_export(site=site)), ending="")

    def _schema(self, options: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(site_record_schema(), indent=2, ensure_ascii=False))

    def _import_user(self, username: str | None) -> Any:
        """Return the staff user named ``username`` (None when not given). Raises ``CommandError`` for no such."""
        if not username:
            return None
        user = get_user_model().objects.filter(username=username, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user named {username!r}.")
        return user

    def _import_read(self, path: str) -> Any:
        """Return the parsed JSON of file ``path`` (``-``: standard input). Raises ``CommandError`` when it cannot
        be read or is not JSON."""
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
            return json.loads(text)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc

    def _import_report(self, result: ImportResult, dry_run: bool) -> None:
        site = result.site
        verb = "Would create" if dry_run and result.created else "Created" if result.created else "Site"
        self.stdout.write(f"{verb} {site.name} ({site.iss})")
        for line in result.changes:
            self.stdout.write(f"  {line}")
        for line in result.warnings:
            self.stderr.write(f"warning: {line}")
        if not result.changes:
            self.stdout.write("  No changes.")
        if dry_run:
            self.stdout.write("Dry run: nothing was saved.")

    def _import(self, options: dict[str, Any]) -> None:
        user = self._import_user(options["user"])
        path = options["file"]
        record = self._import_read(path)
        source = "stdin" if path == "-" else Path(path).name
        try:
            result = site_record_import(record=record, source=source, user=user, dry_run=options["dry_run"])
        except HealthcommerceError as exc:
            raise CommandError(exc.message) from exc
        self._import_report(result, options["dry_run"])
