"""FHIR notify-then-pull: receive a Subscriptions R5 Backport IG notification (FHIR R4, ``id-only`` payload), store it
and hand it to a worker through the outbox (issue 20 "FHIR notify-then-pull").

Source: Subscriptions R5 Backport IG STU 1.1 (http://hl7.org/fhir/uv/subscriptions-backport), "Notifications" and
the profiles ``backport-subscription-notification-r4`` (a ``Bundle`` of type ``history`` whose first entry is a
``Parameters`` profiled as ``backport-subscription-status-r4``: ``subscription``, ``topic``, ``status``, ``type``,
``events-since-subscription-start`` and ``notification-event`` with the parts ``event-number``, ``timestamp`` and
``focus``) and "Channels" (rest-hook: an HTTP POST the subscriber answers promptly, 2xx meaning received).

``notification_parse`` reads the bundle (leniently: unknown parameters and parts are ignored; what the intake needs
missing or malformed raises ``NotificationInvalid`` naming its path). ``intake_notification_receive`` is the whole
rule set of the endpoint: the site's bearer token (constant-time), handshake, heartbeat and query-status answered
200 with nothing stored, and each event stored once as an ``IntakeMessage`` (kind ``fhir_notification``, control id
``<subscription>#<event number>``) with an ``intake.fhir_notification`` outbox row in the same transaction; a
resend of the same event finds the stored message and creates nothing. One ``intake.fhir_notification`` audit row
per notification (ids and codes only, no PHI).
"""

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.events import TOPIC_FHIR_NOTIFICATION, intake_message_subject
from healthcommerce.intake.models import IntakeMessage, IntakeSite
from healthcommerce.intake.registry import ACCEPT, ERROR, REJECT
from healthcommerce.outbox.services import outbox_publish

logger = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # bytes: an id-only notification is a few hundred
# Subscriptions Backport IG: http://hl7.org/fhir/ValueSet/subscription-notification-type (R4 backport codes).
HANDSHAKE, HEARTBEAT, EVENT, QUERY_STATUS = "handshake", "heartbeat", "event-notification", "query-status"
TYPES = (HANDSHAKE, HEARTBEAT, EVENT, QUERY_STATUS)
# What the app orders from: the focus of an event must be one of these.
REQUEST_TYPES = ("DeviceRequest", "ServiceRequest")
ACTOR_PREFIX = "fhir-subscription:"
_EVENT_NUMBER = re.compile(r"\d{1,18}")
_REFERENCE = re.compile(r"(?:(?P<base>.+)/)?(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})")
MAX_SUBSCRIPTION = 150  # characters of the subscription reference kept in the control id; longer ones are hashed


# The reads the worker makes for one event (orders.notified): the request, its patient, the patient's coverage and
# the requester (a PractitionerRole's practitioner too). SMART App Launch 2.2 "Backend Services" system/ scopes.
NOTIFY_SCOPES = (
    "system/DeviceRequest.rs system/ServiceRequest.rs system/Patient.rs system/Coverage.rs "
    "system/Practitioner.rs system/PractitionerRole.rs"
)


def notify_backend_needs(site: EHRSite) -> dict[str, str]:
    """Return ``{"FHIR notifications (notify-then-pull)": NOTIFY_SCOPES}`` when ``site`` has FHIR notifications on,
    else ``{}`` (``ehr.sitefeatures.SiteFeature.backend_needs``: the readiness check's scopes)."""
    return {"FHIR notifications (notify-then-pull)": NOTIFY_SCOPES} if IntakeSite.of(site).fhir_notify_enabled else {}


