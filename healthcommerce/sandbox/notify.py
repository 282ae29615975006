"""The sandbox EHR as a FHIR Subscriptions sender (Subscriptions R5 Backport IG STU 1.1, FHIR R4, rest-hook channel,
``id-only`` payload): a subscriber's ``Subscription`` is stored like any other resource, and "Send notification" next
to a pending request posts an ``event-notification`` bundle naming that request to the subscription's endpoint with
its ``channel.header`` (the bearer token), then shows the answer.

The bundle is the IG's ``backport-subscription-notification-r4``: a ``Bundle`` of type ``history`` whose first
entry is a ``Parameters`` (``backport-subscription-status-r4``) with ``subscription``, ``topic``, ``status``,
``type``, ``events-since-subscription-start`` and one ``notification-event`` (``event-number``, ``timestamp``,
``focus``). The events counter is kept on the Subscription (an extension of the sandbox's own), one more per send.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import requests
from django.db import transaction
from django.utils import timezone

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session
from healthcommerce.sandbox.errors import LaunchError
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.r4 import ORDER_TYPES, PENDING_ORDER_STATUSES
from healthcommerce.sandbox.selectors import resource_get

SUBSCRIPTION_ID = "healthcommerce-orders"
# The sandbox's own topic: a DeviceRequest or ServiceRequest was signed (created or made active).
TOPIC = "urn:healthcommerce:sandbox:SubscriptionTopic/order-signed"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
EVENTS_EXTENSION = "urn:healthcommerce:sandbox:events-since-subscription-start"
TIMEOUT = 10  # seconds; the IG expects the endpoint to answer within a few
SHOWN_BODY = 4000  # characters of the answer shown on the page


def subscription_resource(*, subscription_id: str, endpoint: str, token: str) -> dict[str, Any]:
    """Return an R4 ``Subscription`` (profile ``backport-subscription``) for a rest-hook to ``endpoint`` with
    ``id-only`` payloads and ``Authorization: Bearer <token>`` in ``channel.header``."""
    return {
        "resourceType": "Subscription",
        "id": subscription_id,
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "extension": [{"url": EVENTS_EXTENSION, "valueInteger": 0}],
        "status": "active",
        "reason": "Orders signed in the EHR, for healthcommerce",
        "criteria": TOPIC,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}]},
            "header": [f"Authorization: Bearer {token}"],
        },
    }


@transaction.atomic
def sandbox_subscription_set(*, endpoint: str, token: str, subscription_id: str = SUBSCRIPTION_ID) -> FhirResource:
    """Create or replace the subscription ``subscription_id`` (its events counter starts again at 0)."""
    data = subscription_resource(subscription_id=subscription_id, endpoint=endpoint, token=token)
    row, _ = FhirResource.objects.update_or_create(
        resource_type="Subscription", fhir_id=subscription_id, defaults={"status": "active", "data": data}
    )
    return row


def notification_bundle(*, subscription: str, event_number: int, focus: str) -> dict[str, Any]:
    """Return the ``event-notification`` bundle of event ``event_number`` of ``subscription`` (an absolute
    reference) naming ``focus`` (an absolute reference), ``id-only``: the focus resource itself is not included."""
    status_id = str(uuid.uuid4())
    now = timezone.now().isoformat(timespec="milliseconds")
    parameters = {
        "resourceType": "Parameters",
        "id": status_id,
        "meta": {"profile": [f"{BACKPORT}/backport-subscription-status-r4"]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": TOPIC},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": str(event_number)},
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(event_number)},
                    {"name": "timestamp", "valueInstant": now},
                    {"name": "focus", "valueReference": {"reference": focus}},
                ],
            },
        ],
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [f"{BACKPORT}/backport-subscription-notification-r4"]},
        "type": "history",
        "timestamp": now,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{status_id}",
                "resource": parameters,
                "request": {"method": "GET", "url": f"{subscription}/$status"},
                "response": {"status": "200"},
            }
        ],
    }


@dataclass(frozen=True)
class NotifyResult:
    """What a send did: the ``endpoint``, the ``bundle`` sent, the answer's HTTP ``status`` (0: no answer) and
    ``body`` (cut to ``SHOWN_BODY`` characters), and ``error`` when there was no answer."""

    endpoint: str
    bundle: dict[str, Any]
    status: int = 0
    body: str = ""
    error: str = ""


@transaction.atomic
def _next_event(subscription_id: str) -> tuple[FhirResource, int]:
    """Count one more event on the subscription (under a row lock) and return it with the event's number."""
    row = FhirResource.objects.select_for_update().filter(resource_type="Subscription", fhir_id=subscription_id).first()
    if row is None or row.status != "active":
        raise LaunchError("No active subscription: run manage.py demo_setup (or sandbox_subscription add).")
    extensions = [e for e in row.data.get("extension", []) if e.get("url") != EVENTS_EXTENSION]
    known: dict[str, Any] = next((e for e in row.data.get("extension", []) if e.get("url") == EVENTS_EXTENSION), {})
    number = int(known.get("valueInteger", 0)) + 1
    row.data["extension"] = [*extensions, {"url": EVENTS_EXTENSION, "valueInteger": number}]
    row.save(update_fields=["data", "updated_at"])
    return row, number


def _authorization(subscription: dict[str, Any]) -> dict[str, str]:
    """Return the HTTP headers of ``channel.header`` (``"Name: value"`` strings)."""
    headers = {}
    for line in subscription.get("channel", {}).get("header", []):
        name, _, value = str(line).partition(":")
        if name.strip() and value.strip():
            headers[name.strip()] = value.strip()
    return headers


def sandbox_notification_send(
    *, request_ref: str, fhir_base: str, subscription_id: str = SUBSCRIPTION_ID
) -> NotifyResult:
    """Post an ``event-notification`` naming the pending request ``request_ref`` (``DeviceRequest/<id>``) to the
    subscription's endpoint and return what happened. Raises ``LaunchError`` for an unknown or not pending
    request, or when there is no active subscription. Not one transaction: the counter is committed before the
    POST, so a lost answer still used its event number (the IG's events are numbered as generated)."""
    kind, _, fhir_id = request_ref.partition("/")
    row = resource_get(resource_type=kind, fhir_id=fhir_id) if kind in ORDER_TYPES else None
    if row is None or row.status not in PENDING_ORDER_STATUSES:
        raise LaunchError("Unknown or not pending request.")
    subscription, number = _next_event(subscription_id)
    bundle = notification_bundle(
        subscription=f"{fhir_base}/Subscription/{subscription.fhir_id}",
        event_number=number,
        focus=f"{fhir_base}/{request_ref}",
    )
    endpoint = str(subscription.data.get("channel", {}).get("endpoint", ""))
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    headers |= _authorization(subscription.data)
    try:
        response = outbound_session().post(endpoint, json=bundle, headers=headers, timeout=TIMEOUT)
    except (requests.RequestException, OutboundRefused) as exc:
        return NotifyResult(endpoint=endpoint, bundle=bundle, error=f"No answer: {type(exc).__name__}")
    return NotifyResult(endpoint=endpoint, bundle=bundle, status=response.status_code, body=response.text[:SHOWN_BODY])
