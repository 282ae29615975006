"""``manage.py sandbox_client add|list|remove``: register SMART apps with the sandbox EHR.

A backend-services client (SMART 2.2 "Backend Services") is a ``private_key_jwt`` client (``--jwks-json``,
``--public-key-pem`` or ``--jwks-url``) whose ``--scope`` has ``system/`` scopes; with only ``system/`` scopes it
needs no ``--redirect-uri``::

    manage.py sandbox_client add --client-id worker --jwks-url https://app.example/.well-known/jwks.json \
        --scope "system/Patient.rs system/Communication.c"
"""

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from healthcommerce.sandbox.errors import ClientRegistrationError
from healthcommerce.sandbox.keys import ClientKeyError, jwks_from_input
from healthcommerce.sandbox.models import AuthMethod, SandboxClient
from healthcommerce.sandbox.services import DEFAULT_CLIENT_SCOPE, sandbox_client_register


class Command(BaseCommand):
    help = "Add (or replace), list or remove sandbox OAuth clients."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="register or replace a client")
        add.add_argument("--client-id", required=True)
        add.add_argument(
            "--redirect-uri", action="append", default=[], help="repeatable; not needed with only system/ scopes"
        )
        keys = add.add_mutually_exclusive_group()
        keys.add_argument("--client-secret", help="client_secret_basic")
        keys.add_argument("--jwks-json", help="private_key_jwt with this public JWKS (JSON text)")
        keys.add_argument("--public-key-pem", type=Path, help="private_key_jwt with this PEM public key file")
        keys.add_argument("--jwks-url", help="private_key_jwt with keys fetched from this URL")
        add.add_argument(
            "--scope",
            default=DEFAULT_CLIENT_SCOPE,
            help="scopes the client may be granted; system/ scopes allow backend services (private_key_jwt only)",
        )
        add.add_argument("--name", default="")
        actions.add_parser("list", help="list clients")
        remove = actions.add_parser("remove", help="remove a client")
        remove.add_argument("--client-id", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for client in SandboxClient.objects.order_by("client_id"):
                uris = " ".join(client.redirect_uris)
                backend = " backend" if client.backend_services else ""
                self.stdout.write(f"{client.client_id}\t{client.token_endpoint_auth_method}{backend}\t{uris}")
        elif action == "remove":
            deleted, _ = SandboxClient.objects.filter(client_id=options["client_id"]).delete()
            self.stdout.write(f"Removed {options['client_id']}." if deleted else "No such client.")
        else:
            self._add(options)

    def _auth(self, options: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        try:
            if options["jwks_json"]:
                return AuthMethod.PRIVATE_KEY_JWT, jwks_from_input(jwks_json=options["jwks_json"])
            if options["public_key_pem"]:
                return AuthMethod.PRIVATE_KEY_JWT, jwks_from_input(
                    public_key_pem=options["public_key_pem"].read_bytes()
                )
        except (ClientKeyError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        if options["jwks_url"]:
            return AuthMethod.PRIVATE_KEY_JWT, None
        if options["client_secret"]:
            return AuthMethod.CLIENT_SECRET_BASIC, None
        return AuthMethod.NONE, None

    def _add(self, options: dict[str, Any]) -> None:
        method, jwks = self._auth(options)
        try:
            client = sandbox_client_register(
                client_id=options["client_id"],
                redirect_uris=options["redirect_uri"],
                auth_method=method,
                client_secret=options["client_secret"],
                jwks=jwks,
                jwks_url=options["jwks_url"] or "",
                scope=options["scope"],
                name=options["name"],
            )
        except ClientRegistrationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Registered {client.client_id} ({client.token_endpoint_auth_method}).")
        if client.backend_services:
            self.stdout.write("It may use backend services (client_credentials) for its system/ scopes.")
