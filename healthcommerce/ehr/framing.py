"""Framing inside the EHR: per-site ``Content-Security-Policy`` and cross-site cookies on clinician pages.

Epic (and other EHRs) show a SMART app in an ``<iframe>`` of the EHR's own page. The clinician pages
(``/smart/...`` and ``/o/...``) may be framed only by the origins registered on the launch's site
(``EHRSite.frame_origins``); every other page sends ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``.
A framed page lives on another site than the EHR's top-level page, so its session and CSRF cookies must be
``SameSite=None; Secure`` (RFC 6265bis section 5.4.7) to reach the app at all; that happens only over https.
They are also ``Partitioned`` (CHIPS): browsers that block third-party cookies (Safari, incognito windows,
the Debian Chromium the browser tests use) still keep a partitioned cookie, keyed by the EHR's top-level
site, and a whole launch (launch, callback, order pages) stays inside that one EHR frame.

Sources: CSP Level 3 "frame-ancestors" and "form-action"; SMART App Launch 2.2 "EHR Launch"; ADR 0005.
"""

import re
from collections.abc import Mapping
from http.cookies import Morsel
from typing import Any
from urllib.parse import urlsplit

from csp.constants import NONE, SELF
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase

from healthcommerce.ehr.models import EHRSite, Launch

# Paths of the clinician pages, the only ones an EHR may frame.
CLINICIAN_PREFIXES = ("/smart/", "/o/")
# ``scheme://host[:port]``: nothing that could end a CSP source list (space, ``;``, ``,``, quotes), no wildcard.
_ORIGIN = re.compile(r"^https?://(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[::1\])(?::\d{1,5})?$")
_MAX_ORIGINS = 20


def clean_origins(values: Any) -> list[str]:
    """Return the valid origins in ``values`` (an ``EHRSite.frame_origins`` JSON value), lower-cased, in order.

    An origin is ``http(s)://host[:port]`` without path, wildcard or quotes; anything else is dropped, so a bad
    admin entry can only narrow the policy, never inject a directive. At most 20 are kept.
    """
    if not isinstance(values, list):
        return []
    found: list[str] = []
    for value in values:
        origin = str(value).strip().rstrip("/").lower() if isinstance(value, str) else ""
        if _ORIGIN.match(origin) and origin not in found:
            found.append(origin)
    return found[:_MAX_ORIGINS]


def _http_origin(url: Any) -> str:
    """Return ``scheme://host[:port]`` of an http(s) URL, or ``""``."""
    if not isinstance(url, str):
        return ""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return origin if parts.scheme in ("http", "https") and _ORIGIN.match(origin) else ""


def framing_site(request: HttpRequest, site: EHRSite) -> None:
    """Tell the framing rules which site this clinician request belongs to, when the view has already loaded it
    (``launch_access``, ``launch_start``, ``launch_complete``): the response then needs no query for it."""
    request._hc_site = site  # type: ignore[attr-defined]


def _site_fields(request: HttpRequest) -> Mapping[str, Any] | None:
    """Return ``frame_origins`` (and ``discovery`` for ``/smart/launch``) of the site this clinician request
    belongs to: the one the view named (``framing_site``), else with one query; ``None`` for other pages and
    unknown or inactive sites.

    The site comes from the URL's ``launch_id`` (``/o/<launch_id>/...``), ``iss`` (``/smart/launch``) or
    ``state`` (``/smart/callback``). Ownership of the launch is not checked here: the view does that
    (``launch_access``), and knowing which EHR may frame a launch tells nothing about it.
    """
    known = getattr(request, "_hc_site", None)
    if known is not None:
        return {"frame_origins": known.frame_origins, "discovery": known.discovery} if known.is_active else None
    launch_id = getattr(request, "_hc_launch_id", None)
    sites = EHRSite.objects.filter(is_active=True)
    try:
        if launch_id is not None:
            return sites.filter(launches__pk=launch_id).values("frame_origins").first()
        if request.path_info == "/smart/launch":
            iss = request.GET.get("iss", "").rstrip("/")
            if not iss or len(iss) > 500:
                return None
            return sites.filter(iss__in=[iss, iss + "/"]).values("frame_origins", "discovery").first()
        if request.path_info == "/smart/callback":
            state = request.GET.get("state", "")
            if not state or len(state) > 100:
                return None
            site_id = Launch.objects.filter(state=state).values("site_id")
            return sites.filter(pk__in=site_id).values("frame_origins").first()
    except (ValidationError, ValueError):  # a launch id that is not a UUID
        return None
    return None


