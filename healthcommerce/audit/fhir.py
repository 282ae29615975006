"""Audit rows as FHIR R4 AuditEvent resources, in a ``collection`` Bundle (``audit_export`` and the admin).

Source: FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html): ``type`` from the DICOM audit event ids
(DCM 110100 Application Activity, 110110 Patient Record, 110114 User Authentication) or ``rest`` for a FHIR read,
``subtype`` the app's own action code, ``action`` C/R/U/D/E, ``recorded``, ``outcome`` 0 (success) or 4 (minor
failure: a refusal), ``agent`` (who, network address), ``source`` (the EHR site, observed by this app), ``entity``
(what: the reference, and the launch, chain position and hash as details). No PHI: rows hold none.
"""

import json
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from healthcommerce.audit.models import AuditEvent

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ACTION_SYSTEM = "urn:healthcommerce:audit-action"
ACTOR_SYSTEM = "urn:healthcommerce:audit-actor"
OBSERVER = "healthcommerce"
_READS = ("view", "read", "open", "verify", "export")
_CREATES = ("sign", "issue", "add", "submit", "launch", "create")
_UPDATES = ("edit", "change", "complete", "revoke", "cancel", "retry", "language", "shipped", "delivered")


def _event_type(action: str) -> dict[str, str]:
    if action == "fhir.read":
        return {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
    if action.startswith(("admin.login", "admin.logout", "admin.lockout")):
        return {"system": DCM, "code": "110114", "display": "User Authentication"}
    if action.startswith(("phi.", "admin.phi.", "order.", "purchase_link.", "fhir.")):
        return {"system": DCM, "code": "110110", "display": "Patient Record"}
    return {"system": DCM, "code": "110100", "display": "Application Activity"}


def _crud(action: str) -> str:
    verb = action.rsplit(".", 1)[-1]
    if verb.startswith(_READS):
        return "R"
    if verb.startswith(_CREATES):
        return "C"
    if verb.startswith(_UPDATES):
        return "U"
    if verb.startswith(("delete", "purge")):
        return "D"
    return "E"


def _detail(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "valueString": value}


def _agent(event: AuditEvent) -> dict[str, Any]:
    """The AuditEvent's one ``agent``: the actor, with the network address and user agent when recorded."""
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": ACTOR_SYSTEM, "value": event.actor}, "display": event.actor},
        "requestor": True,
    }
    if event.ip:
        agent["network"] = {"address": event.ip, "type": "2"}  # 2 = IP address (network-type)
    if event.user_agent:
        agent["altId"] = event.user_agent
    return agent


def _entity(event: AuditEvent) -> dict[str, Any] | None:
    """The AuditEvent's one ``entity`` (what, and the launch, place, detail and chain position as details), or
    None when the row has none of them."""
    details: list[dict[str, str]] = []
    if event.launch_id:
        details.append(_detail("launch_id", event.launch_id))
    if event.where:
        details.append(_detail("where", event.where))
    if event.detail:
        details.append(_detail("detail", json.dumps(event.detail, sort_keys=True, separators=(",", ":"))))
    if event.seq is not None:
        details += [_detail("seq", str(event.seq)), _detail("hash", event.hash or "")]
    entity: dict[str, Any] = {"detail": details} if details else {}
    if event.target:
        entity["what"] = {"reference": event.target} if "/" in event.target else {"display": event.target}
    return entity or None


def audit_event_resource(event: AuditEvent) -> dict[str, Any]:
    """Return ``event`` as a FHIR R4 AuditEvent (JSON-ready dict, ``id`` = the row's UUID)."""
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(event.pk),
        "type": _event_type(event.action),
        "subtype": [{"system": ACTION_SYSTEM, "code": event.action}],
        "action": _crud(event.action),
        "recorded": event.created_at.isoformat(),
        "outcome": "0" if event.outcome == "success" else "4",
        "agent": [_agent(event)],
        "source": {
            "observer": {"display": OBSERVER},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    if event.outcome != "success":
        resource["outcomeDesc"] = event.outcome
    if event.site:
        resource["source"]["site"] = event.site
    entity = _entity(event)
    if entity:
        resource["entity"] = [entity]
    return resource


def audit_bundle(events: Iterable[AuditEvent]) -> dict[str, Any]:
    """Return a FHIR R4 Bundle of type ``collection`` holding one AuditEvent per row, in the given order."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timezone.now().isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{event.pk}", "resource": audit_event_resource(event)} for event in events],
    }
