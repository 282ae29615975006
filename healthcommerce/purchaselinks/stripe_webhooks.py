"""``POST /webhooks/stripe/``: Stripe's payment events (docs/adr/0012; Stripe docs "Webhooks": "Check the webhook
signatures", "Handle duplicate events", "Event ordering", "Return a 2xx response quickly").

The signature (``Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "<t>.<raw body>">``) is checked over the raw
body with ``STRIPE_WEBHOOK_SECRET`` and a 300-second timestamp tolerance by the ``stripe`` library
(``WebhookSignature.verify_header``, the check ``Webhook.construct_event`` makes; the exception it raises holds
the body, so it is never logged). The library only refuses a timestamp too far in the past, so one more than
the tolerance in the future is refused here too (``_timestamp_ahead``: a replay window has two ends);
``payments.stripe_event_record`` deduplicates on the event id and applies it. Answers are JSON with a code and
no PHI: 200 with the outcome (duplicates and event types this app does not act on included), 400 for a request
that will never be accepted (Stripe's docs answer 400 to a bad payload and to a bad signature alike), 409 for an
event that came before this app recorded its payment (Stripe retries), 413 over 256 KiB, 503 when Stripe is not
configured here or the database failed (Stripe retries).
"""

import json
import logging
import time
from typing import Any

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import request_body_capped
from healthcommerce.purchaselinks.payments import stripe_event_record

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
TOLERANCE_SECONDS = 300


def _error(code: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code}, status=status)


def _timestamp_ahead(signature: str, *, now: float) -> bool:
    """Return True when the ``t=`` of a ``Stripe-Signature`` header is more than ``TOLERANCE_SECONDS`` after
    ``now`` (Unix seconds). A header without a readable ``t=`` returns False: ``verify_header`` refuses it."""
    for item in signature.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value) > now + TOLERANCE_SECONDS
            except ValueError:
                return False
    return False


def _event_fields(body: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """Return ``(id, type, data.object)`` of a verified event body, or None when it lacks them."""
    event = json.loads(body)
    if not isinstance(event, dict):
        return None
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str) and isinstance(obj, dict)):
        return None
    return event_id[:255], event_type[:100], obj


@csrf_exempt  # a server-to-server call authenticated by its signature, never by a browser cookie
@never_cache
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Verify one Stripe event and record it.

    Returns ``{"id": <event id>, "outcome": "applied" | "unchanged" | "ignored" | "duplicate"}`` (200), or
    ``{"error": <code>}``: ``payload_too_large`` (413), ``signature_missing``, ``signature_invalid`` (also a
    timestamp outside the tolerance), ``payload_invalid`` (400), ``payment_not_ready`` (409),
    ``stripe_unconfigured`` or ``temporarily_unavailable`` (503). Logs the event id, type and codes only.
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        logger.warning("stripe webhook refused: stripe_unconfigured")
        return _error("stripe_unconfigured", 503)
    body = request_body_capped(request, MAX_BODY_BYTES)
    if body is None:
        return _error("payload_too_large", 413)
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        return _error("signature_missing", 400)
    try:
        # construct_event's check, without its Event object: the body is parsed here, so an odd body is a 400.
        stripe.WebhookSignature.verify_header(body, signature, secret, tolerance=TOLERANCE_SECONDS)
        if _timestamp_ahead(signature, now=time.time()):
            raise stripe.SignatureVerificationError("Timestamp in the future", signature)
        fields = _event_fields(body)
    except stripe.SignatureVerificationError:
        logger.warning("stripe webhook refused: signature_invalid")
        return _error("signature_invalid", 400)
    except ValueError:  # not UTF-8 or not JSON, after a good signature
        fields = None
    if fields is None:
        logger.warning("stripe webhook refused: payload_invalid")
        return _error("payload_invalid", 400)
    event_id, event_type, obj = fields
    try:
        outcome = stripe_event_record(event_id=event_id, event_type=event_type, obj=obj)
    except HealthcommerceError as exc:
        logger.warning("stripe webhook event=%s type=%s refused: %s", event_id, event_type, exc.code)
        return _error(exc.code, exc.status)
    except Exception as exc:  # a view boundary: never a 500 with a trace; Stripe delivers it again
        logger.error("stripe webhook event=%s type=%s failed: %s", event_id, event_type, type(exc).__name__)
        return _error("temporarily_unavailable", 503)
    return JsonResponse({"id": event_id, "outcome": outcome})
