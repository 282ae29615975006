"""``manage.py ehr_keys list|new|activate|remove|rotate``: our signing keys and their rotation (ehr/keys.py,
docs/adr/0020-our-signing-keys.md).

    ehr_keys new --shared --alg RS384       # a "next" key: published at /.well-known/jwks.json, not signing yet
    ehr_keys activate KID                   # after >= 30 h: it signs, the old key is retired (still published)
    ehr_keys remove OLD_KID                 # the retired key is no longer published
    ehr_keys rotate --site "Mercy" --alg ES384   # = new, and say when it can be activated
"""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from healthcommerce.ehr.errors import SigningKeyRefused
from healthcommerce.ehr.keys import (
    ALGS,
    MIN_PUBLISHED_HOURS,
    activation_time,
    jwks_url,
    signing_key_activate,
    signing_key_create,
    signing_key_remove,
)
from healthcommerce.ehr.models import AppSigningKey, EHRSite

ACTOR = "command:ehr_keys"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def kid_argument(kid: str) -> str:
    """``kid`` as it must be typed after ``activate`` or ``remove``: a thumbprint is base64url and may start with
    ``-``, which the argument parser would take for an option, so such a kid follows ``--``."""
    return f"-- {kid}" if kid.startswith("-") else kid


class Command(BaseCommand):
    help = "List, create, activate, remove or rotate our signing keys (published at /.well-known/jwks.json)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list this environment's keys")
        for name, text in (("new", "create a next key (published, not signing)"), ("rotate", "new + when to activate")):
            new = sub.add_parser(name, help=text)
            owner = new.add_mutually_exclusive_group(required=True)
            owner.add_argument("--site", help="the EHR site's name (or iss)")
            owner.add_argument("--shared", action="store_true", help="a key for every site without its own")
            new.add_argument("--alg", choices=ALGS, default="RS384")
        activate = sub.add_parser("activate", help="a next key starts signing; the active one is retired")
        activate.add_argument("kid")
        activate.add_argument("--min-published-hours", type=float, default=MIN_PUBLISHED_HOURS)
        activate.add_argument("--force", action="store_true", help="activate although published too recently")
        remove = sub.add_parser("remove", help="stop publishing a retired (or unused next) key")
        remove.add_argument("kid")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except SigningKeyRefused as exc:
            raise CommandError(exc.message) from exc

    def _list(self, options: dict[str, Any]) -> None:
        rows = AppSigningKey.objects.filter(environment=settings.APP_ENVIRONMENT).select_related("site")
        self.stdout.write(f"Environment {settings.APP_ENVIRONMENT}; published at {jwks_url()}")
        for row in rows.order_by("created_at"):
            owner = row.site.name if row.site else "(shared)"
            self.stdout.write(
                f"{row.kid}\t{row.alg}\t{row.status}\t{owner}\tcreated {_when(row.created_at)}\t"
                f"activated {_when(row.activated_at)}\tretired {_when(row.retired_at)}\tremoved {_when(row.removed_at)}"
            )

    def _site(self, options: dict[str, Any]) -> EHRSite | None:
        if options["shared"]:
            return None
        sites = list(EHRSite.objects.filter(Q(name=options["site"]) | Q(iss=options["site"]))[:2])
        if len(sites) != 1:
            raise CommandError(f"No single EHR site named {options['site']!r} (found {len(sites)}).")
        return sites[0]

    def _new(self, options: dict[str, Any]) -> AppSigningKey:
        site = self._site(options)
        row = signing_key_create(site=site, alg=options["alg"], actor=ACTOR)
        owner = f"site {site.name}" if site else "every site without its own key"
        self.stdout.write(
            f"Created {row.alg} key {row.kid} for {owner} ({row.environment}): next, published, not signing yet."
        )
        return row

    def _rotate(self, options: dict[str, Any]) -> None:
        row = self._new(options)
        self.stdout.write(
            f"Activate it after {_when(activation_time(row))} (published {MIN_PUBLISHED_HOURS:g} h; Epic caches a "
            f"JWKS up to 29 h):  manage.py ehr_keys activate {kid_argument(row.kid)}"
        )

    def _activate(self, options: dict[str, Any]) -> None:
        row, old = signing_key_activate(
            kid=options["kid"], actor=ACTOR, min_published_hours=options["min_published_hours"], force=options["force"]
        )
        self.stdout.write(f"Activated {row.kid}: it signs from now on.")
        if old is not None:
            self.stdout.write(
                f"Retired {old.kid}: no longer signing, still published. Remove it once no EHR can hold an assertion "
                f"signed with it:  manage.py ehr_keys remove {kid_argument(old.kid)}"
            )

    def _remove(self, options: dict[str, Any]) -> None:
        row = signing_key_remove(kid=options["kid"], actor=ACTOR)
        self.stdout.write(f"Removed {row.kid}: no longer published; assertions signed with it are refused.")
