"""The sandbox's SMART App Launch 2.2 authorization server, built on authlib's server components.

- ``SandboxCodeGrant``: authorization code grant (RFC 6749 section 4.1) with the SMART EHR launch checks
  (SMART 2.2 "Obtain authorization code": ``aud`` = FHIR base, one-time ``launch``, ``state``) and the launch
  context in the token response ("Response to the access token request").
- ``SandboxCodeChallenge``: PKCE with S256 only, required for every client (SMART 2.2 "Considerations for PKCE").
- ``SandboxClientAssertion``: ``private_key_jwt`` (SMART 2.2 "Client Authentication: Asymmetric"; RFC 7523).
- ``SandboxOpenIDCode``: RS256 ``id_token`` with ``fhirUser`` (SMART 2.2 "Scopes for requesting identity data").
- ``SandboxClientCredentialsGrant`` (``backendgrant``): SMART 2.2 "Backend Services", ``system/`` scopes only,
  ``private_key_jwt`` clients only, tokens of ``SANDBOX_BACKEND_TOKEN_TTL`` seconds (default 300), no refresh token.
- ``SandboxRefreshGrant``: refresh token grant (RFC 6749 section 6, SMART 2.2 "Refresh access token") with
  rotation and reuse detection (OAuth 2.0 Security BCP, RFC 9700 section 4.14.2). A refresh token is issued only
  when the granted scope has ``offline_access`` or ``online_access`` (SMART 2.2 "Scopes for requesting a refresh
  token").

Lifetimes, in seconds, come from the settings or the environment so tests can shorten them:
``SANDBOX_TOKEN_TTL`` (access tokens, default 3600) and ``SANDBOX_REFRESH_TOKEN_TTL`` (a grant's refresh tokens,
default 86400; rotation does not extend it).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.integrations.django_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidGrantError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from healthcommerce.sandbox import keys
from healthcommerce.sandbox.backendgrant import BACKEND_TOKEN_TTL, SandboxClientCredentialsGrant
from healthcommerce.sandbox.discovery import CLIENT_ASSERTION_ALGS, SandboxUrls
from healthcommerce.sandbox.models import (
    SandboxAuthorizationCode,
    SandboxClient,
    SandboxLaunch,
    SandboxToken,
    secret_hash,
)
from healthcommerce.sandbox.scopes import has_scope
from healthcommerce.sandbox.services import sandbox_launch_consume

TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 86400
REFRESH_SCOPES = ("offline_access", "online_access")
CODE_TTL = 600
ASSERTION_MAX_LIFETIME = 300
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _seconds(name: str, default: int) -> int:
    """Return the positive whole seconds of setting ``name``, else of environment variable ``name``, else
    ``default``."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    try:
        seconds = int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def token_ttl() -> int:
    """Return the access token lifetime in seconds (``SANDBOX_TOKEN_TTL``, default 3600)."""
    return _seconds("SANDBOX_TOKEN_TTL", TOKEN_TTL)


def refresh_token_ttl() -> int:
    """Return the lifetime in seconds of a grant's refresh tokens (``SANDBOX_REFRESH_TOKEN_TTL``, default 86400)."""
    return _seconds("SANDBOX_REFRESH_TOKEN_TTL", REFRESH_TOKEN_TTL)


def sandbox_grant_revoke(*, grant_id: uuid.UUID) -> int:
    """Revoke every refresh and access token of one authorization (reuse detection); return the tokens touched.

    Called outside the token request's transaction (two conditional UPDATEs in autocommit), so the revocation
    holds although the request then fails. Lives here, not in ``services``, because only the token endpoint uses it.
    """
    now = timezone.now()
    refreshed = SandboxToken.objects.filter(grant_id=grant_id, refresh_revoked_at__isnull=True).update(
        refresh_revoked_at=now
    )
    expired = SandboxToken.objects.filter(grant_id=grant_id, expires_at__gt=now).update(expires_at=now)
    return refreshed + expired


def _description(text: str) -> str:
    """Return ``text`` restricted to the characters RFC 6749 section 5.2 allows in ``error_description``."""
    return _UNSAFE_DESCRIPTION.sub("", text)[:200]


