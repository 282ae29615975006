"""SMART Backend Services: system-level FHIR access without a user, for workers and the readiness check.

Source: SMART App Launch 2.2 "Backend Services": ``grant_type=client_credentials`` authenticated with a signed
client assertion (``client-confidential-asymmetric``, a new assertion per request), ``system/`` scopes, short
access tokens and no refresh token; FHIR R4 RESTful API (read with ``_elements``, create with ``Location``).

``backend_token`` fetches (and caches per process until 60 s before expiry) a token; ``backend_client`` is the one
FHIR client (``ehr.fhir.FHIRClient``) with that token, which retries once with a fresh token after a 401;
``backend_read`` and ``backend_create`` use it and write one audit row each (``fhir.read`` / ``fhir.create``, actor
``backend:<client id>``). Errors are ``BackendServicesError`` subclasses with a ``code`` and ``transient``. Nothing
here logs a token or a resource body.
"""

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import OutboundRefused
from healthcommerce.ehr.discovery import discover
from healthcommerce.ehr.errors import (
    BackendFHIRError,
    BackendNoSigningKey,
    BackendNotEnabled,
    BackendServicesError,
    BackendTokenRefused,
    BackendTokenUnavailable,
    DiscoveryFailed,
    FHIRError,
)
from healthcommerce.ehr.fhir import TYPE_PATTERN, FHIRClient
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import assertion_auth, client_key, site_label, token_session

logger = logging.getLogger(__name__)

EARLY_RENEWAL = timedelta(seconds=60)  # a cached token is used until 60 s before it expires
DEFAULT_LIFETIME = 300  # seconds, when the token response has no usable expires_in (SMART: short tokens)
MAX_LIFETIME = 3600


@dataclass(frozen=True)
class BackendToken:
    """A backend-services access token: ``scope`` as granted (the requested scope when the response omits it,
    RFC 6749 section 5.1) and ``expires_at`` (aware). Never logged, never stored in the database."""

    access_token: str
    scope: str
    expires_at: datetime

    def fresh(self, now: datetime | None = None) -> bool:
        """Return whether the token may still be used: more than 60 s before ``expires_at``."""
        return self.expires_at - (now or timezone.now()) > EARLY_RENEWAL

    def __repr__(self) -> str:
        return f"BackendToken(scope={self.scope!r}, expires_at={self.expires_at.isoformat()})"


_cache: dict[tuple[str, str, str, str], BackendToken] = {}
_cache_lock = threading.Lock()


def backend_client_id(site: EHRSite) -> str:
    """Return the client id of the site's backend-services registration (``backend_client_id``, else
    ``client_id``)."""
    return site.backend_client_id or site.client_id


def _cache_key(site: EHRSite, scope: str) -> tuple[str, str, str, str]:
    return (str(site.pk), site.iss, backend_client_id(site), scope)


def backend_tokens_forget(site: EHRSite | None = None) -> None:
    """Drop this process's cached tokens of ``site`` (every site when None): after a 401, a key change, in tests."""
    with _cache_lock:
        for key in [k for k in _cache if site is None or k[0] == str(site.pk)]:
            del _cache[key]


def backend_token(site: EHRSite, *, scope: str | None = None) -> BackendToken:
    """Return an access token for ``site``'s backend-services client with ``scope`` (default
    ``site.backend_scopes``), from this process's cache while it has more than 60 s left.

    Otherwise POSTs ``grant_type=client_credentials`` and ``scope`` to the discovered token endpoint with a new
    client assertion (``private_key_jwt``, signed with the site's ``client_key``). Raises ``BackendNotEnabled``
    (backend services off or no scope), ``BackendNoSigningKey``, ``BackendTokenRefused`` (an OAuth error or other
    4xx; ``oauth_error`` names it) or ``BackendTokenUnavailable`` (discovery, network, timeout, 5xx: transient;
    ``backend_token_malformed``: a 200 without a bearer token, permanent).
    """
    wanted = " ".join((scope if scope is not None else site.backend_scopes).split())
    if not site.backend_services or not wanted:
        raise BackendNotEnabled()
    key = _cache_key(site, wanted)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached.fresh():
        return cached
    token = _fetch_token(site, wanted)
    with _cache_lock:
        _cache[key] = token
    return token


