"""``GET /readyz``: pipeline readiness for monitoring (``fulfillment.health``)."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from healthcommerce.outbox.health import pipeline_alert, pipeline_health


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Answer ``{"status": "ok"|"failing", "checks": {...}, "metrics": {...}}``: 200 when every check passes,
    503 otherwise (each failed check says what broke and where to look). Counts only, never PHI."""
    health = pipeline_health()
    pipeline_alert(health)
    body = {"status": "ok" if health.ok else "failing", "checks": health.checks, "metrics": health.metrics}
    return JsonResponse(body, status=200 if health.ok else 503)
