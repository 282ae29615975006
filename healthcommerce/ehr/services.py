"""SMART EHR launch: ``launch_start`` (``/smart/launch``) and ``launch_complete`` (``/smart/callback``).

Source: SMART App Launch 2.2 "App Launch: Launch and Authorization" steps 1-5 (EHR launch, discovery,
authorization request with PKCE S256 and ``aud``, state validation, token exchange) and "Best practices".
"""

import contextvars
import hashlib
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from requests import RequestException

from healthcommerce.audit.services import audit_record, audit_refusal, audit_retention
from healthcommerce.core.errors import NotFound
from healthcommerce.core.requestid import new_request_id, request_id
from healthcommerce.ehr.discovery import discover
from healthcommerce.ehr.errors import AuthorizationFailed, EHRSetupError, LaunchInvalid, UnknownIssuer
from healthcommerce.ehr.idtoken import id_token_validate, jwks_warm
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.oauth import oauth_session

logger = logging.getLogger(__name__)

SESSION_BROWSER_KEY = "hc_browser"
SESSION_LAUNCHES = "hc_launches"
MAX_LAUNCH_TOKEN = 4096
# Error codes an authorization server may send back (RFC 6749 4.1.2.1); anything else shows as "error".
OAUTH_ERRORS = {
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "invalid_launch_token",
    "login_required",
    "consent_required",
}
# Errors that mean this app's registration or configuration at the EHR is wrong (RFC 6749 4.1.2.1 and 5.2):
# launching again cannot help; the clinician is told to call IT with a reference (``EHRSetupError``).
SETUP_ERRORS = {
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "unsupported_grant_type",
    "unsupported_response_type",
}
TEMPORARY_ERRORS = {"server_error", "temporarily_unavailable"}  # the same launch may work in a moment
# Runs the JWKS fetch beside a token exchange (``_exchange``); one per process, its threads made as needed.
_BESIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jwks")


@dataclass(frozen=True)
class AuthorizeRequest:
    """Where to send the browser: ``url`` for GET, or ``endpoint`` + ``params`` for an auto-submitted POST."""

    url: str
    endpoint: str
    params: dict[str, str]
    method: str


def redirect_uri() -> str:
    """Return the registered redirect URI, ``{APP_BASE_URL}/smart/callback``."""
    return settings.APP_BASE_URL.rstrip("/") + "/smart/callback"


def site_for_iss(iss: str) -> EHRSite:
    """Return the active site registered for ``iss`` (trailing slash ignored); ``UnknownIssuer`` otherwise.

    Makes no outbound request (SMART App Launch 2.2: an unknown ``iss`` must not be contacted).
    """
    if not iss or len(iss) > 500:
        raise UnknownIssuer()
    base = iss.rstrip("/")
    site = EHRSite.objects.filter(iss__in=[base, base + "/"], is_active=True).first()
    if site is None:
        raise UnknownIssuer()
    return site


def _browser_key(session: Any) -> str:
    if SESSION_BROWSER_KEY not in session:
        session[SESSION_BROWSER_KEY] = secrets.token_urlsafe(32)
    return hashlib.sha256(session[SESSION_BROWSER_KEY].encode()).hexdigest()


def launch_start(*, iss: str, launch: str, session: Any) -> tuple[Launch, AuthorizeRequest]:
    """Begin an EHR launch: check ``iss``, discover, store state + PKCE server-side, build the authorize request.

    ``session`` is the Django session (the browser binding lives there). Raises ``UnknownIssuer``,
    ``LaunchInvalid`` (missing/oversized ``launch``) or ``DiscoveryFailed``. The two refusals are audited as
    aggregated ``smart.launch`` rows (``unknown_iss``, ``launch_missing``; ``audit_refusal``): nothing is
    authenticated yet, so they must not flood the table.
    """
    try:
        site = site_for_iss(iss)
    except UnknownIssuer:
        audit_refusal(action="smart.launch", reason="unknown_iss")
        raise
    if not launch or len(launch) > MAX_LAUNCH_TOKEN:
        audit_refusal(action="smart.launch", reason="launch_missing", site=site.iss)
        raise LaunchInvalid("The EHR did not send a launch context. Please launch the app from the EHR.")
    config = discover(site)
    record = Launch.objects.create(
        site=site,
        browser_key=_browser_key(session),
        state=secrets.token_urlsafe(32),  # 256 bits
        code_verifier=generate_token(64),
        nonce=secrets.token_urlsafe(24),
        launch_token=launch,
        expires_at=timezone.now() + timedelta(seconds=settings.LAUNCH_TTL),
    )
    client = oauth_session(site, redirect_uri=redirect_uri(), scope=site.scopes)
    params = {"launch": launch, "aud": site.iss, "nonce": record.nonce}
    url, _ = client.create_authorization_url(
        config["authorization_endpoint"], state=record.state, code_verifier=record.code_verifier, **params
    )
    method = "POST" if site.quirks.get("authorize_post") else "GET"
    query = dict(parse_qsl(urlsplit(url).query))
    return record, AuthorizeRequest(url=url, endpoint=config["authorization_endpoint"], params=query, method=method)


