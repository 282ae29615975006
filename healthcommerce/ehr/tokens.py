"""Bearer tokens for a launch's FHIR reads: the stored access token while it is fresh, else a refreshed one.

Sources: SMART App Launch 2.2 "Refresh access token" (``grant_type=refresh_token`` at the token endpoint, with the
same client authentication as the code exchange; the server MAY issue a new refresh token, MAY omit ``expires_in``
and MAY narrow ``scope``); RFC 6749 section 6; OAuth 2.0 Security BCP (RFC 9700) section 4.14.2 (refresh token
rotation: a rotated refresh token is single use, and presenting it twice may revoke the whole grant).

Tokens never leave the server and are never logged.
"""

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from authlib.integrations.base_client import OAuthError
from django.db.models import Q
from django.utils import timezone
from requests import RequestException

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.discovery import discover
from healthcommerce.ehr.errors import DiscoveryFailed, ReauthorizationNeeded, RefreshUnavailable
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.oauth import oauth_session
from healthcommerce.ehr.services import DEFAULT_TOKEN_LIFETIME, redirect_uri

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 30  # seconds: a token closer than this to its expiry is refreshed before use
# Seconds a refresh may hold its lease: longer than one token request (HTTP_TIMEOUT, discovery included).
REFRESH_LEASE = 30
LEASE_POLL = 0.1  # seconds between looks at another caller's lease
MAX_TOKEN_LIFETIME = 86400  # seconds; a larger or odd ``expires_in`` counts as missing
# Token endpoint error codes (RFC 6749 section 5.2) kept in the audit outcome; others show as "refresh_error".
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
}
_TOKEN_FIELDS = ["access_token", "refresh_token", "token_expires_at", "scope_granted"]


def launch_access_token(launch: Launch) -> str:
    """Return a bearer token for ``launch``'s FHIR reads (SMART 2.2 "Refresh access token").

    The stored access token while ``token_expires_at`` is more than ``REFRESH_MARGIN`` (30) seconds away;
    otherwise a refreshed one (see ``launch_token_refresh``). Without a refresh token, the stored one is used
    until it has really expired (an EHR may grant tokens shorter than the margin). Makes no request while the
    token is fresh.
    ``launch`` is updated in memory with the stored token fields. Raises ``ReauthorizationNeeded``.
    """
    now = timezone.now()
    if _fresh(launch, now):
        return launch.access_token
    unexpired = launch.access_token and launch.token_expires_at is not None and launch.token_expires_at > now
    if unexpired and not launch.refresh_token:
        return launch.access_token
    return launch_token_refresh(launch, force=False)


def launch_token_refresh(launch: Launch, *, force: bool = True) -> str:
    """Refresh ``launch``'s access token at the site's token endpoint and return the new bearer token.

    ``force=True`` is for a read that got 401 with ``launch.access_token``: the token is refreshed even if it
    looks unexpired, unless another caller already replaced it. ``force=False`` refreshes only a token that is
    missing or within ``REFRESH_MARGIN`` seconds of expiry.

    Concurrency: the caller that refreshes first takes a lease on the launch (``token_refreshing_until``, one
    conditional UPDATE, committed at once); the others wait for it to end and use the token it stored, so a
    single-use refresh token is spent once. No database lock or transaction is held across the token request:
    the EHR may share this database (the sandbox mounted in the demo's own server) and must be able to write
    while we wait for its answer. A lease whose holder died ends by itself after ``REFRESH_LEASE`` seconds.

    Saves the new ``access_token``, ``token_expires_at`` (``expires_in`` seconds ahead, default 3600 when
    missing), ``refresh_token`` (the rotated one; the previous one is kept when the response has none) and
    ``scope_granted`` (the response's ``scope``, which may be narrower; unchanged when missing). Writes one
    ``smart.refresh`` audit row per attempt (``outcome`` ``success`` or the error code).

    Raises ``ReauthorizationNeeded`` (the clinician must launch again; drafts are kept) with ``code``:
    ``no_refresh_token``; ``refresh_<oauth error>`` when the EHR refused (``refresh_invalid_grant`` also clears
    the stored refresh token); ``refresh_malformed`` or ``refresh_patient_mismatch`` for an unusable response;
    ``RefreshUnavailable`` (temporary: try again) with ``refresh_unreachable`` when the EHR did not answer.
    """
    seen = launch.access_token
    site = launch.site
    deadline = time.monotonic() + REFRESH_LEASE
    error: HealthcommerceError | None = None
    while True:
        record = Launch.objects.get(pk=launch.pk)
        now = timezone.now()
        replaced = record.access_token != seen and record.token_expires_at is not None and record.token_expires_at > now
        if replaced or not (force or not _fresh(record, now)):
            break
        lease = Launch.objects.filter(pk=launch.pk).filter(
            Q(token_refreshing_until__isnull=True) | Q(token_refreshing_until__lt=now)
        )
        if lease.update(token_refreshing_until=now + timedelta(seconds=REFRESH_LEASE)) == 1:
            error = _refresh_leased(record, site, force=force)
            break
        if time.monotonic() > deadline:  # another caller's refresh is still running: let the clinician retry
            error = RefreshUnavailable(code="refresh_busy")
            break
        time.sleep(LEASE_POLL)
    for name in _TOKEN_FIELDS:
        setattr(launch, name, getattr(record, name))
    if error is not None:
        raise error
    return record.access_token


