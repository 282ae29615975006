"""Storage of the sandbox EHR: FHIR resources, OAuth clients, launches, codes, tokens, its signing key and faults.

The sandbox plays a real EHR: the rest of the app reaches it only over HTTP (SMART App Launch 2.2).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from django.db import models
from django.utils import timezone

from healthcommerce.core.models import BaseModel
from healthcommerce.sandbox import scopes


def secret_hash(value: str) -> str:
    """Return the hex SHA-256 of ``value``; secrets and tokens are stored only as this hash."""
    return hashlib.sha256(value.encode()).hexdigest()


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _redirect_uri_matches(requested: str, registered: str) -> bool:
    """Compare exactly, except that an http loopback URI may use any port (RFC 8252 section 7.3)."""
    if requested == registered:
        return True
    asked, known = urlsplit(requested), urlsplit(registered)
    return (
        known.scheme == asked.scheme == "http"
        and known.hostname in _LOOPBACK
        and (asked.hostname, asked.path, asked.query) == (known.hostname, known.path, known.query)
    )


class FhirResource(BaseModel):
    """One FHIR R4 resource as loaded from the fixtures.

    ``patient_id`` is the Patient whose compartment holds the resource (null for Practitioner, Organization,
    Location and other shared resources); ``status`` is copied from ``data["status"]`` for search.
    """

    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(verbose_name="FHIR ID", max_length=64)
    # Null, not "", means "in no compartment" (the brief and FHIR semantics), and keeps the index selective.
    patient_id = models.CharField(verbose_name="patient ID", max_length=64, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=32, blank=True, default="")
    data = models.JSONField()

    class Meta:
        verbose_name = "FHIR resource"
        constraints = [models.UniqueConstraint(fields=["resource_type", "fhir_id"], name="sandbox_resource_type_id")]
        indexes = [models.Index(fields=["resource_type", "patient_id"], name="sandbox_resource_patient")]
        ordering = ["resource_type", "fhir_id"]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}"


class AuthMethod(models.TextChoices):
    """Token endpoint client authentication (SMART App Launch 2.2, client-* capabilities)."""

    NONE = "none", "public (none)"
    CLIENT_SECRET_BASIC = "client_secret_basic", "confidential symmetric (client_secret_basic)"
    PRIVATE_KEY_JWT = "private_key_jwt", "confidential asymmetric (private_key_jwt)"


class SandboxClient(BaseModel, ClientMixin):
    """A SMART app registered with the sandbox EHR.

    ``redirect_uris`` is a list of URLs; ``scope`` the space-separated scopes the app may be granted; ``jwks`` a
    JWK Set (dict) or ``jwks_url`` for ``private_key_jwt``; ``client_secret_hash`` for ``client_secret_basic``.
    """

    client_id = models.CharField(verbose_name="client ID", max_length=200, unique=True)
    name = models.CharField(max_length=200, blank=True)
    token_endpoint_auth_method = models.CharField(max_length=32, choices=AuthMethod.choices, default=AuthMethod.NONE)
    client_secret_hash = models.CharField(max_length=64, blank=True)
    redirect_uris = models.JSONField(verbose_name="redirect URIs", default=list)
    scope = models.TextField(blank=True)
    jwks = models.JSONField(verbose_name="JWKS", null=True, blank=True)
    jwks_url = models.URLField(verbose_name="JWKS URL", max_length=500, blank=True)

    def __str__(self) -> str:
        return self.client_id

    def get_client_id(self) -> str:
        """Return the client id (RFC 6749 section 2.2)."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Return the only registered redirect URI, or None when there are several (RFC 6749 section 3.1.2.3)."""
        uris: list[str] = self.redirect_uris or []
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Return the requested scopes this client may be granted, in request order (SMART 2.2 scopes)."""
        return scopes.grantable(scope or "", self.scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Return whether ``redirect_uri`` is registered; loopback ports are free (RFC 8252 section 7.3)."""
        return any(_redirect_uri_matches(redirect_uri, uri) for uri in self.redirect_uris or [])

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare ``client_secret`` with the stored hash in constant time."""
        return bool(self.client_secret_hash) and secrets.compare_digest(
            self.client_secret_hash, secret_hash(client_secret)
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Accept only the registered method at the token endpoint."""
        return method == self.token_endpoint_auth_method if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        """Only the authorization code flow exists in SMART App Launch 2.2."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """``authorization_code`` and ``refresh_token`` (SMART 2.2 "Refresh access token"); ``client_credentials``
        only for a ``private_key_jwt`` client (SMART 2.2 "Backend Services" requires asymmetric authentication)."""
        if grant_type == "client_credentials":
            return self.token_endpoint_auth_method == AuthMethod.PRIVATE_KEY_JWT
        return grant_type in ("authorization_code", "refresh_token")

    @property
    def backend_services(self) -> bool:
        """Return whether the client may use the client credentials grant: ``private_key_jwt`` with at least
        one registered ``system/`` scope."""
        return self.check_grant_type("client_credentials") and any(
            scopes.is_system_scope(item) for item in self.scope.split()
        )


class SandboxLaunch(BaseModel):
    """An EHR launch (SMART 2.2 "EHR Launch"): an opaque one-time ``value`` bound to the launch context.

    ``request_ref`` is the optional ``DeviceRequest/<id>`` or ``ServiceRequest/<id>`` returned as fhirContext.
    """

    value = models.CharField(max_length=64, unique=True)
    patient_id = models.CharField(verbose_name="patient ID", max_length=64)
    practitioner_id = models.CharField(verbose_name="practitioner ID", max_length=64)
    encounter_id = models.CharField(verbose_name="encounter ID", max_length=64, blank=True)
    request_ref = models.CharField(max_length=140, blank=True)
    app_context = models.TextField(blank=True, help_text="CDS Hooks SMART link appContext, returned with the token.")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "sandbox launches"

    def __str__(self) -> str:
        return f"launch {self.patient_id} by {self.practitioner_id}"

    @property
    def is_usable(self) -> bool:
        """Return whether the launch is unused and unexpired."""
        return self.used_at is None and self.expires_at > timezone.now()


class SandboxAuthorizationCode(BaseModel, AuthorizationCodeMixin):
    """An authorization code (RFC 6749 section 4.1.2) with its PKCE challenge and OIDC nonce."""

    code = models.CharField(max_length=120, unique=True)
    client = models.ForeignKey(SandboxClient, on_delete=models.CASCADE)
    launch = models.ForeignKey(SandboxLaunch, on_delete=models.CASCADE)
    redirect_uri = models.TextField(
        verbose_name="redirect URI",
    )
    scope = models.TextField(blank=True)
    nonce = models.CharField(max_length=300, blank=True)
    code_challenge = models.CharField(max_length=128)
    code_challenge_method = models.CharField(max_length=10, default="S256")
    auth_time = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"code for {self.client_id}"

    def get_redirect_uri(self) -> str:
        """Return the redirect URI the code was issued for."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """Return the granted scope string."""
        return self.scope

    def get_nonce(self) -> str | None:
        """Return the OIDC nonce sent to the authorize endpoint, if any."""
        return self.nonce or None

    def get_auth_time(self) -> int:
        """Return when the EHR user signed in, as a Unix time."""
        return int(self.auth_time.timestamp())


class SandboxToken(BaseModel, TokenMixin):
    """An issued access token (stored as a hash) with its scope and launch context, and the refresh token issued
    with it, if any (RFC 6749 section 6; SMART 2.2 "Refresh access token").

    ``refresh_token_hash`` is blank when no refresh token was issued. ``grant_id`` is shared by every token of one
    authorization (the code exchange and each refresh after it), so reuse of a rotated refresh token can revoke the
    whole chain (OAuth 2.0 Security BCP, refresh token rotation). ``refresh_expires_at`` is the lifetime of the
    whole grant: rotation does not extend it. ``refresh_revoked_at`` is set when the refresh token was used or
    revoked; an access token is revoked by moving ``expires_at`` to the revocation time.
    """

    access_token_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(SandboxClient, on_delete=models.CASCADE)
    # null for a backend-services (client credentials) token: no launch, system/ scopes.
    launch = models.ForeignKey(SandboxLaunch, null=True, blank=True, on_delete=models.CASCADE)
    scope = models.TextField(blank=True)
    expires_at = models.DateTimeField()
    grant_id = models.UUIDField(verbose_name="grant ID", default=uuid.uuid4, editable=False, db_index=True)
    refresh_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token for {self.client_id} until {self.expires_at:%Y-%m-%d %H:%M}"

    def check_client(self, client: SandboxClient) -> bool:
        """Return whether the token was issued to ``client`` (RFC 6749 section 6: refresh binds to the client)."""
        return bool(self.client_id == client.pk)

    def get_scope(self) -> str:
        """Return the granted scope string."""
        return self.scope

    def get_expires_in(self) -> int:
        """Return the access token's remaining lifetime in seconds (0 when expired)."""
        return max(0, int((self.expires_at - timezone.now()).total_seconds()))

    def is_expired(self) -> bool:
        """Return whether the access token has expired (or was revoked)."""
        return self.expires_at <= timezone.now()

    def is_revoked(self) -> bool:
        """Return whether the refresh token was used or revoked."""
        return self.refresh_revoked_at is not None

    @property
    def refresh_usable(self) -> bool:
        """Return whether a refresh token was issued and is unused, unrevoked and unexpired."""
        return (
            bool(self.refresh_token_hash)
            and self.refresh_revoked_at is None
            and self.refresh_expires_at is not None
            and self.refresh_expires_at > timezone.now()
        )