def _state_refused(code: str, record: Launch | None = None) -> LaunchInvalid:
    """Audit a refused ``state`` (aggregated ``smart.launch`` row, ``audit_refusal``) and return the error."""
    audit_refusal(
        action="smart.launch",
        reason=code,
        site=record.site.iss if record is not None else "",
        target=f"Launch/{record.pk}" if record is not None else "",
    )
    return LaunchInvalid(code=code)


def _claim_state(state: str, session: Any) -> Launch:
    if not state or len(state) > 100:
        raise _state_refused("state_missing")
    record = Launch.objects.select_related("site").filter(state=state).first()
    if record is None:
        raise _state_refused("state_unknown")
    if not secrets.compare_digest(record.browser_key, _browser_key(session)):
        raise _state_refused("state_foreign", record)
    claimed = Launch.objects.filter(pk=record.pk, state_used_at__isnull=True).update(state_used_at=timezone.now())
    if claimed != 1:
        raise _state_refused("state_replayed", record)
    if record.expires_at <= timezone.now():
        raise _state_refused("launch_expired", record)
    return record


def _fail(record: Launch, code: str) -> None:
    record.status, record.error_code = Launch.Status.FAILED, code[:80]
    record.save(update_fields=["status", "error_code", "updated_at"])


def _setup_error(record: Launch, code: str) -> EHRSetupError:
    """Return the ``EHRSetupError`` for ``code`` with a reference IT can find in the logs: this request's id (a new
    one outside a request), logged here with the launch and the site."""
    reference = request_id() or new_request_id()
    logger.warning(
        "Launch %s: site %s refused the app's set-up (%s), reference %s", record.pk, record.site.pk, code, reference
    )
    return EHRSetupError(code=code, reference=reference)


def _temporary(code: str) -> AuthorizationFailed:
    """Return the ``AuthorizationFailed`` for an EHR that is busy or failing for now (``TEMPORARY_ERRORS``)."""
    error = AuthorizationFailed(
        "The EHR could not complete this launch just now. Please try again in a moment: launch the app again "
        "from the EHR.",
        code=code,
    )
    error.temporary = True
    return error


def _exchange(record: Launch, code: str) -> dict[str, Any]:
    """Exchange ``code`` for the token response; the site's JWKS (for the id_token) is fetched at the same time when
    it is not cached yet (``idtoken.jwks_warm``), so a site's first launch takes no extra round for it."""
    site = record.site
    config = discover(site)
    client = oauth_session(site, redirect_uri=redirect_uri())
    warm = None
    if "openid" in site.scopes.split():
        warm = _BESIDE.submit(contextvars.copy_context().run, jwks_warm, site)
    try:
        token = client.fetch_token(
            config["token_endpoint"], grant_type="authorization_code", code=code, code_verifier=record.code_verifier
        )
    except OAuthError as exc:
        known = exc.error in OAUTH_ERRORS | {"invalid_grant", "invalid_client"}
        code = f"token_{exc.error}" if known else "token_error"
        if exc.error in SETUP_ERRORS:
            raise _setup_error(record, code) from exc
        if exc.error in TEMPORARY_ERRORS:
            raise _temporary(code) from exc
        raise AuthorizationFailed(code=code) from exc
    except (RequestException, ValueError) as exc:
        message = "The EHR's token service could not be reached. Please launch again."
        raise AuthorizationFailed(message, code="token_unreachable") from exc
    finally:
        if warm is not None:
            wait([warm], timeout=sum(settings.HTTP_TIMEOUT))  # so the id_token check finds the keys cached
    return dict(token)


