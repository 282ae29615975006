"""HTTP endpoints of the sandbox EHR: the EHR page and launch, SMART discovery, OAuth and the FHIR API.

Views parse input and call ``authserver``, ``fhirapi``, ``selectors`` and ``services``; every absolute URL comes
from the incoming request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from csp.constants import SELF
from csp.decorators import csp_replace
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from healthcommerce.sandbox import (
    authserver,
    cdsclient,
    clearinghouse,
    discovery,
    fhirapi,
    fhirwrite,
    hl7send,
    keys,
    notify,
    selectors,
)
from healthcommerce.sandbox.errors import FhirBadRequest, FhirError, FhirFault, LaunchError
from healthcommerce.sandbox.models import FaultKind
from healthcommerce.sandbox.services import sandbox_fault_take, sandbox_launch_create

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
DEFAULT_PRACTITIONER = "pra1234"
SMART_STYLE = {
    "color_background": "#f6f7f9",
    "color_error": "#b3261e",
    "color_highlight": "#1f6feb",
    "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
    "color_success": "#1a7f37",
    "color_text": "#1f2328",
    "dim_border_radius": "6px",
    "dim_font_size": "14px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, -apple-system, 'Segoe UI', sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', sans-serif",
}


def _json(data: Any, *, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(json.dumps(data), status=status, content_type=content_type)


def _error_page(request: HttpRequest, title: str, message: str, status: int = 400) -> HttpResponse:
    return render(request, "sandbox/error.html", {"title": title, "message": message}, status=status)


# --- EHR page and launch -------------------------------------------------------------------------------------


@require_GET
def ehr(request: HttpRequest) -> HttpResponse:
    """Show the EHR page: patients (pending orders first), a practitioner picker and launch buttons."""
    practitioners = selectors.practitioners()
    known = {pid for pid, _ in practitioners}
    chosen = request.GET.get("practitioner", DEFAULT_PRACTITIONER)
    if chosen not in known:
        chosen = DEFAULT_PRACTITIONER if DEFAULT_PRACTITIONER in known else next(iter(sorted(known)), "")
    framed = request.GET.get("framed", "") in ("1", "true")
    context = {
        "patients": selectors.ehr_patients(),
        "practitioners": practitioners,
        "practitioner": chosen,
        "framed": framed,
        "launch_view": "sandbox:frame" if framed else "sandbox:launch",
    }
    return render(request, "sandbox/ehr.html", context)


@require_GET
def frame(request: HttpRequest) -> HttpResponse:
    """Show the app inside the EHR, as Epic Hyperspace hosts a SMART app: the EHR's chrome around an
    ``<iframe>`` of ``/sandbox/launch`` with the same ``?patient=&practitioner=[&request=][&app=]``.

    The page's ``frame-src`` allows this host (the launch and authorize steps) and the app's origin; the app
    must list this EHR's origin in its site's ``frame_origins`` (CSP ``frame-ancestors``) to show up.
    Answers 400 with an error page for an ``app`` URL on another host.
    """
    urls = discovery.SandboxUrls.from_request(request)
    try:
        app_url = _app_launch_url(request, urls)
    except LaunchError as error:
        return _error_page(request, "Launch refused", error.message)
    keys = ("patient", "practitioner", "request", "app")
    params = {key: request.GET[key] for key in keys if request.GET.get(key)}
    patient_id = params.get("patient", "")
    patient = selectors.resource_get(resource_type="Patient", fhir_id=patient_id) if patient_id else None
    practitioner = params.get("practitioner", DEFAULT_PRACTITIONER)
    context = {
        "src": f"{reverse('sandbox:launch')}?{urlencode(params)}",
        "patient_id": patient_id,
        "patient_name": selectors.human_name(patient.data) if patient else "",
        "back": f"{reverse('sandbox:ehr')}?{urlencode({'practitioner': practitioner, 'framed': '1'})}",
    }
    response = render(request, "sandbox/frame.html", context)
    app = urlsplit(app_url)
    # django-csp reads this attribute, as its csp_replace decorator sets it (the app's origin is per request).
    response._csp_replace = {"frame-src": [SELF, f"{app.scheme}://{app.netloc}"]}  # type: ignore[attr-defined]
    return response


def _app_launch_url(request: HttpRequest, urls: discovery.SandboxUrls) -> str:
    """Return the app's launch URL: ``?app=`` on this host, else ``SANDBOX_APP_LAUNCH_URL``, else
    ``{origin}/smart/launch``. Raises ``LaunchError`` for an ``app`` URL on another host (no open redirect)."""
    app = request.GET.get("app", "")
    if app:
        parts = urlsplit(app)
        if parts.scheme not in ("http", "https") or parts.netloc != request.get_host():
            raise LaunchError("The app launch URL must be on this host.")
        return app
    return str(getattr(settings, "SANDBOX_APP_LAUNCH_URL", "") or f"{urls.origin}/smart/launch")


@xframe_options_sameorigin
@csp_replace({"frame-ancestors": [SELF]})  # shown inside the EHR's own frame page (``frame``)
@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    """Create a one-time launch for ``?patient=&practitioner=[&request=Type/id]`` and redirect to the app with
    ``iss`` and ``launch`` (SMART 2.2 "EHR Launch"). Answers 400 with an error page for a bad context."""
    urls = discovery.SandboxUrls.from_request(request)
    try:
        app_url = _app_launch_url(request, urls)
        created = sandbox_launch_create(
            patient_id=request.GET.get("patient", ""),
            practitioner_id=request.GET.get("practitioner", DEFAULT_PRACTITIONER),
            request_ref=request.GET.get("request", ""),
        )
    except LaunchError as error:
        return _error_page(request, "Launch refused", error.message)
    separator = "&" if urlsplit(app_url).query else "?"
    return HttpResponseRedirect(f"{app_url}{separator}{urlencode({'iss': urls.fhir_base, 'launch': created.value})}")


@require_GET
def cds(request: HttpRequest) -> HttpResponse:
    """The draft-order page of the EHR as a CDS Hooks client: ``?patient=&practitioner=`` lists the patient's pending
    requests to pick as a draft order; with ``&order=<Type>/<id>&hook=order-select|order-sign`` the EHR calls the
    CDS service (``cdsclient.cds_hook_call``) and shows its cards, each SMART link going to ``cds_launch``.
    ``&format=json`` answers ``{"service_url", "status", "cards", "error"}`` instead (for tests and scripts).
    Answers 400 with an error page for an unknown patient, request or hook."""
    urls = discovery.SandboxUrls.from_request(request)
    patient = selectors.patient_row(request.GET.get("patient", ""))
    practitioner = request.GET.get("practitioner", DEFAULT_PRACTITIONER)
    order, hook = request.GET.get("order", ""), request.GET.get("hook", "order-select")
    if patient is None:
        return _error_page(request, "Draft order", "Unknown patient.")
    result = None
    if order:
        try:
            result = cdsclient.cds_hook_call(
                hook=hook, patient_id=patient.id, practitioner_id=practitioner, order_ref=order, urls=urls
            )
        except LaunchError as error:
            return _error_page(request, "Draft order", error.message)
    if request.GET.get("format") == "json" and result is not None:
        return _json(
            {"service_url": result.service_url, "status": result.status, "cards": result.cards, "error": result.error}
        )
    context = {
        "patient": patient,
        "practitioner": practitioner,
        "order": order,
        "hook": hook,
        "hooks": cdsclient.HOOKS,
        "result": result,
        "cards": _cards_shown(result.cards if result else []),
    }
    return render(request, "sandbox/cds.html", context)


def _cards_shown(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the cards as the page shows them: text fields as strings, and only links of type ``smart`` (launched
    through ``cds_launch``) or ``absolute`` with an http(s) URL."""
    shown = []
    for card in cards:
        source = card.get("source")
        source = source if isinstance(source, dict) else {}
        shown.append(
            {
                "summary": str(card.get("summary") or ""),
                "detail": str(card.get("detail") or ""),
                "indicator": str(card.get("indicator") or "info"),
                "source": str(source.get("label") or ""),
                "links": [item for link in card.get("links") or [] if (item := _link_shown(link)) is not None],
            }
        )
    return shown