@dataclass(frozen=True)
class EhrUser:
    """The signed-in EHR user: the practitioner bound to the launch."""

    launch: SandboxLaunch

    @property
    def practitioner_id(self) -> str:
        """Return the Practitioner id."""
        return self.launch.practitioner_id


class SandboxCodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) where ``code_challenge`` and ``code_challenge_method=S256`` are mandatory; ``plain`` is
    refused (SMART 2.2 "Considerations for PKCE Support")."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        """Raise ``InvalidRequestError`` unless the request carries an S256 code challenge."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class SandboxClientAssertion(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication: RS384, ES384 or RS256; ``aud`` = token URL; ``exp`` at most five
    minutes ahead; ``jti`` single use; ``jku`` only when it equals the registered JWKS URL.

    Built per request (it remembers the assertion's header between extraction and key resolution).
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, token_url: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._token_url = token_url
        self._header: dict[str, Any] = {}

    def get_audiences(self) -> list[str]:
        """Return the token endpoint URL, the only accepted ``aud``."""
        return [self._token_url]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(header, claims)`` unverified and remember the header; refuse other algorithms."""
        header, claims = super().extract_assertion(assertion)
        if header.get("alg") not in CLIENT_ASSERTION_ALGS:
            raise InvalidClientError(description="Unsupported client assertion algorithm.")
        self._header = header
        return header, claims

    def resolve_client_public_key(self, client: SandboxClient) -> KeySet:
        """Return the client's registered (or ``jku``) public keys; ``InvalidClientError`` when unavailable."""
        try:
            return keys.client_key_set(client, self._header.get("jku"))
        except keys.ClientKeyError as exc:
            raise InvalidClientError(description=_description(exc.message)) from exc

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the signature and claims; raise ``InvalidClientError`` on any failure."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=CLIENT_ASSERTION_ALGS)
        except JoseError as exc:
            raise InvalidClientError(description=_description(exc.description or "Invalid assertion.")) from exc
        self.verify_claims(token.claims)
        exp = token.claims.get("exp")
        if not isinstance(exp, int | float) or exp > time.time() + ASSERTION_MAX_LIFETIME + self.leeway:
            raise InvalidClientError(description="The assertion 'exp' is more than five minutes ahead.")
        return token.claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Return False when this client used ``jti`` before (within ten minutes)."""
        key = f"sandbox:jti:{secret_hash(str(claims.get('iss')) + ':' + str(jti))}"
        return bool(cache.add(key, 1, timeout=ASSERTION_MAX_LIFETIME * 2))


# The key signing the id_token being encoded on this thread (``SandboxOpenIDCode.encode_id_token``): the extension
# object is shared by every request, the thread is this request's own (gunicorn gthread, the dev server).
_this_token = threading.local()


class SandboxOpenIDCode(OpenIDCode):
    """OpenID Connect for the code flow: RS256 ``id_token`` signed with the sandbox key, ``iss`` = FHIR base,
    ``aud`` = client id, ``sub`` = practitioner id, ``fhirUser`` (absolute) when ``fhirUser`` is granted."""

    def __init__(self, urls: SandboxUrls) -> None:
        super().__init__(require_nonce=False)
        self.urls = urls

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        """Return whether this client already used ``nonce`` (OIDC Core section 15.5.2)."""
        return SandboxAuthorizationCode.objects.filter(
            client__client_id=request.payload.client_id, nonce=nonce
        ).exists()

    def resolve_client_private_key(self, client: SandboxClient) -> RSAKey:
        """Return the sandbox signing key: the same one whose ``kid`` the header names (``_signing_key``)."""
        return self._signing_key()

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        """authlib's id_token, with the signing key read once for it (``_signing_key``)."""
        _this_token.key = keys.signing_key()
        try:
            return str(super().encode_id_token(token, request))
        finally:
            _this_token.key = None

    def _signing_key(self) -> RSAKey:
        """The signing key of the id_token being encoded on this thread, read once: while the first keys are being
        created by two requests at once (the app fetches the JWKS beside its token request), a second read could
        return the other request's key, and the header would name a key that did not sign it."""
        return getattr(_this_token, "key", None) or keys.signing_key()

    def get_client_algorithm(self, client: SandboxClient) -> str:
        """Always RS256."""
        return keys.ID_TOKEN_ALG

    def get_encode_header(self, client: SandboxClient) -> dict[str, str]:
        """Return the JWS header with the signing key's ``kid``."""
        return {"alg": keys.ID_TOKEN_ALG, "kid": str(self._signing_key().kid), "typ": "JWT"}

    def get_client_claims(self, client: SandboxClient) -> dict[str, Any]:
        """Return ``iss`` (the FHIR base, as in the OpenID configuration) and ``aud`` (the client id)."""
        return {"iss": self.urls.fhir_base, "aud": client.client_id}

    def generate_user_info(self, user: EhrUser, scope: str) -> dict[str, str]:
        """Return ``sub`` and, when granted, ``fhirUser`` = ``{fhir_base}/Practitioner/<id>``."""
        info = {"sub": user.practitioner_id}
        if has_scope(scope, "fhirUser"):
            info["fhirUser"] = f"{self.urls.fhir_base}/Practitioner/{user.practitioner_id}"
        return info


def launch_context(launch: SandboxLaunch, scope: str, urls: SandboxUrls) -> dict[str, Any]:
    """Return the SMART 2.2 launch context of a token response ("Launch context arrives with your access_token").

    ``patient``, ``encounter`` (only when known), ``fhirContext`` and ``appContext`` (a CDS Hooks SMART link's) are
    given only when ``launch`` was granted.
    """
    context: dict[str, Any] = {"need_patient_banner": True, "smart_style_url": urls.style}
    if not has_scope(scope, "launch"):
        return context
    context["patient"] = launch.patient_id
    if launch.encounter_id:
        context["encounter"] = launch.encounter_id
    if launch.request_ref:
        context["fhirContext"] = [{"reference": launch.request_ref}]
    if launch.app_context:  # CDS Hooks 2.0 "Link": the card's appContext comes back with the token
        context["appContext"] = launch.app_context
    return context


class SandboxCodeGrant(AuthorizationCodeGrant):
    """Authorization code grant with the SMART EHR launch checks; no consent page (the EHR user is signed in)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
    server: SandboxAuthorizationServer

    def validate_authorization_request(self) -> str:
        """Validate per RFC 6749 section 4.1.1 and SMART 2.2; return the redirect URI.

        Raises ``OAuth2Error``; errors after the redirect URI is validated carry it (RFC 6749 section 4.1.2.1).
        """
        redirect_uri: str = super().validate_authorization_request()
        try:
            self._validate_smart_request()
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _validate_smart_request(self) -> None:
        data = self.request.payload.data
        if not data.get("redirect_uri"):
            raise InvalidRequestError("Missing 'redirect_uri'.")
        if not data.get("state"):
            raise InvalidRequestError("Missing 'state'.")
        if (data.get("aud") or "").rstrip("/") != self.server.urls.fhir_base:
            raise InvalidRequestError("'aud' must be this server's FHIR base URL.")
        launch = SandboxLaunch.objects.filter(value=data.get("launch") or "").first()
        if launch is None or not launch.is_usable:
            raise InvalidRequestError("Invalid, expired or already used 'launch'.")
        self.request.launch = launch  # type: ignore[attr-defined]

    def ehr_user(self) -> EhrUser:
        """Return the signed-in user bound to the validated launch."""
        return EhrUser(launch=self.request.launch)  # type: ignore[attr-defined]

    def save_authorization_code(self, code: str, request: Any) -> SandboxAuthorizationCode:
        """Consume the launch (one-time) and store the code with its PKCE challenge and nonce."""
        if not sandbox_launch_consume(launch=request.launch):
            raise InvalidRequestError("Invalid, expired or already used 'launch'.")
        data = request.payload.data
        return SandboxAuthorizationCode.objects.create(
            code=code,
            client=request.client,
            launch=request.launch,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            nonce=data.get("nonce") or "",
            code_challenge=data["code_challenge"],
            code_challenge_method="S256",
            expires_at=timezone.now() + timedelta(seconds=CODE_TTL),
        )

    def query_authorization_code(self, code: str, client: SandboxClient) -> SandboxAuthorizationCode | None:
        """Return the unexpired code issued to ``client``."""
        return (
            SandboxAuthorizationCode.objects.select_related("launch")
            .filter(code=code, client=client, expires_at__gt=timezone.now())
            .first()
        )

    def authenticate_user(self, authorization_code: SandboxAuthorizationCode) -> EhrUser | None:
        """Claim the code (single use, RFC 6749 section 4.1.2) and return its user; None if already claimed."""
        deleted, _ = SandboxAuthorizationCode.objects.filter(pk=authorization_code.pk).delete()
        return EhrUser(launch=authorization_code.launch) if deleted else None

    def delete_authorization_code(self, authorization_code: SandboxAuthorizationCode) -> None:
        """Nothing left to do: ``authenticate_user`` already deleted the code."""

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Issue the token (RFC 6749 section 4.1.4) and add the SMART launch context."""
        status, token, headers = super().create_token_response()
        token.update(launch_context(self.request.user.launch, token.get("scope", ""), self.server.urls))
        return status, token, headers


def _launch_of(token: SandboxToken) -> SandboxLaunch:
    """Return the launch of a refreshable token; a launch-less (backend services) token never has a refresh token,
    so none is refused as ``invalid_grant``."""
    if token.launch is None:
        raise InvalidGrantError("The refresh token is not valid.")
    return token.launch


class _RefreshTokenReused(Exception):
    """A refresh token was presented again after it had been used (or while it was being used)."""


class SandboxRefreshGrant(RefreshTokenGrant):
    """Refresh token grant (RFC 6749 section 6; SMART 2.2 "Refresh access token").

    Same client authentication as the code grant. The new access token keeps the launch and its context; a
    ``scope`` parameter may narrow the scope, never widen it (authlib checks). Every refresh rotates: a new refresh
    token is issued (when the scope still has ``offline_access``/``online_access``) and the old one is spent. A
    spent or revoked refresh token is refused with ``invalid_grant`` and revokes every token of its grant
    (OAuth 2.0 Security BCP, RFC 9700 section 4.14.2).
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: SandboxAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> SandboxToken | None:
        """Return the usable token row of ``refresh_token`` issued to the authenticated client, or None.

        A used or revoked refresh token of this client revokes its whole grant before None is returned.
        """
        if not refresh_token:
            return None
        token = (
            SandboxToken.objects.select_related("launch", "client")
            .filter(refresh_token_hash=secret_hash(refresh_token))
            .first()
        )
        if token is None or not token.check_client(self.request.client):
            return None
        if token.is_revoked():
            sandbox_grant_revoke(grant_id=token.grant_id)
            return None
        return token if token.refresh_usable else None

    def authenticate_user(self, refresh_token: SandboxToken) -> EhrUser:
        """Return the EHR user of the token's launch (the refresh keeps the launch context)."""
        return EhrUser(launch=_launch_of(refresh_token))

    def revoke_old_credential(self, refresh_token: SandboxToken) -> None:
        """Nothing left to do: ``create_token_response`` spent the old refresh token before issuing."""

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Spend the old refresh token and issue the new tokens in one transaction, with the launch context.

        Spending is a conditional UPDATE, so of two requests with one refresh token only one wins; the other is
        treated as reuse (``invalid_grant``, grant revoked).
        """
        old: SandboxToken = self.request.refresh_token
        try:
            with transaction.atomic():
                spent = SandboxToken.objects.filter(pk=old.pk, refresh_revoked_at__isnull=True).update(
                    refresh_revoked_at=timezone.now()
                )
                if spent != 1:
                    raise _RefreshTokenReused()
                status, token, headers = super().create_token_response()
        except _RefreshTokenReused:
            sandbox_grant_revoke(grant_id=old.grant_id)
            raise InvalidGrantError("The refresh token was already used.") from None
        token.update(launch_context(_launch_of(old), token.get("scope", ""), self.server.urls))
        return status, token, headers


class SandboxAuthorizationServer(AuthorizationServer):
    """authlib's Django authorization server for one request's URLs (issuer, token URL)."""

    def __init__(self, urls: SandboxUrls) -> None:
        self.urls = urls
        super().__init__(SandboxClient, SandboxToken)
        self.register_grant(SandboxCodeGrant, [SandboxCodeChallenge(required=True), SandboxOpenIDCode(urls)])
        self.register_grant(SandboxRefreshGrant)
        self.register_grant(SandboxClientCredentialsGrant)
        self.register_client_auth_method(SandboxClientAssertion.CLIENT_AUTH_METHOD, SandboxClientAssertion(urls.token))

    def load_config(self, config: dict[str, Any]) -> None:
        """Ignore ``AUTHLIB_OAUTH2_PROVIDER``: access tokens live ``token_ttl()`` seconds (backend-services ones
        ``SANDBOX_BACKEND_TOKEN_TTL``, default 300); refresh tokens are 48 random characters."""
        ttl = token_ttl()
        lifetimes = {
            "authorization_code": ttl,
            "refresh_token": ttl,
            "client_credentials": _seconds("SANDBOX_BACKEND_TOKEN_TTL", BACKEND_TOKEN_TTL),
        }
        super().load_config({"token_expires_in": lifetimes, "refresh_token_generator": True})

    def generate_token(
        self,
        grant_type: str,
        client: SandboxClient,
        user: EhrUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Return the token response; keep ``refresh_token`` only when the granted scope has ``offline_access``
        or ``online_access`` (SMART 2.2 "Scopes for requesting a refresh token")."""
        token: dict[str, Any] = super().generate_token(
            grant_type, client, user, scope, expires_in, include_refresh_token
        )
        if not any(has_scope(token.get("scope", ""), name) for name in REFRESH_SCOPES):
            token.pop("refresh_token", None)
        return token

    def save_token(self, token: dict[str, Any], request: Any) -> SandboxToken:
        """Store the hashes of the access token (and refresh token, if any) with client, scope and launch (none
        for a client credentials token).

        A refreshed token joins the grant of the token it was refreshed from and keeps its refresh deadline.
        """
        now = timezone.now()
        previous = request.refresh_token if isinstance(request.refresh_token, SandboxToken) else None
        refresh = token.get("refresh_token")
        if previous is not None:
            grant_id, refresh_expires_at = previous.grant_id, previous.refresh_expires_at
        else:
            grant_id, refresh_expires_at = uuid.uuid4(), now + timedelta(seconds=refresh_token_ttl())
        return SandboxToken.objects.create(
            access_token_hash=secret_hash(token["access_token"]),
            client=request.client,
            launch=request.user.launch if request.user is not None else None,
            scope=token.get("scope", ""),
            expires_at=now + timedelta(seconds=int(token.get("expires_in", token_ttl()))),
            grant_id=grant_id,
            refresh_token_hash=secret_hash(refresh) if refresh else "",
            refresh_expires_at=refresh_expires_at if refresh else None,
        )


def authorization_response(request: HttpRequest) -> HttpResponse:
    """Answer the authorize endpoint (GET or POST): approve at once and redirect with ``code`` and ``state``.

    Errors go back to a validated redirect URI (RFC 6749 section 4.1.2.1); otherwise ``OAuth2Error`` is raised
    for the view to show an error page.
    """
    server = SandboxAuthorizationServer(SandboxUrls.from_request(request))
    oauth_request = server.create_oauth2_request(request)
    redirect_uri = None
    try:
        grant = server.get_authorization_grant(oauth_request)
        redirect_uri = grant.validate_authorization_request()
        with transaction.atomic():
            status, body, headers = grant.create_authorization_response(redirect_uri, grant.ehr_user())
        return server.handle_response(status, body, headers)
    except OAuth2Error as error:
        error.state = oauth_request.payload.state
        error.redirect_uri = error.redirect_uri or redirect_uri
        if not error.redirect_uri:
            raise
        return server.handle_error_response(oauth_request, error)


def token_response(request: HttpRequest) -> HttpResponse:
    """Answer the token endpoint (RFC 6749 sections 4.1.3, 4.4 and 6; SMART 2.2 "Obtain access token", "Refresh
    access token" and "Backend Services")."""
    server = SandboxAuthorizationServer(SandboxUrls.from_request(request))
    try:
        return server.create_token_response(request)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