TOKEN_FIELDS = (
    "access_token", "refresh_token", "token_expires_at", "scope_granted", "patient_id", "encounter_id", "fhir_user",
    "fhir_context", "app_context", "need_patient_banner", "smart_style_url", "status",
)  # fmt: skip
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatype "id"
MAX_CONTEXT_ITEMS = 20
MAX_APP_CONTEXT = 4096  # characters of a CDS Hooks ``appContext`` kept; a longer one is dropped
DEFAULT_TOKEN_LIFETIME = 3600  # seconds, when the EHR omits expires_in


def _fhir_id(value: Any, name: str, *, required: bool) -> str:
    """Return ``value`` when it is a FHIR id string; refuse the launch otherwise (SMART 2.2 launch context)."""
    if value is None or value == "":
        if required:
            raise AuthorizationFailed("The EHR did not share a patient with this launch.", code=f"no_{name}_context")
        return ""
    if not isinstance(value, str) or not FHIR_ID.fullmatch(value):
        raise AuthorizationFailed(f"The EHR sent a {name} context this app cannot use.", code=f"{name}_context_invalid")
    return value


def _banner(value: Any) -> bool:
    """Read ``need_patient_banner``: a JSON boolean, or the strings "true"/"false" some EHRs send; default True."""
    if isinstance(value, bool):
        return value
    return not (isinstance(value, str) and value.strip().lower() == "false")


def _lifetime(value: Any) -> int:
    """Return ``expires_in`` (seconds) as a positive int, or the default for a missing or odd value."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME
    return seconds if 0 < seconds <= 86400 else DEFAULT_TOKEN_LIFETIME


def _fhir_context(value: Any) -> list[dict[str, str]]:
    """Keep the ``fhirContext`` items that carry a string ``reference`` (SMART 2.2 "fhirContext"); drop the rest."""
    if not isinstance(value, list):
        return []
    kept = [
        {"reference": item["reference"][:300]}
        for item in value[:MAX_CONTEXT_ITEMS]
        if isinstance(item, dict) and isinstance(item.get("reference"), str)
    ]
    return kept


def _app_context(value: Any) -> str:
    """Keep ``appContext`` (CDS Hooks 2.0 "Link": a string the SMART app recognizes, returned in the token
    response) when it is a string of at most ``MAX_APP_CONTEXT`` characters; drop anything else."""
    if isinstance(value, str) and len(value) <= MAX_APP_CONTEXT:
        return value
    if value is not None:
        logger.warning("appContext dropped: not a string of at most %d characters", MAX_APP_CONTEXT)
    return ""


def _identity(record: Launch, token: dict[str, Any]) -> str:
    """Return ``fhirUser``: from the validated id_token when ``openid`` was requested (SMART 2.2 "Scopes for
    requesting identity data"); a token response without an id_token then fails the launch."""
    if "openid" in record.site.scopes.split():
        if not isinstance(token.get("id_token"), str) or not token["id_token"]:
            raise AuthorizationFailed(
                "The EHR did not confirm who you are (no identity token). Please launch the app again.",
                code="id_token_missing",
            )
        claims = id_token_validate(record.site, token["id_token"], nonce=record.nonce)
        user = claims.get("fhirUser")
    else:
        user = token.get("fhirUser")
    return user[:500] if isinstance(user, str) else ""


def _apply_token(record: Launch, token: dict[str, Any]) -> None:
    """Copy a token response (SMART 2.2 "Response to the access token request") onto ``record``, type-checking
    every launch context value. Raises ``AuthorizationFailed`` for a missing or unusable token or patient."""
    if not isinstance(token.get("access_token"), str) or str(token.get("token_type", "")).lower() != "bearer":
        raise AuthorizationFailed(code="token_malformed")
    record.patient_id = _fhir_id(token.get("patient"), "patient", required=True)
    record.encounter_id = _fhir_id(token.get("encounter"), "encounter", required=False)
    record.fhir_user = _identity(record, token)
    record.access_token = token["access_token"]
    refresh = token.get("refresh_token")
    record.refresh_token = refresh if isinstance(refresh, str) else ""
    record.token_expires_at = timezone.now() + timedelta(seconds=_lifetime(token.get("expires_in")))
    scope = token.get("scope")
    record.scope_granted = scope if isinstance(scope, str) else ""
    record.fhir_context = _fhir_context(token.get("fhirContext"))
    record.app_context = _app_context(token.get("appContext"))
    record.need_patient_banner = _banner(token.get("need_patient_banner", True))
    style = token.get("smart_style_url")
    record.smart_style_url = style if isinstance(style, str) and len(style) <= 500 else ""
    record.status = Launch.Status.ACTIVE


def launch_complete(*, params: dict[str, str], session: Any) -> Launch:
    """Finish the launch at the redirect URI: validate ``state``, exchange the code, validate the id_token.

    ``params`` is the callback's query. Returns the active ``Launch`` and records it in the session.
    Renews the session id once the state check passes (session fixation), keeping the session's data.
    Raises ``LaunchInvalid`` (state missing, unknown, foreign, replayed, expired; audited aggregated, see
    ``_state_refused``) or ``AuthorizationFailed`` (an ``error`` from the EHR, a failed exchange, an invalid
    id_token, no patient context; one ``smart.launch`` row with the code), ``EHRSetupError`` (a subclass) when the
    error says this app's registration or configuration at the EHR is wrong (``SETUP_ERRORS``).
    """
    record = _claim_state(params.get("state", ""), session)
    # The state check passed: renew the session id (as the patient and admin logins do), keeping its data (the
    # browser binding and the launches this browser already owned), so a session id planted before the launch
    # (session fixation, OWASP ASVS 3.2.1) never reaches this launch's pages.
    session.cycle_key()
    try:
        if params.get("error"):
            error = params["error"] if params["error"] in OAUTH_ERRORS else "error"
            if error in SETUP_ERRORS:
                raise _setup_error(record, f"authorize_{error}")
            if error in TEMPORARY_ERRORS:
                raise _temporary(f"authorize_{error}")
            raise AuthorizationFailed(code=f"authorize_{error}")
        if not params.get("code"):
            raise AuthorizationFailed(code="code_missing")
        _apply_token(record, _exchange(record, params["code"]))
    except AuthorizationFailed as exc:
        _fail(record, exc.code)
        audit_record(
            actor="unknown",
            action="smart.launch",
            target=f"Launch/{record.pk}",
            where=record.site.iss,
            outcome=exc.code,
            site=record.site.iss,
            launch_id=record.pk,
        )
        raise
    record.save(update_fields=[*TOKEN_FIELDS, "updated_at"])
    # What the EHR granted, for the readiness check: one statement, only when it differs from what the site row
    # said when this launch's state was claimed (and then only if it still differs).
    if record.site.scopes_granted != record.scope_granted:
        EHRSite.objects.filter(pk=record.site_id).exclude(scopes_granted=record.scope_granted).update(
            scopes_granted=record.scope_granted
        )
    session[SESSION_LAUNCHES] = [*session.get(SESSION_LAUNCHES, [])[-19:], str(record.pk)]
    missing = scopes_missing(requested=record.site.scopes, granted=record.scope_granted)
    if missing:
        logger.warning("Launch %s: site %s did not grant %s", record.pk, record.site.pk, " ".join(missing))
    audit_record(
        actor=record.fhir_user or "unknown",
        action="smart.launch",
        target=f"Patient/{record.patient_id}",
        where=record.site.iss,
        detail={"scopes_not_granted": missing} if missing else None,
        site=record.site.iss,
        launch_id=record.pk,
    )
    return record


V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"(patient|user|system)/([a-z*]+)\.([a-z*]+)(\?.*)?")


