"""``POST /webhooks/<backend>/``: status events a commerce backend pushes (docs/reliability.md "Status back").

The backend verifies the request (``CommerceBackend.status_events``: signature over the raw body, timestamp
tolerance); ``backends.inbound.inbound_status_report`` deduplicates on the event id and applies it. Answers are
JSON with a code and no PHI: 200 with each event's outcome, 400/401 for a request that will never be accepted,
404 for an unknown backend or order (the sender retries), 413 over 64 KiB, 503 when the backend is not
configured here.
"""

import logging

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import request_body_capped
from healthcommerce.fulfillment.backends.inbound import inbound_status_report
from healthcommerce.fulfillment.backends.registry import backend_names, get_backend

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def _error(code: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code}, status=status)


@csrf_exempt  # a server-to-server call authenticated by its signature, never by a browser cookie
@never_cache
@require_POST
def status_webhook(request: HttpRequest, backend: str) -> JsonResponse:
    """Verify and apply the status events in one webhook request from ``backend``.

    Returns ``{"events": [{"id": <event id>, "outcome": "applied" | "unchanged" | "refused" | "duplicate"}]}``
    (200), or ``{"error": <code>}``. Logs the backend, the code and the event id only.
    """
    if backend not in backend_names():
        return _error("backend_unknown", 404)
    body = request_body_capped(request, MAX_BODY_BYTES)
    if body is None:
        return _error("body_too_large", 413)
    try:
        events = get_backend(backend).status_events(body, request.headers)
    except ImproperlyConfigured:
        logger.warning("status webhook backend=%s refused: backend_unconfigured", backend)
        return _error("backend_unconfigured", 503)
    except HealthcommerceError as exc:
        logger.warning("status webhook backend=%s refused: %s", backend, exc.code)
        return _error(exc.code, exc.status)
    results = []
    for event in events:
        try:
            _, outcome = inbound_status_report(backend=backend, event=event)
        except HealthcommerceError as exc:
            logger.warning("status webhook backend=%s event=%s refused: %s", backend, event.event_id, exc.code)
            return _error(exc.code, exc.status)
        results.append({"id": event.event_id, "outcome": outcome})
    return JsonResponse({"events": results})
