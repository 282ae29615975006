"""Authenticating the EHR that calls a CDS service: its signed JWT in ``Authorization: Bearer``.

Source: CDS Hooks 2.0 "Trusting CDS Clients": header ``alg``, ``kid``, ``typ`` (``JWT``) and an optional ``jku``;
payload ``iss``, ``aud`` (the exact service URL, a string or an array of strings), ``exp``, ``iat``, ``jti``
(against replay) and an optional ``tenant``; ``none`` and every symmetric (HMAC) algorithm SHALL NOT be used; the
service SHOULD allowlist ``iss`` and ``jku``; without ``jku`` the JWK Set is agreed out of band. ES384 and RS384 are
the recommended algorithms and the only ones accepted here. RFC 7515 section 4.1.2 (``jku``), RFC 7519 section 4.1.

The allowlists are the site's CDS Hooks settings (``models.CdsHooksSite``: ``cds_hooks_enabled``, ``cds_issuers``,
``cds_jku_allowlist``). A JWT without
``jku`` is accepted only when the site allowlists exactly one JWKS URL, which is then the out-of-band agreement
(docs/adr/0021-cds-hooks.md). The body is parsed only after every check, and the algorithm is checked before any
site or key is looked up.
"""

import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from healthcommerce.cdshooks.errors import CdsJwksUnavailable, CdsUnauthorized
from healthcommerce.cdshooks.models import CdsHooksSite
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import outbound_session
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import site_label

logger = logging.getLogger(__name__)

ALGORITHMS = ("RS384", "ES384")  # CDS Hooks 2.0 "JWT Signing Algorithm": recommended; nothing else is accepted
JWKS_TTL = 300  # seconds a fetched JWK Set is kept in the cache
JWKS_REFETCH_INTERVAL = 60  # seconds: an unknown kid or a bad signature refetches the JWK Set at most this often
LEEWAY = 60  # seconds of clock skew allowed on exp and iat
MAX_LIFETIME = 3600  # seconds: an exp further ahead is refused (it would pin the jti in the replay cache for long)
MAX_TOKEN = 16 * 1024  # characters
MAX_JTI = 255


@dataclass(frozen=True)
class CdsCaller:
    """An authenticated CDS client: the ``site`` whose allowlists it passed, its ``iss``, the ``jti`` it used and the
    ``tenant`` it named (empty when absent)."""

    site: EHRSite
    iss: str
    jti: str
    tenant: str


def _refused(code: str, site: EHRSite | None = None) -> CdsUnauthorized:
    error = CdsUnauthorized(code=code)
    error.site_iss = site.iss if site is not None else ""
    return error


def _segment(part: str) -> dict[str, Any]:
    """Decode one base64url JSON segment of a compact JWS; ``CdsUnauthorized`` (``jwt_malformed``) otherwise."""
    try:
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refused("jwt_malformed") from exc
    if not isinstance(data, dict):
        raise _refused("jwt_malformed")
    return data


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refused("jwt_missing")
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        raise _refused("jwt_malformed")
    return token


def _header_checked(token: str) -> dict[str, Any]:
    """Return the JWS header after refusing any algorithm but RS384/ES384 (so ``none`` and HMAC never reach a key
    lookup), a ``typ`` other than ``JWT`` and a missing ``kid``."""
    header = _segment(token.split(".")[0])
    if header.get("alg") not in ALGORITHMS:
        raise _refused("alg_refused")
    if header.get("typ", "JWT") != "JWT":
        raise _refused("typ_refused")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise _refused("kid_missing")
    if "crit" in header:  # RFC 7515 4.1.11: we understand no critical extension
        raise _refused("crit_refused")
    return header


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str) and item] if isinstance(value, list) else []


def _jku_allowed(site: EHRSite, jku: Any) -> str | None:
    """Return the JWKS URL to use for ``site``: the header's ``jku`` when the site allowlists it, or, without one,
    the site's only allowlisted URL; ``None`` when neither applies."""
    allowed = _strings(CdsHooksSite.of(site).cds_jku_allowlist)
    if jku is None:
        return allowed[0] if len(allowed) == 1 else None
    return jku if isinstance(jku, str) and jku in allowed else None


def _site_and_jku(iss: Any, header: dict[str, Any]) -> tuple[EHRSite, str]:
    """Find the one active site with CDS Hooks on that allowlists ``iss`` and the JWT's ``jku``."""
    if not isinstance(iss, str) or not iss or len(iss) > 500:
        raise _refused("iss_unknown")
    wanted = iss.rstrip("/")
    sites = [
        site
        for site in EHRSite.objects.filter(is_active=True, cdshookssite__cds_hooks_enabled=True)
        .select_related("cdshookssite")
        .order_by("name")
        if wanted in {item.rstrip("/") for item in _strings(CdsHooksSite.of(site).cds_issuers)}
    ]
    if not sites:
        raise _refused("iss_unknown")
    found = [(site, jku) for site in sites if (jku := _jku_allowed(site, header.get("jku"))) is not None]
    if not found:
        raise _refused("jku_refused" if "jku" in header else "jku_missing", sites[0])
    if len(found) > 1:
        logger.warning("CDS Hooks: %d sites allowlist the same iss and jku; refusing", len(found))
        raise _refused("iss_ambiguous", found[0][0])
    site, jku = found[0]
    if settings.PRODUCTION and urlsplit(jku).scheme != "https":
        raise _refused("jku_refused", site)
    return site, jku


