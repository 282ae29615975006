"""OpenID Connect id_token validation for the SMART launch.

Source: OpenID Connect Core 1.0 section 3.1.3.7 (signature from the issuer's JWKS, ``iss``, ``aud`` =
client id, ``exp``, ``nonce``); SMART App Launch 2.2 "Scopes for requesting identity data" (``fhirUser``).
Epic's id_token ``iss`` is ``https://<host>/oauth2``, not the FHIR base, so the issuer and JWKS URL come from
discovery (``issuer``/``jwks_uri`` in smart-configuration, else ``{issuer}/.well-known/openid-configuration``).
"""

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import requests
from django.core.cache import cache
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session
from healthcommerce.ehr.errors import AuthorizationFailed
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import site_label

ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
JWKS_TTL = 3600  # seconds


def _jwks_uri(site: EHRSite, issuer: str, session: requests.Session) -> str:
    config = site.discovery or {}
    if config.get("jwks_uri") and config.get("issuer", issuer) == issuer:
        return str(config["jwks_uri"])
    # The issuer must live on the same host as the FHIR server we registered; never follow a foreign issuer.
    if urlsplit(issuer).hostname != urlsplit(site.iss).hostname:
        raise AuthorizationFailed("The EHR's identity token came from an unexpected issuer.", code="id_token_issuer")
    response = session.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    response.raise_for_status()
    return str(response.json()["jwks_uri"])


def _cache_key(jwks_uri: str) -> str:
    return f"jwks:{jwks_uri}"


def _key_set(jwks_uri: str, session: requests.Session, *, refresh: bool = False) -> KeySet:
    key = _cache_key(jwks_uri)
    data = None if refresh else cache.get(key)
    if data is None:
        response = session.get(jwks_uri, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
        cache.set(key, data, JWKS_TTL)
    return KeySet.import_key_set(data)


def jwks_warm(site: EHRSite) -> bool:
    """Fetch and cache the site's JWKS when discovery named its ``jwks_uri`` and the cache lacks it; return whether it
    fetched. Run beside the token exchange (``ehr.services``), so a site's first launch spends no round on it after
    the token arrives (issue 22). Never raises: a failure here is left to ``id_token_validate``, which fetches
    again and says what failed."""
    uri = (site.discovery or {}).get("jwks_uri")
    if not isinstance(uri, str) or not uri or cache.get(_cache_key(uri)) is not None:
        return False
    try:
        _key_set(uri, outbound_session(site=site_label(site), kind="jwks"))
    except (requests.RequestException, ValueError, OutboundRefused, JoseError):
        return False
    return True


def _issuer(site: EHRSite, token_issuer: str) -> str:
    expected = (site.discovery or {}).get("issuer")
    return str(expected) if expected else token_issuer


def id_token_validate(site: EHRSite, id_token: str, *, nonce: str) -> dict[str, Any]:
    """Return the validated claims of ``id_token`` (a compact JWS).

    Raises ``AuthorizationFailed`` (code ``id_token_invalid``) for a bad signature, wrong ``iss``/``aud``,
    an expired token, or a missing/wrong ``nonce``; ``id_token_unverifiable`` when the JWKS cannot be fetched.
    """
    session = outbound_session(site=site_label(site), kind="jwks")
    try:
        header_iss = _unverified_issuer_from_payload(id_token)
        issuer = _issuer(site, header_iss)
        jwks_uri = _jwks_uri(site, issuer, session)
        try:
            token = jwt.decode(id_token, _key_set(jwks_uri, session), algorithms=ALGORITHMS)
        except JoseError:
            token = jwt.decode(id_token, _key_set(jwks_uri, session, refresh=True), algorithms=ALGORITHMS)
    except (requests.RequestException, ValueError, KeyError, OutboundRefused) as exc:
        raise AuthorizationFailed(
            "The EHR's identity token could not be checked.", code="id_token_unverifiable"
        ) from exc
    except JoseError as exc:
        raise AuthorizationFailed("The EHR's identity token is not valid.", code="id_token_invalid") from exc
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": site.client_id},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(token.claims)
    except JoseError as exc:
        raise AuthorizationFailed("The EHR's identity token is not valid.", code="id_token_invalid") from exc
    return dict(token.claims)


def _unverified_issuer_from_payload(id_token: str) -> str:
    """Read ``iss`` from the payload without trusting it (only to find the issuer's keys)."""
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise AuthorizationFailed("The EHR's identity token is malformed.", code="id_token_invalid") from exc
    return str(data.get("iss", "")) if isinstance(data, dict) else ""
