"""CDS Hooks endpoints: ``GET /cds-services`` (discovery) and ``POST /cds-services/<id>`` (a hook call).

Called server to server by the EHR, so CSRF-exempt; every answer is JSON and never cached. Source: CDS Hooks 2.0
"Discovery", "Calling a CDS Service", "CDS Service Response" (HTTP status codes).
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from healthcommerce.cdshooks.errors import CdsTooLarge
from healthcommerce.cdshooks.services import cds_discovery, cds_service_call
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import request_body_capped

MAX_BODY = 256 * 1024  # bytes of a hook request


def _error(error: HealthcommerceError) -> JsonResponse:
    response = JsonResponse({"error": error.code if error.status != 401 else "unauthorized", "message": error.message})
    response.status_code = error.status
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


@never_cache
@require_GET
def discovery(request: HttpRequest) -> JsonResponse:
    """The discovery document: the two services, their hooks and prefetch templates (no PHI, no authentication)."""
    return JsonResponse(cds_discovery())


@never_cache
@csrf_exempt
@require_POST
def service(request: HttpRequest, service_id: str) -> JsonResponse:
    """A hook call (``services.cds_service_call``): 200 ``{"cards": [...]}``; 413 over ``MAX_BODY`` bytes (before
    the JWT is read), 404 for an unknown service, 401 for any refused JWT (one body for every reason), 400 for a
    malformed request, 412 when the required prefetch is missing; 405 for any method but POST."""
    body = request_body_capped(request, MAX_BODY)
    if body is None:
        return _error(CdsTooLarge())
    try:
        cards = cds_service_call(
            service_id=service_id, authorization=request.headers.get("Authorization", ""), body=body
        )
    except HealthcommerceError as exc:
        return _error(exc)
    return JsonResponse(cards)