def _fresh(launch: Launch, now: datetime) -> bool:
    expires_at = launch.token_expires_at
    return bool(launch.access_token) and expires_at is not None and expires_at - now > timedelta(seconds=REFRESH_MARGIN)


def _lifetime(value: Any) -> int:
    """Return ``expires_in`` (seconds) as a positive int, or ``DEFAULT_TOKEN_LIFETIME`` when missing or odd."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME
    return seconds if 0 < seconds <= MAX_TOKEN_LIFETIME else DEFAULT_TOKEN_LIFETIME


def _token_request(site: EHRSite, refresh_token: str) -> dict[str, Any]:
    """POST ``grant_type=refresh_token`` (no ``scope``: the same scope as granted) with the site's client
    authentication; return the token response. Raises ``OAuthError``, ``RequestException``, ``ValueError`` or
    ``DiscoveryFailed``."""
    config = discover(site)
    client = oauth_session(site, redirect_uri=redirect_uri())
    return dict(client.refresh_token(config["token_endpoint"], refresh_token=refresh_token))


def _refresh_leased(record: Launch, site: EHRSite, *, force: bool) -> HealthcommerceError | None:
    """Refresh ``record`` (whose lease this caller holds), save it and end the lease; return the error to raise,
    or None on success."""
    previous = record.refresh_token
    if not record.refresh_token:
        outcome = "no_refresh_token"
    else:
        try:
            token = _token_request(site, record.refresh_token)
        except OAuthError as exc:
            outcome = f"refresh_{exc.error}" if exc.error in TOKEN_ERRORS else "refresh_error"
            if exc.error == "invalid_grant":  # spent, revoked or expired: it will never work again
                record.refresh_token = ""
        except (RequestException, ValueError, DiscoveryFailed):
            outcome = "refresh_unreachable"
        else:
            outcome = _apply(record, token)
    record.token_refreshing_until = None
    record.save(update_fields=[*_TOKEN_FIELDS, "token_refreshing_until", "updated_at"])
    detail = {"forced": force} | ({"rotated": record.refresh_token != previous} if outcome == "success" else {})
    audit_record(
        actor=record.fhir_user or "unknown",
        action="smart.refresh",
        target=f"Launch/{record.pk}",
        where=site.iss,
        outcome=outcome,
        detail=detail,
        site=site.iss,
        launch_id=record.pk,
    )
    if outcome == "success":
        logger.info("Launch %s: access token refreshed at site %s", record.pk, site.pk)
        return None
    logger.warning("Launch %s: token refresh at site %s failed: %s", record.pk, site.pk, outcome)
    if outcome == "refresh_unreachable":
        return RefreshUnavailable(code=outcome)
    return ReauthorizationNeeded(code=outcome)


def _apply(record: Launch, token: dict[str, Any]) -> str:
    """Copy a refresh response onto ``record`` (not saved); return ``success`` or the failure outcome."""
    access = token.get("access_token")
    if not isinstance(access, str) or not access or str(token.get("token_type", "")).lower() != "bearer":
        return "refresh_malformed"
    patient = token.get("patient")
    if patient not in (None, "") and patient != record.patient_id:
        record.refresh_token = ""  # a token for someone else: stop using this grant
        return "refresh_patient_mismatch"
    record.access_token = access
    record.token_expires_at = timezone.now() + timedelta(seconds=_lifetime(token.get("expires_in")))
    refresh = token.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        record.refresh_token = refresh
    scope = token.get("scope")
    if isinstance(scope, str) and scope:
        record.scope_granted = scope
    return "success"
