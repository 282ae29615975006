"""SMART launch endpoints: ``/smart/launch`` (EHR launch) and ``/smart/callback`` (redirect URI)."""

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.views import render_error
from healthcommerce.ehr.services import launch_complete, launch_start

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    """EHR launch (SMART App Launch 2.2 "EHR Launch"): ``?iss=<FHIR base>&launch=<opaque>``.

    Answers 400 for an unknown ``iss`` without contacting it, 502 when discovery fails; otherwise sends
    the browser to the EHR's authorization endpoint (302, or an auto-submitted POST for sites that want it).
    """
    try:
        _record, authorize = launch_start(
            iss=request.GET.get("iss", ""), launch=request.GET.get("launch", ""), session=request.session
        )
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

    On success redirects to the launch's order page ``/o/<launch id>/``; every failure gets a clear page.
    """
    try:
        record = launch_complete(params=request.GET.dict(), session=request.session)
    except HealthcommerceError as exc:
        logger.info("SMART callback refused: %s", exc.code)
        return render_error(request, exc, title="The app could not start")
    return HttpResponseRedirect(reverse("orders:launch", kwargs={"launch_id": record.pk}))
