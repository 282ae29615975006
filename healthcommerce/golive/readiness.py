"""The go-live readiness check: does this EHR site really give the app what an order needs? (issue 10).

``site_readiness(site, patient_id=...)`` runs, against the live EHR, what a go-live needs and returns a report of
checks, each ``pass``, ``warn`` or ``fail`` with the fix. ``manage.py ehr_site check NAME [--patient ID]`` prints
it and exits non-zero on any failure; the EHR site's admin page has a button that runs it.

Sources: SMART App Launch 2.2 "Conformance" (discovery, capabilities, PKCE ``S256``), "Client Authentication:
Asymmetric" (our JWKS), "Backend Services" (client credentials, ``system/`` scopes), "Scopes for requesting
clinical data" (v1/v2 scopes); FHIR R4 Patient, Coverage, DeviceRequest, ServiceRequest; Epic on FHIR (Epic
embeds the app in a frame; writes are Communication and DocumentReference creates); BCP 195 / RFC 9325 (TLS 1.2
or newer). The report never shows PHI: it says whether an element is present, never its value.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.models import CodeMapping
from healthcommerce.core.errors import HealthcommerceError, OutboundRefused
from healthcommerce.core.http import check_url, url_allowed
from healthcommerce.ehr.backend import backend_client, backend_client_id, backend_token
from healthcommerce.ehr.discovery import discover
from healthcommerce.ehr.errors import BackendTokenRefused
from healthcommerce.ehr.keys import published_jwks
from healthcommerce.ehr.models import AppSigningKey, EHRSite
from healthcommerce.ehr.oauth import client_key
from healthcommerce.ehr.services import scopes_missing
from healthcommerce.ehr.sitefeatures import (
    FAIL,
    FIX_READ,
    PASS,
    WARN,
    Check,
    PatientReads,
    site_backend_needs,
    site_feature_checks,
    site_patient_checks,
)

__all__ = ["FAIL", "PASS", "WARN", "Check", "ReadinessReport", "report_dict", "site_readiness"]
TLS_EXPIRY_WARN_DAYS = 21
# What the clinician launch needs (the order form's reads and the clinician's identity).
LAUNCH_SCOPES = "launch openid fhirUser patient/Patient.r patient/DeviceRequest.rs patient/ServiceRequest.rs"
# What the readiness reads of the test patient need from backend services.
CHECK_SCOPES = "system/Patient.r system/Coverage.s system/DeviceRequest.s system/ServiceRequest.s"
CAPABILITIES = {
    "launch-ehr": "the EHR launch",
    "context-ehr-patient": "the patient in context at launch",
}


@dataclass
class ReadinessReport:
    """The checks run against one site, in order, with when they ran and the nominated test patient id."""

    site_name: str
    iss: str
    checked_at: datetime
    patient_id: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        """Return the failed checks."""
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list[Check]:
        """Return the checks that warn."""
        return [c for c in self.checks if c.status == WARN]

    @property
    def passed(self) -> bool:
        """Return True when no check failed (warnings allowed)."""
        return not self.failures

    def as_text(self) -> str:
        """Return the report as plain text: one line per check (``PASS  name  detail``), the fix indented under
        it, and a summary line."""
        lines = [
            f"Readiness of {self.site_name} ({self.iss}) at {self.checked_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f", test patient {self.patient_id}" if self.patient_id else ", no test patient"),
        ]
        for check in self.checks:
            lines.append(f"{check.status.upper():<5} {check.name:<22} {check.detail}")
            if check.fix:
                lines.append(f"{'':<6}{'fix:':<22} {check.fix}")
        counts = {s: sum(c.status == s for c in self.checks) for s in (PASS, WARN, FAIL)}
        verdict = "READY" if self.passed else "NOT READY"
        lines.append(f"{verdict}: {counts[FAIL]} failed, {counts[WARN]} warnings, {counts[PASS]} passed")
        return "\n".join(lines) + "\n"


def _https(name: str, url: str, what: str) -> Check | None:
    """Return a failing check when the outbound client refuses ``url`` (``core.http.check_url``: not https, or in
    production an address on this machine or a private network); None when fine."""
    try:
        check_url(url)
    except OutboundRefused as exc:
        if urlsplit(url).scheme != "https":
            return Check(
                name, FAIL, f"{what} is not https: {url}", "Use the https URL (an EHR is only reached over TLS)."
            )
        return Check(
            name,
            FAIL,
            f"{what} is refused: {exc.message}",
            "Use the EHR's public https URL; for an EHR on the hospital's own network, add its host to"
            " OUTBOUND_PRIVATE_HOSTS (docs/deploy.md).",
        )
    return None


def _configuration(site: EHRSite) -> Iterator[Check]:
    if not site.is_active:
        yield Check("site", FAIL, "The site is inactive: launches from it are refused.", "Tick 'is active'.")
    if not site.client_id:
        yield Check("client_id", FAIL, "No client id.", "Enter the client id the EHR issued for this app.")
    problem = _https("iss", site.iss, "The FHIR base (iss)")
    if problem:
        yield problem
    method = site.auth_method
    if method == EHRSite.AuthMethod.PUBLIC:
        yield Check(
            "client_auth",
            WARN,
            "Public client: no client authentication at the token endpoint.",
            "Register a confidential asymmetric client (private_key_jwt), which Epic recommends.",
        )
    elif method == EHRSite.AuthMethod.CLIENT_SECRET_BASIC and not site.client_secret:
        yield Check("client_auth", FAIL, "client_secret_basic without a secret.", "Set the client secret.")
    elif method == EHRSite.AuthMethod.CLIENT_SECRET_BASIC:
        yield Check(
            "client_auth",
            WARN,
            "Confidential symmetric client (a shared secret).",
            "Prefer private_key_jwt: a key pair, published in our JWKS, rotates without sharing a secret.",
        )
    else:
        yield from _keys(site)


def _keys(site: EHRSite) -> Iterator[Check]:
    """Name the key that signs the site's assertions (``ehr.oauth.client_key``: kid, alg, the site's own or the
    shared one) and warn about a stored key that does not sign."""
    try:
        key = client_key(site)
    except ValueError:
        yield Check(
            "signing_key",
            FAIL,
            f"The private key stored on the site (kid {site.key_id or 'none'}) cannot be read.",
            "Store an unencrypted PEM private key (`ehr_site add --private-key FILE`, or the site record's"
            " private_key_pem variable), or make a key with `manage.py ehr_keys new`.",
        )
        return
    if key is None:
        yield Check(
            "signing_key",
            FAIL,
            f"private_key_jwt without a {site.signing_alg} signing key for this site in {settings.APP_ENVIRONMENT}.",
            f"Run `manage.py ehr_keys new --site '{site.name}' --alg {site.signing_alg}`, register our JWKS URL with"
            " the EHR, then `ehr_keys activate KID` once the EHR has fetched it.",
        )
        return
    waiting = AppSigningKey.objects.filter(
        site=site, environment=settings.APP_ENVIRONMENT, status=AppSigningKey.Status.NEXT
    ).order_by("created_at")
    for row in waiting:
        yield Check(
            "next_key",
            WARN,
            f"The site's own {row.alg} key {row.kid} is published but does not sign yet: {key.describe()} signs.",
            f"Once the EHR has our JWKS (Epic caches it up to 29 hours), run `manage.py ehr_keys activate {row.kid}`"
            " (add --force for a first key no EHR has cached).",
        )
    if key.source != "site_pem" and site.private_key_pem:
        yield Check(
            "stored_key",
            WARN,
            f"The private key stored on the site (kid {site.key_id or 'none'}, {site.signing_alg}) is not used:"
            f" {key.describe()} signs.",
            "If the EHR registered the stored key, retire the site's own key (`ehr_keys`); otherwise remove the"
            " stored key so nobody expects it to sign.",
        )
    if key.source == "site_pem":
        yield Check(
            "signing_key",
            WARN,
            f"Signs with {key.describe()}, not one published in our JWKS.",
            "The EHR must hold its public key under that kid. To rotate without pasting keys, create one with"
            " `manage.py ehr_keys new` (published at /.well-known/jwks.json).",
        )
        return
    published = {k.get("kid") for k in published_jwks()["keys"]}
    if key.kid not in published:
        yield Check("signing_key", FAIL, f"Key {key.kid} signs but is not published.", "Run `ehr_keys list`.")
        return
    jwks_url = settings.APP_BASE_URL.rstrip("/") + "/.well-known/jwks.json"
    yield Check("signing_key", PASS, f"Signs with {key.describe()} at {jwks_url}.")
    if site.send_jku:
        problem = _https("jku", jwks_url, "Our JWKS URL (jku)")
        if problem:
            yield problem


def _tls(site: EHRSite) -> Check:
    parts = urlsplit(site.iss)
    host, port = parts.hostname or "", parts.port or 443
    if parts.scheme != "https":
        status = WARN if url_allowed(site.iss) else FAIL
        return Check("tls", status, "Plain HTTP (allowed only for a sandbox on this machine).", "Use https.")
    if not url_allowed(site.iss):
        return Check("tls", FAIL, "Not checked: the outbound client refuses the iss (see above).", "Fix the iss.")
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection((host, port), timeout=settings.HTTP_TIMEOUT[0]) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            version, cert = tls.version(), tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        return Check("tls", FAIL, f"Certificate refused: {exc.verify_message}.", "Fix the server's certificate.")
    except (OSError, ssl.SSLError) as exc:
        return Check(
            "tls", FAIL, f"No TLS 1.2+ connection to {host}:{port} ({type(exc).__name__}).", FIX_READ["unreachable"]
        )
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert.get("notAfter"))), tz=UTC)
    days = (expires - timezone.now()).days
    detail = f"{version} to {host}:{port}; certificate valid until {expires:%Y-%m-%d} ({days} days)."
    if days < TLS_EXPIRY_WARN_DAYS:
        return Check("tls", WARN, detail, "Ask the EHR team when the certificate is renewed.")
    return Check("tls", PASS, detail)


def _discovery(site: EHRSite) -> Iterator[Check]:
    try:
        config = discover(site, force=True)
    except HealthcommerceError as exc:
        yield Check(
            "discovery",
            FAIL,
            f"SMART discovery failed: {exc.message}",
            "Check the iss: [iss]/.well-known/smart-configuration (or [iss]/metadata) must answer.",
        )
        return
    problems = [
        p
        for p in (
            _https("discovery", config["authorization_endpoint"], "The authorization endpoint"),
            _https("discovery", config["token_endpoint"], "The token endpoint"),
        )
        if p
    ]
    yield from problems
    if not problems:
        yield Check(
            "discovery", PASS, f"authorize {config['authorization_endpoint']}, token {config['token_endpoint']}."
        )
    capabilities = set(config.get("capabilities") or [])
    if capabilities:
        missing = [f"{c} ({why})" for c, why in CAPABILITIES.items() if c not in capabilities]
        if (
            site.auth_method == EHRSite.AuthMethod.PRIVATE_KEY_JWT
            and "client-confidential-asymmetric" not in capabilities
        ):
            missing.append("client-confidential-asymmetric (our private_key_jwt)")
        if missing:
            yield Check(
                "capabilities", WARN, "Not advertised: " + "; ".join(missing) + ".", "Confirm them with the EHR team."
            )
        else:
            yield Check("capabilities", PASS, f"{len(capabilities)} advertised, including what the launch needs.")
    methods = config.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        yield Check("pkce", FAIL, "PKCE S256 not supported.", "The app always sends S256: ask the EHR team.")


def _launch_scopes(site: EHRSite) -> Iterator[Check]:
    not_asked = scopes_missing(requested=LAUNCH_SCOPES, granted=site.scopes)
    if not_asked:
        yield Check(
            "launch_scopes",
            FAIL,
            "The site's scopes do not ask for: " + " ".join(not_asked) + ".",
            "Add them to the site's scopes (and to the EHR's app registration).",
        )
    if not site.scopes_granted:
        yield Check(
            "granted_scopes",
            WARN,
            "No launch yet: what the EHR grants at launch is not known.",
            "Launch the app once from the EHR's test environment, then run the check again.",
        )
        return
    not_granted = scopes_missing(requested=site.scopes, granted=site.scopes_granted)
    if not_granted:
        yield Check(
            "granted_scopes",
            FAIL,
            "The last launch was not granted: " + " ".join(not_granted) + ".",
            "Ask the EHR team to add these scopes to the app's registration (or remove them from the site).",
        )
    else:
        yield Check("granted_scopes", PASS, "The last launch was granted every scope the site asks for.")


def _feature_scopes(site: EHRSite, patient_id: str) -> dict[str, str]:
    """Return ``{feature: scopes it needs}`` for the backend features this check and the site use."""
    needs = {"readiness reads": CHECK_SCOPES} if patient_id else {}
    return needs | site_backend_needs(site)


def _token_fix(site: EHRSite, exc: BackendTokenRefused) -> str:
    """Say what to do about the EHR's refusal of the backend token request, by its OAuth ``error``."""
    client = backend_client_id(site)
    if exc.oauth_error in ("invalid_client", "unauthorized_client"):
        try:
            key = client_key(site)
        except ValueError:
            key = None
        signing = key.describe() if key else "no readable key"
        return (
            f"The EHR does not accept client {client} signed with {signing}: check the backend client id and that"
            " the EHR registered that key's kid (our JWKS URL, or the public key of the site's stored key)."
        )
    if exc.oauth_error == "invalid_scope":
        return f"Ask the EHR team to register the site's backend scopes for client {client}, or ask for fewer."
    return f"Check client {client}'s backend-services registration with the EHR team (quote the EHR's error above)."


