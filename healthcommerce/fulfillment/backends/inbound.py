"""The one inbound path for status a backend reports (``inbound_status_report``): the status webhooks
(``/webhooks/<backend>/``, ``fulfillment/views.py``) and the local backend's admin marks both hand it a
``StatusEvent``. And the Standard Webhooks format those webhooks use, shared by the backends that push status
(``webhook``: the supplier; ``medusa``: our subscriber inside Medusa, commerce/medusa/src/subscribers/).

Headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, checked by the reference library ``standardwebhooks`` (signature over the raw body,
timestamp within 5 minutes). Body: ``{"type": "order.received" | "order.shipped" | "order.delivered" |
"order.cancelled", "data": {"order_reference": "HC-...", "id": <the backend's order id, optional>, "carrier",
"tracking_number", "tracking_url" (optional)}}``. Source: the Standard Webhooks specification
(standardwebhooks.com), "Verifying webhooks".
"""

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from healthcommerce.fulfillment.backends.base import BackendStatus, InboundRejected, StatusEvent
from healthcommerce.fulfillment.status import inbound_status_record

SECRET_PREFIX = "whsec_"
# The event types a backend may push, and the status each one means (``orders.models.FulfillmentStatus``).
INBOUND_STATUS = {
    "order.received": "received",
    "order.shipped": "shipped",
    "order.delivered": "delivered",
    "order.cancelled": "cancelled",
}
_ID_MAX = 200


def inbound_status_report(
    *, backend: str, event: StatusEvent, source: str = "webhook", actor: str = ""
) -> tuple[Any, str]:
    """Apply one verified status ``event`` from ``backend``, deduplicated on ``event.event_id``; return
    ``(order id, outcome)``: ``applied``, ``unchanged``, ``refused`` or ``duplicate``. ``source`` is ``webhook``
    or ``admin``; ``actor`` defaults to ``system:webhook:<backend>``. Raises ``InboundOrderUnknown`` (no order of
    this backend has that reference and id) or ``UnknownFulfillmentStatus``
    (``fulfillment.status.inbound_status_record``)."""
    return inbound_status_record(backend=backend, event=event, source=source, actor=actor)


def secret_check(secret: str, *, setting: str = "WEBHOOK_SECRET") -> str:
    """Return ``secret`` if it is ``whsec_<base64 of at least 1 byte>``; raise ``ImproperlyConfigured`` naming
    ``setting`` otherwise. Never puts the secret into the message."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else ""
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ImproperlyConfigured(f"{setting} must be a Standard Webhooks secret: whsec_<base64>.")
    return secret


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    """``data[key]`` stripped and cut to ``limit`` characters; ``""`` unless it is a string."""
    value = data.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


def secret_errors(secret: str, *, setting: str) -> list[CheckMessage]:
    """Return ``[Error healthcommerce.E103]`` when ``secret`` is set but not ``whsec_<base64>`` (``secret_check``),
    else ``[]``: for a backend's ``check()``. Names ``setting`` (the environment variable), never the secret."""
    if not secret:
        return []
    try:
        secret_check(secret, setting=setting)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="healthcommerce.E103")]
    return []


def standard_status_events(body: bytes, headers: Mapping[str, str], *, secret: str, setting: str) -> list[StatusEvent]:
    """Verify one Standard Webhooks status event signed with ``secret`` (the backend's ``STATUS_SECRET`` option,
    environment ``setting``) and return it.

    Raises ``InboundRejected``: 503 ``webhook_status_unconfigured`` when the secret is empty or not a
    ``whsec_`` secret, 401 ``signature_invalid`` (a missing or wrong signature, a timestamp more than 5 minutes
    off), 400 ``event_unknown`` (a type not in ``INBOUND_STATUS``) or ``event_malformed`` (not JSON, no
    ``order_reference``).
    """
    try:
        verifier = Webhook(secret_check(secret, setting=setting))
    except ImproperlyConfigured as exc:
        raise InboundRejected(
            "Status webhooks are not configured.", code="webhook_status_unconfigured", status=503
        ) from exc
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    try:
        verifier.verify(body, lowered, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: an undecodable body or signature
        raise InboundRejected("The signature is not valid.", code="signature_invalid", status=401) from exc
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InboundRejected("The body is not JSON.", code="event_malformed") from exc
    status = INBOUND_STATUS.get(str(event.get("type"))) if isinstance(event, dict) else None
    if status is None:
        raise InboundRejected("Unknown event type.", code="event_unknown")
    data = event.get("data")
    reference = _text(data, "order_reference", 20) if isinstance(data, dict) else ""
    if not isinstance(data, dict) or not reference:
        raise InboundRejected("The event names no order_reference.", code="event_malformed")
    update = BackendStatus(
        status,
        carrier=_text(data, "carrier", 100),
        tracking_number=_text(data, "tracking_number", 100),
        tracking_url=_text(data, "tracking_url", 500),
    )
    return [
        StatusEvent(
            event_id=lowered["webhook-id"][:_ID_MAX],
            order_reference=reference,
            external_id=_text(data, "id", _ID_MAX),
            update=update,
        )
    ]