def _scope_parts(scope: str) -> tuple[str, str, str, frozenset[str]] | None:
    """Parse a resource scope: ``patient/DeviceRequest.rs`` (v2) or ``.read`` (v1) -> (context, type, query,
    permissions), lower case; None for any other scope (``launch``, ``openid``). SMART App Launch 2.2 section 3
    "Scopes for requesting clinical data" (v1 ``read`` is v2 ``rs``, ``write`` is ``cud``)."""
    match = _RESOURCE_SCOPE.fullmatch(scope.lower())
    if match is None:
        return None
    context, resource, permissions, query = match.groups()
    permissions = V1_PERMISSIONS.get(permissions, permissions)
    if not permissions or not set(permissions) <= set("cruds"):
        return None
    return context, resource, query or "", frozenset(permissions)


def scopes_missing(*, requested: str, granted: str) -> list[str]:
    """Return the scopes of ``requested`` that ``granted`` does not cover (both space-separated strings).

    Epic mixes case and v1/v2 syntax, so scopes compare by meaning: ``patient/*.read`` covers every requested
    ``patient/<Type>.rs``, ``system/Communication.write`` covers ``system/Communication.c``, and several granted
    scopes for one type add up (``.r`` plus ``.s`` covers ``.rs``). A granted scope with a query
    (``?category=...``) covers only the same query. Non-resource scopes compare case-insensitively.
    """
    plain = {s.lower() for s in granted.split()}
    have = [p for p in map(_scope_parts, granted.split()) if p is not None]
    missing = []
    for wanted in requested.split():
        parts = _scope_parts(wanted)
        if parts is None:
            if wanted.lower() not in plain:
                missing.append(wanted)
            continue
        context, resource, query, permissions = parts
        covered: set[str] = set()
        for g_context, g_resource, g_query, g_permissions in have:
            if g_context == context and g_resource in (resource, "*") and g_query in ("", query):
                covered |= g_permissions
        if not permissions <= covered:
            missing.append(wanted)
    return missing