def _link_shown(link: Any) -> dict[str, str] | None:
    """Return a card's link as the page shows it, or None for one it does not show (not an object, no string
    ``url``, or neither ``smart`` nor ``absolute`` with an http(s) URL)."""
    if not isinstance(link, dict) or not isinstance(link.get("url"), str):
        return None
    kind = link.get("type")
    if not (kind == "smart" or (kind == "absolute" and urlsplit(link["url"]).scheme in ("http", "https"))):
        return None
    app_context = link.get("appContext")
    return {
        "label": str(link.get("label") or link["url"]),
        "url": link["url"],
        "type": kind,
        "app_context": app_context if isinstance(app_context, str) else "",
    }


@require_GET
def cds_launch(request: HttpRequest) -> HttpResponse:
    """Launch a card's SMART link (CDS Hooks 2.0 "Link", type ``smart``): ``?patient=&practitioner=&url=&appContext=``
    creates a one-time launch carrying ``appContext`` (returned with the token) and redirects to ``url`` with
    ``iss`` and ``launch``. As Epic does, only an allowlisted SMART link is launched: ``url`` must be the app's
    launch URL (``SANDBOX_APP_LAUNCH_URL``, else ``/smart/launch`` on this host); anything else answers 400."""
    urls = discovery.SandboxUrls.from_request(request)
    url = request.GET.get("url", "")
    try:
        if url != _app_launch_url(request, urls):
            raise LaunchError("This SMART link is not allowlisted in the EHR.")
        created = sandbox_launch_create(
            patient_id=request.GET.get("patient", ""),
            practitioner_id=request.GET.get("practitioner", DEFAULT_PRACTITIONER),
            app_context=request.GET.get("appContext", ""),
        )
    except LaunchError as error:
        return _error_page(request, "Launch refused", error.message)
    separator = "&" if urlsplit(url).query else "?"
    return HttpResponseRedirect(f"{url}{separator}{urlencode({'iss': urls.fhir_base, 'launch': created.value})}")