def _backend(site: EHRSite, patient_id: str) -> tuple[list[Check], str]:
    """Return the backend-services checks and the access token ("" when there is none)."""
    needs = _feature_scopes(site, patient_id)
    if not site.backend_services:
        if not needs:
            return [
                Check(
                    "backend_services",
                    WARN,
                    "Not enabled (no feature needs it).",
                    "To check a test patient, or for the ship-to re-read and write-back, register a backend-services"
                    " client with the EHR and enable it on the site.",
                )
            ], ""
        features = ", ".join(needs)
        return [
            Check(
                "backend_services",
                FAIL,
                f"Not enabled, but needed by: {features}.",
                "Register a backend-services client with the EHR (client credentials, our JWKS URL), then set it"
                " on the site (backend services, backend client id, backend scopes).",
            )
        ], ""
    try:
        token = backend_token(site)
    except BackendTokenRefused as exc:
        # exc.message carries the EHR's own error and error_description (sanitised by ehr.backend.ehr_said)
        return [Check("backend_token", FAIL, f"No backend-services token: {exc.message}", _token_fix(site, exc))], ""
    except HealthcommerceError as exc:
        return [
            Check(
                "backend_token",
                FAIL,
                f"No backend-services token: {exc.message} ({exc.code}).",
                "Check the backend client id, that the EHR has our JWKS URL, and the system/ scopes registered.",
            )
        ], ""
    checks = [Check("backend_token", PASS, f"Token granted with: {token.scope or '(no scope returned)'}.")]
    granted = token.scope or site.backend_scopes
    for feature, scopes in needs.items():
        missing = scopes_missing(requested=scopes, granted=granted)
        if missing:
            checks.append(
                Check(
                    "backend_scopes",
                    FAIL,
                    f"{feature} needs {' '.join(missing)}, not granted.",
                    f"Ask the EHR team to grant {' '.join(missing)} to the backend client, and add it to the site's"
                    " backend scopes.",
                )
            )
        else:
            checks.append(Check("backend_scopes", PASS, f"{feature}: granted."))
    return checks, token.access_token


