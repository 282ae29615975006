"""``manage.py demo_setup``: register the app with the sandbox EHR (as Epic recommends: private_key_jwt, for the
launch and for backend services, with our shared active RS384 key, its JWKS registered inline so the demo needs no
network) and the sandbox as an EHR site with payer records matching its fixture data (``SANDBOX_PAYERS``), and
create the staff users ``admin`` (sees PHI) and ``support`` (PHI
masked), each with a new password and TOTP device (the admin's second factor, core/adminsite.py). Idempotent; used by
``make demo``."""

import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from healthcommerce.core.http import origin
from healthcommerce.ehr.keys import published_jwks, signing_key_activate, signing_key_create, signing_key_for
from healthcommerce.ehr.models import EHRSite, Vendor
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.ehr.services import redirect_uri
from healthcommerce.ehr.sitefeatures import site_settings_secret, site_settings_update

CLIENT_ID = "healthcommerce-demo"
# What the readiness check reads (ehr_site check "Sandbox EHR" --patient pat015), the ship-to re-read, write-back and
# notify-then-pull (the requester too: intake.notify.NOTIFY_SCOPES).
BACKEND_SCOPES = (
    "system/Patient.rs system/Coverage.rs system/DeviceRequest.rs system/ServiceRequest.rs "
    "system/Communication.c system/DocumentReference.c system/Practitioner.rs system/PractitionerRole.rs"
)
# The sandbox's default client scope (sandbox.services.DEFAULT_CLIENT_SCOPE: the ehr app does not import the
# sandbox) plus the backend-services scopes.
LAUNCH_SCOPE = "launch openid fhirUser online_access patient/*.read patient/*.rs user/*.read user/*.rs"
CLIENT_SCOPE = f"{LAUNCH_SCOPE} {BACKEND_SCOPES}"
ACTOR = "command:demo_setup"
# The sandbox stand-in clearinghouse's API key (sandbox.clearinghouse.SANDBOX_CLEARINGHOUSE_KEY: the ehr app does not
# import the sandbox).
SANDBOX_CLEARINGHOUSE_KEY = "sandbox-clearinghouse"
# The sandbox site's payer records (catalog.Payer, made through ``manage.py payer add``: the ehr app does not import
# the catalog), matching the sandbox's fixture data: the Da Vinci coverages name payor Organization/org1234 (CMS,
# class "Medicare Part A/B/D"), the Synthea claims' coverage display is "medicaid" or "private".
SANDBOX_PAYERS: tuple[tuple[str, str, str, list[str], list[str]], ...] = (
    ("Medicare", "medicare", "CMS", ["Organization/org1234"], ["Centers for Medicare and Medicaid Services"]),
    ("Medicaid", "medicaid", "SKCO0", [], ["medicaid"]),
    ("Private insurance", "commercial", "62308", [], ["private"]),
)


def sandbox_payers_add(site_name: str, stdout: Any = None) -> None:
    """Give the site named ``site_name`` the sandbox's payer records (``SANDBOX_PAYERS``); idempotent."""
    for name, plan_type, payer_id, identifiers, aliases in SANDBOX_PAYERS:
        args = ["--site", site_name, "--name", name, "--plan-type", plan_type, "--payer-id", payer_id]
        args += [part for identifier in identifiers for part in ("--identifier", identifier)]
        args += [part for alias in aliases for part in ("--alias", alias)]
        call_command("payer", "add", *args, stdout=stdout)


