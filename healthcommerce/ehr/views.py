"""SMART launch endpoints: ``/smart/launch`` (EHR launch), ``/smart/callback`` (redirect URI), the EHR's
style for a launch, ``/smart/style/<launch id>.css``, and our public keys, ``/.well-known/jwks.json``."""

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_ratelimit.core import is_ratelimited

from healthcommerce.core.clientip import client_ip
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.metrics import integration
from healthcommerce.core.views import render_error
from healthcommerce.ehr.errors import EHRSetupError, LaunchThrottled
from healthcommerce.ehr.framing import framing_site
from healthcommerce.ehr.keys import published_jwks
from healthcommerce.ehr.oauth import site_label
from healthcommerce.ehr.services import launch_access, launch_complete, launch_start
from healthcommerce.ehr.style import smart_style_properties, style_sheet

logger = logging.getLogger(__name__)


def _launch_throttled(request: HttpRequest) -> bool:
    """Count this launch against its client address; ``True`` when the address is over ``LAUNCH_RATE_LIMIT``
    (``"<count>/<period>"``, e.g. ``300/m``; empty turns the throttle off)."""
    if not settings.LAUNCH_RATE_LIMIT:
        return False
    return is_ratelimited(
        request,
        group="smart.launch",
        key=lambda _group, req: client_ip(req),
        rate=settings.LAUNCH_RATE_LIMIT,
        increment=True,
    )


@never_cache
@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    """EHR launch (SMART App Launch 2.2 "EHR Launch"): ``?iss=<FHIR base>&launch=<opaque>``.

    Answers 429 (with ``Retry-After``) past ``LAUNCH_RATE_LIMIT`` launches from one client address (the
    trusted-proxy client IP, counted in the shared cache by django-ratelimit) before any row is written, 400 for
    an unknown ``iss`` without contacting it, 502 when discovery fails; otherwise sends the browser to the EHR's
    authorization endpoint (302, or an auto-submitted POST for sites that want it).
    """
    if _launch_throttled(request):
        logger.warning("SMART launch throttled: over %s from one address", settings.LAUNCH_RATE_LIMIT)
        response = render_error(request, LaunchThrottled(), title="The app could not start")
        response["Retry-After"] = "60"
        return response
    try:
        record, authorize = launch_start(
            iss=request.GET.get("iss", ""), launch=request.GET.get("launch", ""), session=request.session
        )
        framing_site(request, record.site)
    except HealthcommerceError as exc:
        logger.info("SMART launch refused: %s", exc.code)
        return render_error(request, exc, title="The app could not start")
    if authorize.method == "POST":
        return render(request, "ehr/authorize_post.html", {"authorize": authorize})
    return HttpResponseRedirect(authorize.url)


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Redirect URI (SMART App Launch 2.2 "Obtain authorization code" and "Obtain access token").

    On success redirects to the launch's order page ``/o/<launch id>/`` (under a renewed session id); every
    failure gets a clear page: a set-up problem at the EHR (``EHRSetupError``) names it as one for the hospital's
    IT, with a reference to quote.
    """
    try:
        record = launch_complete(params=request.GET.dict(), session=request.session)
        framing_site(request, record.site)
    except EHRSetupError as exc:
        logger.warning("SMART callback refused: %s (the EHR's set-up; reference %s)", exc.code, exc.reference)
        return render_error(request, exc, title="The app is not set up correctly for this EHR")
    except HealthcommerceError as exc:
        logger.info("SMART callback refused: %s", exc.code)
        return render_error(request, exc, title="The app could not start")
    return HttpResponseRedirect(reverse("orders:launch", kwargs={"launch_id": record.pk}))


@require_GET
def launch_style(request: HttpRequest, launch_id: Any) -> HttpResponse:
    """The EHR's look as a style sheet for one launch: ``/smart/style/<launch id>.css`` (``text/css``).

    SMART App Launch 2.2 "Styling": CSS custom properties from the launch's ``smart_style_url``
    (``healthcommerce.ehr.style``), linked from ``templates/base.html`` after ``app.css``. Checked with
    ``launch_access`` (docs/style.md 5); a launch that is not this browser's gets an empty 404 style sheet, a
    style document that cannot be used an empty one: never an error page.
    """
    try:
        record = launch_access(launch_id=launch_id, session=request.session)
    except HealthcommerceError:
        return HttpResponse("/* not available */\n", status=404, content_type="text/css; charset=utf-8")
    with integration(site=site_label(record.site)):
        properties = smart_style_properties(record.smart_style_url)
    response = HttpResponse(style_sheet(properties), content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "private, max-age=300"
    return response


@require_GET
def jwks(request: HttpRequest) -> HttpResponse:
    """Serve our public signing keys as a JWK Set (RFC 7517), no authentication: the URL registered with each EHR
    as our JWKS URL and sent as ``jku`` (SMART App Launch 2.2 "Client Authentication: Asymmetric"). Cacheable for
    an hour; rotation publishes a key well before it signs (``ehr.keys``)."""
    response = JsonResponse(published_jwks())
    response["Cache-Control"] = "public, max-age=3600"
    return response