def _cache_key(prefix: str, value: str) -> str:
    return f"cds:{prefix}:" + hashlib.sha256(value.encode()).hexdigest()[:40]


def _key_set(site: EHRSite, jku: str, *, refetch: bool = False) -> KeySet:
    """Return the JWK Set at ``jku`` from the cache (``JWKS_TTL``) or fetched through the outbound client (https
    only, http only on loopback; no redirects: the allowlisted URL itself must answer)."""
    key = _cache_key("jwks", jku)
    data = None if refetch else cache.get(key)
    if data is None:
        try:
            data = cds_jwks_fetch(site, jku)
        except CdsJwksUnavailable as exc:
            logger.warning("CDS Hooks: the JWK Set of site %s could not be read", site.pk)
            raise _refused("jwks_unavailable", site) from exc
        cache.set(key, data, JWKS_TTL)
    return KeySet.import_key_set(data)  # type: ignore[arg-type]  # checked by cds_jwks_fetch


def cds_jwks_fetch(site: EHRSite, jku: str) -> dict[str, Any]:
    """Fetch the JWK Set at ``jku`` (an allowlisted URL of ``site``) through the outbound client: https only (http
    only on loopback), no redirects, the body capped; counted as the site's ``jwks`` calls. Returns the JSON
    (``{"keys": [...]}``, each key importable). Raises ``CdsJwksUnavailable`` for anything else. Used by the
    hook authentication (cached) and by the go-live readiness check."""
    session = outbound_session(site=site_label(site), kind="jwks")
    try:
        response = session.get(jku, headers={"Accept": "application/json"}, allow_redirects=False)
        response.raise_for_status()
        data = response.json()
        KeySet.import_key_set(data)
    except (requests.RequestException, HealthcommerceError, ValueError, TypeError, JoseError) as exc:
        raise CdsJwksUnavailable() from exc
    return dict(data)


def _verified_claims(token: str, site: EHRSite, jku: str) -> dict[str, Any]:
    """Verify the signature with the site's JWK Set; an unknown ``kid`` or a bad signature refetches the set once
    (a rotated key), at most every ``JWKS_REFETCH_INTERVAL`` seconds per URL."""
    try:
        return dict(jwt.decode(token, _key_set(site, jku), algorithms=list(ALGORITHMS)).claims)
    except JoseError as first:
        if not cache.add(_cache_key("jwks-refetch", jku), 1, JWKS_REFETCH_INTERVAL):
            raise _refused("signature_invalid", site) from first
    try:
        return dict(jwt.decode(token, _key_set(site, jku, refetch=True), algorithms=list(ALGORITHMS)).claims)
    except JoseError as exc:
        raise _refused("signature_invalid", site) from exc


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _claims_checked(claims: dict[str, Any], site: EHRSite, *, audience: str, now: float) -> tuple[str, float]:
    """Check ``aud``, ``exp``, ``iat`` and ``jti``; return ``(jti, exp)``."""
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise _refused("aud_invalid", site)
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None:
        raise _refused("exp_missing", site)
    if exp + LEEWAY < now:
        raise _refused("expired", site)
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise _refused("exp_too_far", site)
    if iat is None:
        raise _refused("iat_missing", site)
    if iat > now + LEEWAY:
        raise _refused("iat_future", site)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise _refused("jti_missing", site)
    return jti, exp


def _jti_claim(site: EHRSite, iss: str, jti: str, *, exp: float, now: float) -> None:
    """Remember ``jti`` (per issuer) until the JWT can no longer be used; a second use is a replay."""
    timeout = max(1, int(exp - now + LEEWAY) + 1)
    if not cache.add(_cache_key("jti", f"{iss}|{jti}"), 1, timeout):
        raise _refused("jti_replayed", site)


def cds_caller_authenticate(*, authorization: str, audience: str) -> CdsCaller:
    """Authenticate the CDS client from the ``Authorization`` header value; ``audience`` is the exact URL of the
    service called (``settings.APP_BASE_URL`` + ``/cds-services/<id>``).

    In order: a bearer JWT; ``alg`` RS384 or ES384 (``none``, HS256 and every other refused before any look-up),
    ``typ`` JWT, a ``kid``; an active site with ``cds_hooks_enabled`` whose ``cds_issuers`` holds ``iss`` and whose
    ``cds_jku_allowlist`` holds ``jku`` (or, without ``jku``, has exactly one entry); the signature against that JWK
    Set (fetched through ``core.http.outbound_session``, https in production, cached ``JWKS_TTL`` seconds); ``aud``;
    ``exp`` (required, not past, at most ``MAX_LIFETIME`` ahead); ``iat`` (required, not in the future beyond
    ``LEEWAY``); ``jti`` (required, never seen before: kept in the cache until ``exp``).

    Raises ``CdsUnauthorized`` with the failed check as ``code`` and the site's ``iss`` as ``site_iss`` once known.
    """
    token = _bearer(authorization)
    header = _header_checked(token)
    parts = token.split(".")
    unverified = _segment(parts[1])
    site, jku = _site_and_jku(unverified.get("iss"), header)
    claims = _verified_claims(token, site, jku)
    now = time.time()
    jti, exp = _claims_checked(claims, site, audience=audience, now=now)
    iss = str(claims.get("iss"))
    _jti_claim(site, iss, jti, exp=exp, now=now)
    tenant = claims.get("tenant")
    return CdsCaller(site=site, iss=iss, jti=jti, tenant=tenant[:200] if isinstance(tenant, str) else "")