class Command(BaseCommand):
    help = "Set up the demo: sandbox client + EHR site (private_key_jwt, RS384) and an admin user."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.SANDBOX_ENABLED:
            raise CommandError("Set SANDBOX_ENABLED=true: the demo needs the sandbox EHR.")
        if signing_key_for(None, "RS384") is None:
            # The demo has no EHR caching our JWKS, so the new key may sign at once.
            created = signing_key_create(site=None, alg="RS384", actor=ACTOR)
            signing_key_activate(kid=created.kid, actor=ACTOR, force=True)
            self.stdout.write(f"Shared RS384 signing key {created.kid} created and active.")
        call_command(
            "sandbox_client",
            "add",
            "--client-id",
            CLIENT_ID,
            "--redirect-uri",
            redirect_uri(),
            "--jwks-json",
            json.dumps(published_jwks()),
            "--scope",
            CLIENT_SCOPE,
            "--name",
            "healthcommerce demo",
        )
        iss = settings.APP_BASE_URL.rstrip("/") + "/sandbox/fhir"
        site, _ = EHRSite.objects.update_or_create(
            iss=iss,
            defaults={
                "name": "Sandbox EHR",
                "client_id": CLIENT_ID,
                "auth_method": EHRSite.AuthMethod.PRIVATE_KEY_JWT,
                # No key of the site's own: the shared active key signs (ehr/oauth.py client_key), as the
                # readiness check reports.
                "private_key_pem": "",
                "key_id": "",
                "signing_alg": "RS384",
                "vendor": Vendor.SANDBOX,
                "backend_services": True,
                "backend_scopes": BACKEND_SCOPES,
                # online_access: the sandbox then grants a refresh token (SMART 2.2 "Refresh access token").
                "scopes": f"{default_scopes()} online_access",
                # The sandbox EHR's framed mode (/sandbox/?framed=1) shows the app in an iframe (ADR 0005).
                "frame_origins": [origin(settings.APP_BASE_URL)],
            },
        )
        # Each stage's own settings (ehr.sitefeatures).
        site_settings_update(
            site,
            {
                # The sandbox EHR calls our CDS Hooks services (its "Draft order (CDS Hooks)" page), signing with its
                # own key published at its JWKS URL (docs/adr/0021).
                "cds_hooks_enabled": True,
                "cds_issuers": [iss],
                "cds_jku_allowlist": [settings.APP_BASE_URL.rstrip("/") + "/sandbox/oauth/jwks"],
                # After sign-off a Communication records it in the sandbox EHR; the hand-off re-reads the address.
                "writeback": "communication",
                "shipto_reread": True,
                # The demo texts links too; the console SMS backend prints them with the emails (docs/adr/0010).
                "sms_enabled": True,
                # Printed in the patient's emails and pages (a reserved 555-01xx number).
                "patient_support_phone": "(207) 555-0100",
                # The sandbox EHR's "Send as HL7" sends as Epic's outbound interface would (MSH-3/4 EPIC/SANDBOXHOSP)
                # to the demo's hl7 process on loopback (plain TCP in embedded mode; docs/interface-hl7.md).
                "hl7_enabled": True,
                "hl7_sending_application": "EPIC",
                "hl7_sending_facility": "SANDBOXHOSP",
                # Coverage is checked with the payer after sign-off and at checkout: X12 270/271 over HTTPS to the
                # sandbox's stand-in clearinghouse (its Da Vinci members answer active, deductible and coinsurance for
                # pat013, a copay for pat014, not active for pat015; docs/interface-eligibility.md).
                "eligibility_enabled": True,
                "clearinghouse": "x12_https",
                "clearinghouse_url": settings.APP_BASE_URL.rstrip("/") + "/sandbox/clearinghouse/x12",
                "clearinghouse_api_key": SANDBOX_CLEARINGHOUSE_KEY,
                "submitter_id": "HEALTHCOMMERCE",
                "receiver_id": "SANDBOXCH",
                "provider_npi": "1234567893",
                "provider_name": "HEALTHCOMMERCE DEMO SUPPLY",
            },
        )
        self._notifications(site)
        sandbox_payers_add(site.name, stdout=self.stdout)
        self.stdout.write(
            f"EHR site registered: {iss} (client {CLIENT_ID}, private_key_jwt RS384, backend services {BACKEND_SCOPES})"
        )
        admin_url = settings.APP_BASE_URL.rstrip("/") + "/admin/"
        for username, superuser, role in (("admin", True, "admin"), ("support", False, "support")):
            password = secrets.token_urlsafe(12)
            user, _ = get_user_model().objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": superuser}
            )
            user.set_password(password)
            user.save(update_fields=["password"])
            user.groups.add(Group.objects.get(name=role))
            self.stdout.write(f"Admin: {admin_url}  user {username}  password {password}  (role {role})")
            call_command("staff_totp", "add", username, "--name", "demo", "--replace", stdout=self.stdout)
        self.stdout.write(
            "The admin asks for a TOTP code too: scan an otpauth URI above into an authenticator app, or print the "
            "current code with  SANDBOX_ENABLED=true .venv/bin/python manage.py staff_totp code admin"
        )

    def _notifications(self, site: EHRSite) -> None:
        """Turn on FHIR notifications for the sandbox site with a bearer token (kept when it has one) and subscribe
        the app's endpoint in the sandbox EHR (its "Send notification" button posts there with that token)."""
        token = site_settings_secret(site, "fhir_notify_token") or secrets.token_urlsafe(32)
        site_settings_update(site, {"fhir_notify_enabled": True, "fhir_notify_token": token})
        endpoint = settings.APP_BASE_URL.rstrip("/") + reverse("intake:fhir-notify", args=[site.pk])
        call_command("sandbox_subscription", "add", "--endpoint", endpoint, "--token", token, stdout=self.stdout)
