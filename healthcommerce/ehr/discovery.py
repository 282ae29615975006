"""SMART discovery: find a site's authorization and token endpoints.

Source: SMART App Launch 2.2 "Conformance" (``{iss}/.well-known/smart-configuration``) with the fallback
to the CapabilityStatement's ``oauth-uris`` extension that servers before 2.0 (Epic before Aug 2021) use.
"""

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import requests
from django.conf import settings
from django.utils import timezone

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import check_url, outbound_session
from healthcommerce.ehr.errors import DiscoveryFailed
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import site_label

logger = logging.getLogger(__name__)

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
REQUIRED = ("authorization_endpoint", "token_endpoint")


def _base(iss: str) -> str:
    return iss if iss.endswith("/") else iss + "/"


def _metadata_headers(site: EHRSite) -> dict[str, str]:
    headers = {"Accept": "application/fhir+json"}
    if site.quirks.get("epic_client_id_header"):
        headers["Epic-Client-ID"] = site.client_id
    return headers


def _from_well_known(site: EHRSite, session: requests.Session) -> dict[str, Any] | None:
    response = session.get(
        urljoin(_base(site.iss), ".well-known/smart-configuration"), headers={"Accept": "application/json"}
    )
    if response.status_code != 200:
        return None
    data = response.json()
    return data if isinstance(data, dict) else None


def _from_metadata(site: EHRSite, session: requests.Session) -> dict[str, Any] | None:
    response = session.get(urljoin(_base(site.iss), "metadata"), headers=_metadata_headers(site))
    if response.status_code != 200:
        return None
    found: dict[str, Any] = {}
    for rest in response.json().get("rest", []):
        for ext in rest.get("security", {}).get("extension", []):
            if ext.get("url") != OAUTH_URIS:
                continue
            for sub in ext.get("extension", []):
                if sub.get("url") in ("authorize", "token", "register", "manage", "introspect", "revoke"):
                    key = {"authorize": "authorization_endpoint", "token": "token_endpoint"}.get(sub["url"], sub["url"])
                    found[key] = sub.get("valueUri")
    return found or None


def discover(site: EHRSite, *, force: bool = False) -> dict[str, Any]:
    """Return the site's SMART configuration dict with absolute ``authorization_endpoint`` and ``token_endpoint``.

    Cached on the site for ``SMART_DISCOVERY_TTL`` seconds. Raises ``DiscoveryFailed`` when neither
    source answers with both endpoints (network errors, non-JSON, 4xx/5xx) or an endpoint is not https
    (http only on loopback), since the token exchange runs on authlib's session, not ``OutboundSession``.
    """
    fresh = site.discovered_at and timezone.now() - site.discovered_at < timedelta(seconds=settings.SMART_DISCOVERY_TTL)
    if site.discovery and fresh and not force:
        return site.discovery
    session = outbound_session(site=site_label(site), kind="discovery")
    try:
        config = _from_well_known(site, session) or _from_metadata(site, session)
    except (requests.RequestException, ValueError, OutboundRefused) as exc:
        logger.warning("SMART discovery failed for site %s: %s", site.pk, type(exc).__name__)
        raise DiscoveryFailed() from exc
    if not config or not all(isinstance(config.get(k), str) for k in REQUIRED):
        logger.warning("SMART discovery for site %s gave no usable endpoints", site.pk)
        raise DiscoveryFailed()
    for key in (*REQUIRED, "jwks_uri"):
        if isinstance(config.get(key), str):
            config[key] = urljoin(_base(site.iss), config[key])
            try:
                check_url(config[key])  # the OAuth session is authlib's, so its endpoints are checked here
            except OutboundRefused as exc:
                logger.warning("SMART discovery for site %s gave a non-https %s", site.pk, key)
                raise DiscoveryFailed() from exc
    site.discovery, site.discovered_at = config, timezone.now()
    site.save(update_fields=["discovery", "discovered_at", "updated_at"])
    return config