def launch_access(*, launch_id: Any, session: Any) -> Launch:
    """Return the active, unexpired launch ``launch_id`` if this browser session owns it.

    The one access helper for clinician pages (Zulip's ``access_*`` pattern): missing, foreign, failed and
    expired launches all raise ``NotFound`` with the same message.
    """
    if str(launch_id) not in session.get(SESSION_LAUNCHES, []):
        raise NotFound("This launch is not available. Please launch the app again from the EHR.")
    record = Launch.objects.select_related("site").filter(pk=launch_id, status=Launch.Status.ACTIVE).first()
    if record is None or record.expires_at <= timezone.now():
        raise NotFound("This launch has ended. Please launch the app again from the EHR.")
    return record


@dataclass(frozen=True)
class PurgeReport:
    """What ``launches_purge`` deleted: ``launches`` (rows) and ``sessions`` (expired Django sessions)."""

    launches: int
    sessions: int


@transaction.atomic
def launch_tokens_clear() -> int:
    """Clear the OAuth tokens a launch no longer needs; return how many launches were cleared.

    Two UPDATEs: every launch that has expired and still holds a token (``token_expires_at`` set) loses both
    tokens and ``token_expires_at``; every live launch whose access token has expired loses the access token (the
    refresh token, when the site granted one, stays for "Re-read from the EHR"), and its ``token_expires_at``
    moves to the launch's own expiry so the first UPDATE clears the rest then. The access token is otherwise
    kept (encrypted) for its lifetime, so a re-read works while it lives. One ``retention.purge`` audit row with
    the counts when any was cleared (issue 9 "Retention"). Run every 10 minutes by beat
    (``healthcommerce.ehr.tasks.clear_tokens``); idempotent."""
    now = timezone.now()
    cleared = Launch.objects.filter(expires_at__lte=now, token_expires_at__isnull=False).update(
        access_token="", refresh_token="", token_expires_at=None, updated_at=now
    )
    expired_access = Launch.objects.filter(expires_at__gt=now, token_expires_at__lte=now).update(
        access_token="", token_expires_at=F("expires_at"), updated_at=now
    )
    if cleared or expired_access:
        audit_retention(target="Launch.tokens", counts={"launches": cleared, "access_tokens": expired_access})
        logger.info(
            "retention: cleared the tokens of %d launch(es), %d expired access token(s)", cleared, expired_access
        )
    return cleared + expired_access


def launches_purge() -> PurgeReport:
    """Delete launches that expired more than ``LAUNCH_RETENTION_HOURS`` ago (with their state, PKCE verifier and
    tokens; orders keep their data, their ``launch`` becomes empty) and expired sessions; one ``retention.purge``
    audit row with the counts (issue 9 "Retention": launches and sessions). Run daily by beat
    (``healthcommerce.ehr.tasks.purge``); idempotent."""
    cutoff = timezone.now() - timedelta(hours=settings.LAUNCH_RETENTION_HOURS)
    _, deleted = Launch.objects.filter(expires_at__lt=cutoff).delete()
    launches = deleted.get(Launch._meta.label, 0)
    sessions = 0
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        from django.contrib.sessions.models import Session

        _, deleted = Session.objects.filter(expire_date__lt=timezone.now()).delete()
        sessions = deleted.get(Session._meta.label, 0)
    else:  # a cache or cookie session engine expires its own sessions
        import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    audit_retention(
        target="Launch",
        counts={"launches": launches, "sessions": sessions, "retention_hours": settings.LAUNCH_RETENTION_HOURS},
    )
    if launches or sessions:
        logger.info("retention: purged %d launch(es) and %d session(s)", launches, sessions)
    return PurgeReport(launches=launches, sessions=sessions)