@require_POST
def send_hl7(request: HttpRequest) -> HttpResponse:
    """ "Send as HL7": post ``request=<Type>/<id>&practitioner=<id>`` to send that pending request to the app's
    HL7 v2 listener as Epic's outbound order interface would (``hl7send.sandbox_hl7_send``), and show the message
    sent and the ACK received (MSA-1, MSA-2, MSA-3), or why none came. Answers 400 with an error page for a request
    the sandbox does not have."""
    practitioner = request.POST.get("practitioner", DEFAULT_PRACTITIONER)
    try:
        sent = hl7send.sandbox_hl7_send(
            request_ref=request.POST.get("request", ""), practitioner_id=practitioner, now=timezone.now()
        )
    except hl7send.Hl7SendError as error:
        return _error_page(request, "Send as HL7", error.message)
    context = {
        "sent": sent,
        "lines": sent.order.text.strip("\r").split("\r"),
        "ack_lines": sent.ack.text.strip("\r").split("\r") if sent.ack else [],
        "echoed": bool(sent.ack and sent.ack.echoed == sent.order.control_id),
        "target": str(getattr(settings, "SANDBOX_HL7_TARGET", "")),
        "practitioner": practitioner,
    }
    return render(request, "sandbox/send_hl7.html", context)


@require_GET
def smart_style(request: HttpRequest) -> HttpResponse:
    """Serve the ``smart_style_url`` document (SMART 2.2 "Styling")."""
    return _json(SMART_STYLE)


# --- Discovery and OAuth -------------------------------------------------------------------------------------


@require_GET
def smart_configuration(request: HttpRequest) -> HttpResponse:
    """Serve ``.well-known/smart-configuration`` (SMART 2.2 "Conformance")."""
    return _json(discovery.smart_configuration(discovery.SandboxUrls.from_request(request)))


@require_GET
def openid_configuration(request: HttpRequest) -> HttpResponse:
    """Serve ``.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 section 4)."""
    return _json(discovery.openid_configuration(discovery.SandboxUrls.from_request(request)))


@require_GET
def jwks(request: HttpRequest) -> HttpResponse:
    """Serve the sandbox's public signing keys as a JWK Set."""
    return _json(keys.public_jwks())


@xframe_options_sameorigin
@csp_replace({"frame-ancestors": [SELF]})  # its error page shows inside the EHR's frame page (``frame``)
@csrf_exempt
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    """Authorization endpoint (GET or POST, SMART 2.2 "authorize-post"); see ``authserver.authorization_response``.

    Errors that cannot go back to a registered redirect URI show an error page (RFC 6749 section 4.1.2.1).
    """
    try:
        return authserver.authorization_response(request)
    except OAuth2Error as error:
        return _error_page(request, "Authorization refused", error.description or error.error or "Invalid request.")


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """Token endpoint; see ``authserver.token_response``."""
    return authserver.token_response(request)