class NotificationInvalid(ValueError):
    """The body is not a Backport IG notification the intake can use; ``where`` is the FHIRPath-like location of
    the problem (``Bundle.type``), ``str()`` a sentence naming what is wrong (no PHI: the body carries only ids)."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class NotificationEvent:
    """One ``notification-event``: ``number`` (``event-number``, digits) and ``focus`` (the reference as sent,
    ``""`` when the event has none)."""

    number: str
    focus: str = ""


@dataclass(frozen=True)
class Notification:
    """A parsed notification: ``type`` (one of ``TYPES``), ``subscription`` (the Subscription reference as sent),
    ``status`` (the subscription's status code, ``""`` when not given), ``topic`` (canonical, ``""``) and
    ``events`` (for ``event-notification``: at least one)."""

    type: str
    subscription: str
    status: str = ""
    topic: str = ""
    events: list[NotificationEvent] = field(default_factory=list)


def _value(parameter: dict[str, Any], *kinds: str) -> Any:
    """Return the first ``value<kind>`` present in a parameter or part, None when none is."""
    return next((parameter[f"value{kind}"] for kind in kinds if f"value{kind}" in parameter), None)


def _reference(parameter: dict[str, Any]) -> str:
    value = _value(parameter, "Reference")
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference.strip() if isinstance(reference, str) else ""


def _event(parameter: dict[str, Any], where: str) -> NotificationEvent:
    """Read one ``notification-event`` (its ``part`` list). Raises ``NotificationInvalid`` without a usable
    ``event-number``."""
    parts = parameter.get("part")
    parts = [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    number = next((p for p in parts if p.get("name") == "event-number"), None)
    raw = _value(number, "String", "UnsignedInt", "PositiveInt", "Integer", "Integer64") if number else None
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    if not _EVENT_NUMBER.fullmatch(text):
        raise NotificationInvalid(f"{where}.part[event-number]", "missing or not a number")
    focus = next((p for p in parts if p.get("name") == "focus"), None)
    return NotificationEvent(number=str(int(text)), focus=_reference(focus) if focus else "")


def _bundle(body: bytes) -> dict[str, Any]:
    """Return the body as a ``Bundle`` of type ``history``; raise ``NotificationInvalid`` otherwise."""
    try:
        bundle = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotificationInvalid("Bundle", "the body is not JSON") from exc
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise NotificationInvalid("Bundle.resourceType", "not a Bundle")
    if bundle.get("type") != "history":
        raise NotificationInvalid("Bundle.type", f"{str(bundle.get('type'))[:40]!r} where 'history' is required")
    return bundle


def _status_parameters(body: bytes) -> list[dict[str, Any]]:
    """Return the ``parameter`` list of the bundle's first entry (the SubscriptionStatus ``Parameters``)."""
    entries = _bundle(body).get("entry")
    first = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    resource = first.get("resource") if first else None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        where, problem = "Bundle.entry[0].resource", "the first entry must be a Parameters (SubscriptionStatus)"
        raise NotificationInvalid(where, problem)
    parameters = resource.get("parameter")
    if not isinstance(parameters, list):
        raise NotificationInvalid("Parameters.parameter", "missing")
    return [p for p in parameters if isinstance(p, dict) and isinstance(p.get("name"), str)]


def notification_parse(body: bytes) -> Notification:
    """Return the ``Notification`` of a Backport IG R4 notification bundle (JSON bytes).

    Raises ``NotificationInvalid`` (``where`` names the element) when the body is not JSON, not a ``Bundle`` of type
    ``history``, its first entry is not a ``Parameters``, ``subscription`` or ``type`` is missing, ``type`` is not
    a notification type, or an ``event-notification`` has no ``notification-event`` with an ``event-number``.
    Backport IG STU 1.1 "R4 Topic-Based Subscription Notification Bundle".
    """
    parameters = _status_parameters(body)
    named: dict[str, dict[str, Any]] = {}
    for parameter in parameters:
        named.setdefault(parameter["name"], parameter)
    subscription = _reference(named["subscription"]) if "subscription" in named else ""
    if not subscription:
        raise NotificationInvalid("Parameters.parameter[subscription]", "missing or without a reference")
    kind = _value(named.get("type", {}), "Code")
    if kind not in TYPES:
        shown = f"{str(kind)[:40]!r} is not one of {', '.join(TYPES)}" if kind is not None else "missing"
        raise NotificationInvalid("Parameters.parameter[type]", shown)
    status = _value(named.get("status", {}), "Code")
    topic = _value(named.get("topic", {}), "Canonical", "Uri")
    events: list[NotificationEvent] = []
    if kind == EVENT:
        where = "Parameters.parameter[notification-event]"
        events = [_event(p, where) for p in parameters if p["name"] == "notification-event"]
        if not events:
            raise NotificationInvalid(where, "an event-notification names no event")
    return Notification(
        type=kind,
        subscription=subscription,
        status=status if isinstance(status, str) else "",
        topic=topic if isinstance(topic, str) else "",
        events=events,
    )


# --- the endpoint's rules -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyAnswer:
    """What the endpoint answers: HTTP ``status`` and an OperationOutcome ``outcome`` (FHIR R4 JSON)."""

    status: int
    outcome: dict[str, Any]


def operation_outcome(severity: str, code: str, text: str, where: str = "") -> dict[str, Any]:
    """Return a FHIR R4 OperationOutcome with one issue (``severity``, issue-type ``code``, ``diagnostics`` and,
    when given, ``expression`` naming the element)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if where:
        issue["expression"] = [where]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _refused(status: int, code: str, text: str, where: str = "") -> NotifyAnswer:
    return NotifyAnswer(status, operation_outcome("error", code, text, where))


def _notify_site(site_id: UUID) -> tuple[EHRSite, IntakeSite] | None:
    """Return the active site with FHIR notifications on, and its intake settings; None otherwise."""
    site = EHRSite.objects.filter(pk=site_id, is_active=True).first()
    if site is None:
        return None
    settings = IntakeSite.of(site)
    return (site, settings) if settings.fhir_notify_enabled else None


def _bearer(authorization: str) -> str:
    """Return the token of an ``Authorization: Bearer <token>`` header (RFC 6750 section 2.1), "" otherwise."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def notify_token_matches(settings: IntakeSite, authorization: str) -> bool:
    """Return whether ``authorization`` carries the site's notification token (constant-time; a site without a
    token matches nothing)."""
    offered, expected = _bearer(authorization), settings.fhir_notify_token or ""
    return bool(offered and expected) and hmac.compare_digest(offered.encode(), expected.encode())


def control_id(subscription: str, number: str) -> str:
    """Return the control id of an event: ``<subscription reference>#<event number>``; a reference longer than
    ``MAX_SUBSCRIPTION`` characters is replaced by ``sha256:<first 40 hex digits>``."""
    if len(subscription) > MAX_SUBSCRIPTION:
        subscription = "sha256:" + hashlib.sha256(subscription.encode()).hexdigest()[:40]
    return f"{subscription}#{number}"


def focus_problem(site: EHRSite, focus: str) -> str:
    """Return why ``focus`` cannot be ordered from at ``site`` ("" when it can): it must be a ``DeviceRequest`` or
    ``ServiceRequest`` reference, relative or on the site's own FHIR base."""
    if not focus:
        return "the event names no focus (the subscription must use the id-only payload)"
    match = _REFERENCE.fullmatch(focus)
    if match is None:
        return "the focus is not a FHIR reference"
    if match["type"] not in REQUEST_TYPES:
        return f"the focus is a {match['type']}, not a DeviceRequest or ServiceRequest: nothing to order"
    if match["base"] and match["base"].rstrip("/") != site.iss.rstrip("/"):
        return "the focus is on another FHIR server than the site's"
    return ""


def focus_relative(focus: str) -> str:
    """Return ``Type/id`` of a (relative or absolute) reference, "" when it is not one."""
    match = _REFERENCE.fullmatch(focus)
    return f"{match['type']}/{match['id']}" if match else ""


def _audit(site: EHRSite | None, *, outcome: str, detail: dict[str, Any], target: str = "") -> None:
    audit_record(
        actor=f"{ACTOR_PREFIX}{site.pk}" if site else f"{ACTOR_PREFIX}unknown",
        action="intake.fhir_notification",
        target=target or (f"EHRSite/{site.pk}" if site else ""),
        where=site.iss if site else "",
        outcome=outcome,
        detail=detail,
        site=site.iss if site else "",
    )


@transaction.atomic
def _events_store(site: EHRSite, notification: Notification, body: bytes) -> tuple[int, int]:
    """Store each event of ``notification`` once and publish ``intake.fhir_notification`` for the usable ones, in
    one transaction. Returns ``(new, duplicates)``."""
    new = duplicates = 0
    raw = body.decode("utf-8", errors="replace")
    for event in notification.events:
        problem = focus_problem(site, event.focus)
        message, created = IntakeMessage.objects.get_or_create(
            kind=IntakeMessage.Kind.FHIR_NOTIFICATION,
            sender=f"site:{site.pk}",
            control_id=control_id(notification.subscription, event.number),
            defaults={
                "site": site,
                "message_type": EVENT,
                "raw": raw,
                "ack_code": REJECT if problem else ACCEPT,
                "ack": "200",
                "error_location": "notification-event.focus" if problem else "",
                "error_text": problem,
            },
        )
        if not created:
            duplicates += 1
            continue
        new += 1
        if not problem:
            outbox_publish(
                topic=TOPIC_FHIR_NOTIFICATION,
                key=str(message.pk),
                subject=intake_message_subject(message),
                payload={"focus": focus_relative(event.focus), "site": str(site.pk)},
            )
    return new, duplicates


def intake_notification_receive(*, site_id: UUID, authorization: str, body: bytes | None) -> NotifyAnswer:
    """Apply the endpoint's rules to one POSTed notification for site ``site_id`` and return the answer.

    404 when the site is unknown, inactive or has FHIR notifications off; 401 when the bearer token is not the
    site's (``notify_token_matches``); 413 over ``MAX_BODY`` bytes (``body`` None: the view stopped reading); 400
    naming the element when the bundle is not a notification (``notification_parse``); else 200. Handshake,
    heartbeat and query-status store nothing. An event-notification stores each event once (``_events_store``): a
    resend answers 200 and creates nothing; an event whose focus is not a DeviceRequest or ServiceRequest of the
    site is stored as refused (``AR``, reason in ``error_text``) and not handed on. Every answer writes one audit
    row (ids and codes only). Only database work: well within the Backport IG's prompt answer (the worker reads the
    EHR later).
    """
    found = _notify_site(site_id)
    if found is None:
        _audit(None, outcome="not_found", detail={"site_id": str(site_id)})
        return _refused(404, "not-found", "No FHIR notification endpoint here.")
    site, settings = found
    if not notify_token_matches(settings, authorization):
        _audit(site, outcome="unauthorized", detail={})
        logger.warning("FHIR notification for site %s refused: bad or missing bearer token", site.pk)
        return _refused(401, "login", "The bearer token is missing or not this site's.")
    if body is None or len(body) > MAX_BODY:
        _audit(site, outcome="too_large", detail={})
        return _refused(413, "too-costly", f"A notification is at most {MAX_BODY} bytes.")
    try:
        notification = notification_parse(body)
    except NotificationInvalid as exc:
        _audit(site, outcome="invalid", detail={"where": exc.where})
        return _refused(400, "structure", str(exc), exc.where)
    detail: dict[str, Any] = {"type": notification.type, "events": [e.number for e in notification.events][:20]}
    if notification.type != EVENT:
        _audit(site, outcome="success", detail=detail)
        return NotifyAnswer(200, operation_outcome("information", "informational", f"{notification.type} received"))
    new, duplicates = _events_store(site, notification, body)
    _audit(site, outcome="success", detail=detail | {"new": new, "duplicates": duplicates})
    text = f"{new} event(s) stored, {duplicates} already received"
    return NotifyAnswer(200, operation_outcome("information", "informational", text))


# --- the worker's record of what became of an event ---------------------------------------------------------------


@transaction.atomic
def intake_notification_settle(
    *, message: IntakeMessage, order_reference: str = "", error: str = "", warnings: Sequence[str] = ()
) -> bool:
    """Record on the stored event what the worker made of it: the order it created or found (``order_reference``,
    ``HC-...``: ack code ``AA``) or why it made none (``error``, a sentence without PHI: ``AE``). Returns whether it
    recorded it: a message that already names another order is left alone (False), as is one that names an order
    when called with an ``error``; one that names this very order (``orders.intake.order_from_intake`` marks the
    message an order came in) is settled. Writes an ``intake.fhir_notification_done`` audit row with the
    element-level ``warnings`` of the reads (at most 20; no PHI)."""
    changes = {"order_reference": order_reference[:20], "ack_code": ACCEPT if order_reference else ERROR}
    changes["error_text"] = "" if order_reference else error[:500]
    unsettled = ("", changes["order_reference"]) if order_reference else ("",)
    updated = IntakeMessage.objects.filter(pk=message.pk, order_reference__in=unsettled).update(**changes)
    if updated:
        for name, value in changes.items():
            setattr(message, name, value)
        detail: dict[str, Any] = {"order": order_reference} if order_reference else {"reason": error[:200]}
        if warnings:
            detail["warnings"] = [warning[:200] for warning in warnings[:20]]
        audit_record(
            actor="system:intake",
            action="intake.fhir_notification_done",
            target=f"IntakeMessage/{message.pk}",
            where=message.site.iss if message.site else "",
            outcome="success" if order_reference else "failed",
            detail=detail,
            site=message.site.iss if message.site else "",
        )
    return bool(updated)