class SandboxSigningKey(BaseModel):
    """The sandbox's RSA key that signs id_tokens, stored as a private JWK (dict)."""

    kid = models.CharField(verbose_name="key ID (kid)", max_length=64, unique=True)
    private_jwk = models.JSONField(
        verbose_name="private JWK",
    )

    def __str__(self) -> str:
        return self.kid


class FaultKind(models.TextChoices):
    """How the FHIR API misbehaves when a fault is active."""

    UNAUTHORIZED = "401", "401 Unauthorized"
    FORBIDDEN = "403", "403 Forbidden"
    NOT_FOUND = "404", "404 Not Found"
    SERVER_ERROR = "500", "500 Internal Server Error"
    UNAVAILABLE = "503", "503 Service Unavailable"
    TIMEOUT = "timeout", "slow answer (SANDBOX_TIMEOUT_SLEEP seconds)"
    MALFORMED = "malformed", "200 with fields of the wrong type"
    TRUNCATED = "truncated", "200 with invalid (truncated) JSON"


class SandboxFault(BaseModel):
    """An injected failure of the FHIR API for ``resource_type`` (or ``*`` for every type).

    ``remaining`` counts the requests still to fail; null means until cleared.
    """

    resource_type = models.CharField(max_length=64, default="*")
    kind = models.CharField(max_length=16, choices=FaultKind.choices)
    active = models.BooleanField(default=True)
    remaining = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.resource_type}"