def _fetch_token(site: EHRSite, scope: str) -> BackendToken:
    try:
        signing = client_key(site)
    except ValueError as exc:
        raise BackendNoSigningKey("The site's signing key cannot be read.") from exc
    if signing is None:
        raise BackendNoSigningKey()
    try:
        endpoint = discover(site)["token_endpoint"]
    except DiscoveryFailed as exc:
        raise BackendTokenUnavailable(code="backend_token_unreachable") from exc
    session = token_session(site, client_id=backend_client_id(site), auth_method=assertion_auth(signing))
    try:
        response = session.fetch_token(endpoint, grant_type="client_credentials", scope=scope)
    except OAuthError as exc:
        error = ehr_said(exc.error, limit=80) or "invalid_request"
        logger.warning("Backend token refused by site %s: %s", site.pk, error)
        described = ehr_said(exc.description, secrets=(site.client_secret,))
        said = f'{error}, "{described}"' if described else f"{error}."
        raise BackendTokenRefused(
            error, f"The EHR refused our backend services credentials: {said}", description=described
        ) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        logger.warning("Backend token request to site %s answered %s", site.pk, status)
        if 400 <= status < 500:
            raise BackendTokenRefused(f"http_{status}") from exc
        raise BackendTokenUnavailable() from exc
    except (requests.RequestException, OutboundRefused) as exc:
        logger.warning("Backend token request to site %s failed: %s", site.pk, type(exc).__name__)
        raise BackendTokenUnavailable() from exc
    except ValueError as exc:
        raise BackendTokenUnavailable(code="backend_token_malformed", transient=False) from exc
    return _parsed(site, dict(response), scope)


# RFC 6749 section 5.2: ``error`` and ``error_description`` are %x20-21 / %x23-5B / %x5D-7E; anything else goes.
_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]+")
# What could be a credential the EHR echoed: a JWT or JWS (our client assertion), a run of 64+ token characters
# (a key id, an RFC 7638 thumbprint of 43, stays readable).
_CREDENTIAL_LIKE = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*|[A-Za-z0-9+/_\-=]{64,}")