# --- FHIR API ------------------------------------------------------------------------------------------------


def _fhir(data: dict[str, Any], status: int = 200) -> HttpResponse:
    return _json(data, status=status, content_type=FHIR_JSON)


def _fhir_error(error: FhirError) -> HttpResponse:
    response = _fhir(fhirapi.operation_outcome(error), error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="sandbox", error="invalid_token"'
    return response


def fhir_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer GET only, and turn a ``FhirError`` into its OperationOutcome response."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except FhirError as error:
            return _fhir_error(error)

    return require_GET(wrapper)


def _fault(resource_type: str, *, search: bool, wildcard: bool = True) -> HttpResponse | None:
    """Apply an active ``SandboxFault``: return a broken response, raise ``FhirFault``, or sleep and go on."""
    kind = sandbox_fault_take(resource_type=resource_type, include_wildcard=wildcard)
    if kind is None:
        return None
    log.info("sandbox fault %s on %s", kind, resource_type)
    if kind == FaultKind.TIMEOUT:
        time.sleep(float(getattr(settings, "SANDBOX_TIMEOUT_SLEEP", 15)))
        return None
    if kind == FaultKind.MALFORMED:
        return _fhir(fhirapi.malformed_body(resource_type, search=search))
    if kind == FaultKind.TRUNCATED:
        return HttpResponse(f'{{"resourceType": "{resource_type}", "id": "', content_type=FHIR_JSON)
    raise FhirFault(int(kind))


@fhir_endpoint
def fhir_root(request: HttpRequest) -> HttpResponse:
    """The FHIR base itself: system-level interactions are not supported."""
    raise FhirBadRequest("Use GET {base}/metadata or a resource type.")


@fhir_endpoint
def fhir_metadata(request: HttpRequest) -> HttpResponse:
    """Serve the CapabilityStatement without authentication (FHIR R4 "capabilities"); faults apply only when set
    for ``CapabilityStatement`` explicitly."""
    broken = _fault("CapabilityStatement", search=False, wildcard=False)
    if broken is not None:
        return broken
    urls = discovery.SandboxUrls.from_request(request)
    return _fhir(discovery.capability_statement(urls, fhirapi.stored_resource_types(), fhirwrite.CREATABLE))


@fhir_endpoint
def fhir_type(request: HttpRequest, resource_type: str) -> HttpResponse:
    """Search ``GET {base}/{type}?...`` (see ``fhirapi.fhir_search``)."""
    fhirapi.check_resource_type(resource_type)
    broken = _fault(resource_type, search=True)
    if broken is not None:
        return broken
    caller = fhirapi.caller_for(request.headers.get("Authorization", ""))
    params = {name: request.GET.getlist(name) for name in request.GET}
    fhir_base = discovery.SandboxUrls.from_request(request).fhir_base
    return _fhir(fhirapi.fhir_search(caller=caller, resource_type=resource_type, params=params, fhir_base=fhir_base))


@fhir_endpoint
def fhir_instance(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    """Read ``GET {base}/{type}/{id}`` (see ``fhirapi.fhir_read``)."""
    fhirapi.check_resource_type(resource_type)
    broken = _fault(resource_type, search=False)
    if broken is not None:
        return broken
    caller = fhirapi.caller_for(request.headers.get("Authorization", ""))
    elements = request.GET.getlist(fhirapi.ELEMENTS_PARAM)
    return _fhir(fhirapi.fhir_read(caller=caller, resource_type=resource_type, fhir_id=fhir_id, elements=elements))


@csrf_exempt
@require_http_methods(["GET", "POST"])
def fhir_type_or_create(request: HttpRequest, resource_type: str) -> HttpResponse:
    """``GET {base}/{type}`` searches (``fhir_type``); ``POST {base}/{type}`` creates (``fhir_create``)."""
    if request.method == "POST":
        return fhir_create(request, resource_type)
    return fhir_type(request, resource_type)


def fhir_create(request: HttpRequest, resource_type: str) -> HttpResponse:
    """Create ``POST {base}/{type}`` with a JSON body, optionally conditional on ``If-None-Exist`` (see
    ``fhirwrite.fhir_create``): 201 (or 200 for a conditional match) with ``Location``, ``ETag`` and the resource;
    an OperationOutcome for an error."""
    try:
        fhirapi.check_resource_type(resource_type)
        broken = _fault(resource_type, search=False)
        if broken is not None:
            return broken
        caller = fhirapi.caller_for(request.headers.get("Authorization", ""))
        created = fhirwrite.fhir_create(
            caller=caller,
            resource_type=resource_type,
            body=request.body,
            content_type=request.content_type or "",
            fhir_base=discovery.SandboxUrls.from_request(request).fhir_base,
            if_none_exist=request.headers.get("If-None-Exist", ""),
        )
    except FhirError as error:
        return _fhir_error(error)
    response = _fhir(created.resource, created.status)
    response["Location"] = created.location
    response["ETag"] = f'W/"{created.resource["meta"]["versionId"]}"'
    return response


# --- FHIR Subscriptions: "Send notification" -----------------------------------------------------------------


@require_POST
def send_notification(request: HttpRequest) -> HttpResponse:
    """Post a Subscriptions Backport IG ``event-notification`` (id-only) naming the pending request ``request``
    (``Type/id``, form field) to the subscription's endpoint (``notify.sandbox_notification_send``) and show the
    bundle sent and the answer; ``format=json`` answers ``{"endpoint", "status", "body", "error", "bundle"}``.
    Answers 400 with an error page for an unknown request or when no subscription is set up."""
    urls = discovery.SandboxUrls.from_request(request)
    try:
        result = notify.sandbox_notification_send(request_ref=request.POST.get("request", ""), fhir_base=urls.fhir_base)
    except LaunchError as error:
        return _error_page(request, "Notification not sent", error.message)
    if request.POST.get("format") == "json":
        return _json(
            {
                "endpoint": result.endpoint,
                "status": result.status,
                "body": result.body,
                "error": result.error,
                "bundle": result.bundle,
            }
        )
    context = {
        "result": result,
        "bundle": json.dumps(result.bundle, indent=2),
        "practitioner": request.POST.get("practitioner", DEFAULT_PRACTITIONER),
    }
    return render(request, "sandbox/notify.html", context)


# --- Stand-in clearinghouse: real-time eligibility (270/271) ---------------------------------------------------


def _clearinghouse_key_ok(request: HttpRequest, *, scheme: str) -> bool:
    """Whether ``request`` carries the stand-in's credential (``Authorization: <scheme>sandbox-clearinghouse``)."""
    return request.headers.get("Authorization", "") == f"{scheme}{clearinghouse.SANDBOX_CLEARINGHOUSE_KEY}"


@csrf_exempt
@require_POST
def clearinghouse_x12(request: HttpRequest) -> HttpResponse:
    """A clearinghouse's X12 real-time endpoint: the body is a 270, the answer a 271
    (``clearinghouse.answer_x12``, ``Content-Type: application/EDI-X12``). Answers 401 without
    ``Authorization: Bearer sandbox-clearinghouse``, 400 for a body that is not a 270."""
    if not _clearinghouse_key_ok(request, scheme="Bearer "):
        return HttpResponse("Unauthorized.", status=401, content_type="text/plain")
    status, text = clearinghouse.answer_x12(request.body.decode("utf-8", "replace"))
    content_type = "application/EDI-X12" if status == 200 else "text/plain"
    return HttpResponse(text, status=status, content_type=content_type)


@csrf_exempt
@require_POST
def clearinghouse_eligibility(request: HttpRequest) -> HttpResponse:
    """Stedi's real-time eligibility JSON endpoint (``.../eligibility/v3``), answered by
    ``clearinghouse.answer_json``. Answers 401 without ``Authorization: sandbox-clearinghouse``, 400 for a body
    that is not a JSON eligibility request."""
    if not _clearinghouse_key_ok(request, scheme=""):
        return _json({"message": "Unauthorized."}, status=401)
    try:
        body = json.loads(request.body)
    except ValueError:
        return _json({"errors": [{"code": "33", "description": "Input Errors"}], "status": "ERROR"}, status=400)
    status, answer = clearinghouse.answer_json(body)
    return _json(answer, status=status)