class PartitionedMorsel(Morsel):  # type: ignore[type-arg]
    """A cookie that is also ``Partitioned`` (CHIPS, draft-cutler-httpbis-partitioned-cookies); Python's
    ``Morsel`` knows the attribute only from 3.14 on, and Django 5.2's ``set_cookie`` not at all."""

    def OutputString(self, attrs: Any = None) -> str:
        """Return the ``Set-Cookie`` value with ``; Partitioned`` at the end."""
        return f"{super().OutputString(attrs)}; Partitioned"


def cross_site_cookie(morsel: Morsel) -> PartitionedMorsel:  # type: ignore[type-arg]
    """Return a copy of ``morsel`` that is ``SameSite=None; Secure; Partitioned`` (for https responses only)."""
    cookie = PartitionedMorsel()
    cookie.set(morsel.key, morsel.value, morsel.coded_value)
    cookie.update(morsel)
    cookie["samesite"] = "None"
    cookie["secure"] = True
    return cookie


class FramingMiddleware(CSPMiddleware):
    """django-csp's middleware with the clinician pages' framing rules; replaces ``csp.middleware.CSPMiddleware``.

    For every response: the ``CONTENT_SECURITY_POLICY`` setting, with ``frame-ancestors`` set to the site's
    ``frame_origins`` on clinician pages of a framed site (``'none'`` everywhere else), and ``form-action``
    widened on ``/smart/launch`` to the EHR's authorization endpoint (the Epic-style POSTed authorize request,
    ``templates/ehr/authorize_post.html``). On a framed clinician response it also marks the response exempt
    from ``XFrameOptionsMiddleware`` (which must come before this one in ``MIDDLEWARE``) and, over https only,
    rewrites the session and CSRF cookies to ``SameSite=None; Secure; Partitioned`` (it must come before
    ``SessionMiddleware`` and ``CsrfViewMiddleware`` to see their ``Set-Cookie``). Plain http keeps ``Lax``.
    A view's own ``csp_replace`` wins over these rules.
    """

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: dict[str, Any]) -> None:
        """Remember the ``launch_id`` URL argument of a clinician page (needs no query here)."""
        if request.path_info.startswith(CLINICIAN_PREFIXES) and "launch_id" in view_kwargs:
            request._hc_launch_id = view_kwargs["launch_id"]  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Apply the framing rules (see the class), then django-csp's header."""
        site = _site_fields(request) if request.path_info.startswith(CLINICIAN_PREFIXES) else None
        origins = clean_origins(site["frame_origins"]) if site else []
        form_action = [SELF]
        if site and request.path_info == "/smart/launch":
            discovery = site.get("discovery")
            endpoint = _http_origin(discovery.get("authorization_endpoint")) if isinstance(discovery, dict) else ""
            if endpoint:
                form_action.append(endpoint)
        request._hc_framing = {"frame-ancestors": origins or [NONE], "form-action": form_action}  # type: ignore[attr-defined]
        if origins:
            response.xframe_options_exempt = True  # type: ignore[attr-defined]
            if request.is_secure():
                for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                    if name in response.cookies:
                        response.cookies[name] = cross_site_cookie(response.cookies[name])
        return super().process_response(request, response)

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        """Return django-csp's policy parts with this request's ``frame-ancestors`` and ``form-action``."""
        parts = super().get_policy_parts(request, response, report_only)
        framing = getattr(request, "_hc_framing", None)
        if framing and not report_only:
            parts.replace = framing | (parts.replace or {})
        return parts