def ehr_said(text: Any, *, limit: int = 200, secrets: Sequence[str] = ()) -> str:
    """Return what an EHR wrote in an OAuth ``error`` or ``error_description`` (RFC 6749 section 5.2) fit to show
    an engineer: only the characters the RFC allows, spaces collapsed, anything that looks like a credential (a
    JWT such as our client assertion, a run of 64+ token characters, one of ``secrets``) as ``[redacted]``, at
    most ``limit`` characters (``...`` when cut); ``""`` for nothing or not a string."""
    if not isinstance(text, str):
        return ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = " ".join(_CREDENTIAL_LIKE.sub("[redacted]", _UNSAFE.sub(" ", text)).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _parsed(site: EHRSite, response: dict[str, Any], scope: str) -> BackendToken:
    access = response.get("access_token")
    if not isinstance(access, str) or not access or str(response.get("token_type", "")).lower() != "bearer":
        raise BackendTokenUnavailable(code="backend_token_malformed", transient=False)
    try:
        lifetime = int(response.get("expires_in", DEFAULT_LIFETIME))
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    lifetime = lifetime if 0 < lifetime <= MAX_LIFETIME else DEFAULT_LIFETIME
    granted = response.get("scope")
    granted = granted if isinstance(granted, str) and granted.strip() else scope
    logger.info("Backend token for site %s: %d s, %d scopes", site.pk, lifetime, len(granted.split()))
    return BackendToken(access_token=access, scope=granted, expires_at=timezone.now() + timedelta(seconds=lifetime))


@dataclass(frozen=True)
class BackendBearer:
    """The ``ehr.fhir.Bearer`` of a backend-services token for ``site`` with ``scope`` (default
    ``site.backend_scopes``): ``backend_token`` (cached), and after a 401 a fresh one (the cache of the site
    dropped, a new client assertion). Raises the token's errors (``BackendServicesError`` subclasses)."""

    site: EHRSite
    scope: str | None = None
    errors: type[FHIRError] = BackendFHIRError

    def token(self) -> str:
        """Return the access token (``backend_token``)."""
        return backend_token(self.site, scope=self.scope).access_token

    def renewed(self) -> str:
        """Forget the site's cached tokens and return a freshly fetched one."""
        backend_tokens_forget(self.site)
        return self.token()


def backend_client(site: EHRSite, *, scope: str | None = None) -> FHIRClient:
    """Return the ``FHIRClient`` of ``site`` with a backend-services token (``BackendBearer``): the client the
    workers use (ship-to re-read, write-back) and the readiness check reads its test patient with. Its errors are
    ``BackendFHIRError`` (also ``BackendServicesError``), and a 4xx other than 401, 403, 404 and 410 is
    ``rejected`` (permanent). It writes no audit row (``backend_read``, ``backend_create`` and the readiness check
    write their own)."""
    return FHIRClient(iss=site.iss, bearer=BackendBearer(site, scope), site=site_label(site), refused="rejected")


def _audit(site: EHRSite, *, action: str, target: str, outcome: str, detail: dict[str, Any]) -> None:
    audit_record(
        actor=f"backend:{backend_client_id(site)}",
        action=action,
        target=target,
        where=site.iss,
        outcome=outcome,
        detail={"via": "backend_services"} | detail,
        site=site.iss,
    )


def backend_read(
    site: EHRSite, resource_type: str, fhir_id: str, *, elements: Sequence[str] = (), scope: str | None = None
) -> dict[str, Any]:
    """Return ``GET [base]/{resource_type}/{fhir_id}[?_elements=a,b]`` as JSON (a dict of that ``resourceType``)
    read with ``backend_client`` (``scope``: default ``site.backend_scopes``); write one ``fhir.read`` audit row
    (outcome ``success`` or the error code; ``detail`` names the elements, never values).

    Raises ``BackendFHIRError`` with ``code`` ``unauthorized`` (401 twice), ``forbidden``, ``not_found``,
    ``server_error`` (5xx, 429), ``timeout``, ``unreachable`` (transient for the last three), ``malformed``
    (not JSON or not that resource type), ``rejected`` (other 4xx) or ``invalid_id``; or a token error
    (``backend_token``: ``BackendServicesError`` subclasses), which is audited as well.
    """
    target = f"{resource_type}/{fhir_id}"
    detail: dict[str, Any] = {"elements": list(elements)} if elements else {}
    try:
        data = backend_client(site, scope=scope).read(resource_type, fhir_id, elements=",".join(elements))
    except BackendServicesError as exc:
        _audit(site, action="fhir.read", target=target[:300], outcome=exc.code, detail=detail)
        logger.warning("Backend read of %s at site %s failed: %s", resource_type[:64], site.pk, exc.code)
        raise
    _audit(site, action="fhir.read", target=target, outcome="success", detail=detail)
    return data


def backend_create(
    site: EHRSite, resource: dict[str, Any], *, if_none_exist: str = "", scope: str | None = None
) -> str:
    """``POST [base]/{resourceType}`` ``resource`` with ``backend_client`` and return the new resource's id
    (``FHIRClient.create``: from ``Location``, else the body's ``id``); write one ``fhir.create`` audit row (target
    ``Type/id`` or the type, outcome ``success`` or the error code; no resource content).

    ``if_none_exist`` (a search query such as ``identifier=urn:x|123``) makes it a FHIR conditional create, so a
    retry after a timeout does not create the record twice where the EHR supports it. Raises ``BackendFHIRError``
    as ``backend_read`` does; 4xx other than 401 are permanent (``transient`` false), 5xx, 429, timeouts and
    connection errors transient; ``malformed`` when the EHR answered 2xx without a usable id. Raises
    ``ValueError`` when ``resource`` has no valid ``resourceType``.
    """
    resource_type = str(resource.get("resourceType") or "")
    if not TYPE_PATTERN.match(resource_type):
        raise ValueError("resource needs a resourceType")
    try:
        new_id = backend_client(site, scope=scope).create(resource, if_none_exist=if_none_exist)
    except BackendServicesError as exc:
        _audit(site, action="fhir.create", target=resource_type, outcome=exc.code, detail={})
        logger.warning("Backend create of %s at site %s failed: %s", resource_type, site.pk, exc.code)
        raise
    _audit(site, action="fhir.create", target=f"{resource_type}/{new_id}", outcome="success", detail={})
    return new_id
