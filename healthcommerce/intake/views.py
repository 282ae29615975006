"""HTTP side of the intake: the per-site FHIR notification endpoint (Subscriptions R5 Backport IG, rest-hook).

The EHR posts without a browser session or CSRF token: it authenticates with the site's bearer token
(``intake.notify.notify_token_matches``). Only FHIR JSON is read, at most ``notify.MAX_BODY`` bytes; every answer is
an OperationOutcome (FHIR R4), never a stack trace.
"""

import json
import logging
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from healthcommerce.core.http import request_body_capped
from healthcommerce.intake.notify import MAX_BODY, NotifyAnswer, intake_notification_receive, operation_outcome

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
JSON_TYPES = (FHIR_JSON, "application/json")


def _answer(answer: NotifyAnswer) -> HttpResponse:
    content_type = f"{FHIR_JSON}; charset=utf-8"
    response = HttpResponse(json.dumps(answer.outcome), status=answer.status, content_type=content_type)
    if answer.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="healthcommerce-intake"'
    return response


@csrf_exempt
@require_POST
def fhir_notify(request: HttpRequest, site_id: UUID) -> HttpResponse:
    """``POST /intake/fhir/<site id>/notify``: one Backport IG notification bundle (``application/fhir+json``);
    answered by ``intake.notify.intake_notification_receive`` (200, 400, 401, 404, 413), or 415 for another
    content type."""
    if request.content_type not in JSON_TYPES:
        outcome = operation_outcome("error", "not-supported", f"Send {FHIR_JSON}.")
        return _answer(NotifyAnswer(415, outcome))
    answer = intake_notification_receive(
        site_id=site_id,
        authorization=request.headers.get("Authorization", ""),
        body=request_body_capped(request, MAX_BODY),
    )
    return _answer(answer)