def _features(site: EHRSite) -> Iterator[Check]:
    if site.vendor == "epic" and not site.frame_origins:
        yield Check(
            "framing",
            WARN,
            "Epic embeds the app in a frame, and no framing origin is set.",
            "Add the Epic web origin(s) to frame origins (or confirm the app opens in a separate window).",
        )
    if not CodeMapping.objects.filter(site=site).exists():
        yield Check(
            "code_mappings",
            WARN,
            "No site-local code mappings: only the shared catalog codes map to products.",
            "Add the health system's local codes (admin: Catalog > Code mappings, or the site record file).",
        )


def site_readiness(site: EHRSite, *, patient_id: str = "", actor: str = "system") -> ReadinessReport:
    """Run the readiness checks for ``site`` against its live EHR and return the report.

    ``patient_id`` names a test patient to read with backend services: each registered stage checks what it reads
    (``SiteFeature.patient_checks``; the orders stage: Patient, Coverage, DeviceRequest and ServiceRequest, each
    request's code mapping to a product or marked not orderable). Each stage's own checks follow the site's
    (``SiteFeature.checks``, e.g. CDS Hooks' allowlists and JWK Sets). Each read writes a ``readiness.read``
    audit row for ``actor``. Raises nothing for what the EHR answers: every problem is a failing check.
    """
    report = ReadinessReport(site_name=site.name, iss=site.iss, checked_at=timezone.now(), patient_id=patient_id)
    checks = report.checks
    checks.extend(_configuration(site))
    checks.append(_tls(site))
    checks.extend(_discovery(site))
    checks.extend(_launch_scopes(site))
    backend_checks, access_token = _backend(site, patient_id)
    checks.extend(backend_checks)
    if patient_id and access_token:

        def record(target: str, outcome: str) -> None:
            audit_record(
                actor=actor,
                action="readiness.read",
                target=target,
                where=site.iss,
                outcome=outcome,
                site=site.iss,
            )

        reader = backend_client(site)  # the workers' client and token: one retry after a 401, their errors
        checks.extend(site_patient_checks(site, PatientReads(reader=reader, patient_id=patient_id, record=record)))
    elif patient_id:
        checks.append(
            Check(
                "patient",
                FAIL,
                "The test patient was not read: no backend-services token.",
                "Fix the backend-services check above, then run this check again.",
            )
        )
    else:
        checks.append(
            Check(
                "patient",
                WARN,
                "No test patient nominated: the order's data was not checked.",
                "Run again with --patient ID (a test patient with a pending DME or kit order).",
            )
        )
    checks.extend(_features(site))
    checks.extend(site_feature_checks(site))
    return report


def report_dict(report: ReadinessReport) -> dict[str, Any]:
    """Return the report as JSON-ready data (``--json``): site, time, patient id, passed, and each check."""
    return {
        "site": report.site_name,
        "iss": report.iss,
        "checked_at": report.checked_at.isoformat(),
        "patient_id": report.patient_id,
        "passed": report.passed,
        "checks": [c.__dict__ for c in report.checks],
    }
