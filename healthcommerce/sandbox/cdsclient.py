"""The sandbox EHR as a CDS Hooks client: a clinician picks a pending request as a draft order, the EHR calls the
configured CDS service's ``order-select`` or ``order-sign`` hook, and shows the cards that come back.

Source: CDS Hooks 2.0 "Discovery" (the service's ``prefetch`` templates), "Calling a CDS Service" (``hook``,
``hookInstance``, ``fhirServer``, ``context``, ``prefetch``), "Prefetch Template" (tokens; a template the client does
not satisfy is left out, an empty read is ``null``) and "Trusting CDS Clients" (a JWT signed RS384 with the
sandbox's CDS key, ``jku`` = the sandbox's JWKS URL, ``iss`` = its FHIR base, ``aud`` = the service URL, a fresh
``jti``, ``exp`` 5 minutes ahead).
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from joserfc import jwt

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import outbound_session
from healthcommerce.sandbox import keys
from healthcommerce.sandbox.discovery import SandboxUrls
from healthcommerce.sandbox.errors import LaunchError
from healthcommerce.sandbox.r4 import ORDER_TYPES
from healthcommerce.sandbox.selectors import resource_get

HOOKS = ("order-select", "order-sign")
JWT_LIFETIME = 300  # seconds
_READ = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


@dataclass(frozen=True)
class CdsResult:
    """What a hook call gave: the service's HTTP ``status`` (0 when it could not be reached), its ``cards`` and a
    short ``error`` for the EHR page when there are none to show."""

    service_url: str
    status: int
    cards: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def services_base(urls: SandboxUrls) -> str:
    """Return the CDS services base: ``SANDBOX_CDS_SERVICES_URL``, else ``/cds-services`` on this host."""
    return str(getattr(settings, "SANDBOX_CDS_SERVICES_URL", "") or f"{urls.origin}/cds-services").rstrip("/")


def cds_jwt(*, audience: str, urls: SandboxUrls) -> str:
    """Return the compact JWT that authenticates one hook call to ``audience`` (the service URL)."""
    key = keys.cds_signing_key()
    now = int(time.time())
    header = {"alg": keys.CDS_ALG, "typ": "JWT", "kid": str(key.kid), "jku": urls.jwks}
    claims = {
        "iss": urls.fhir_base,
        "aud": audience,
        "exp": now + JWT_LIFETIME,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "tenant": "sandbox",
    }
    return jwt.encode(header, claims, key, algorithms=[keys.CDS_ALG])


def _prefetch(templates: Any, context: dict[str, Any], practitioner_id: str) -> dict[str, Any]:
    """Fill the prefetch templates this EHR can: instance reads (``Type/{{token}}``) from its store, ``null``
    when the resource does not exist; searches are not satisfied, so their keys are left out."""
    tokens = {
        "context.patientId": context["patientId"],
        "context.userId": context["userId"],
        "userPractitionerId": practitioner_id,
    }
    filled: dict[str, Any] = {}
    for name, template in (templates or {}).items() if isinstance(templates, dict) else []:
        query = str(template)
        for token, value in tokens.items():
            query = query.replace("{{" + token + "}}", value)
        match = _READ.fullmatch(query)
        if match is None:
            continue
        row = resource_get(resource_type=match.group(1), fhir_id=match.group(2))
        filled[str(name)] = row.data if row is not None else None
    return filled


def _draft_order(order_ref: str, patient_id: str) -> dict[str, Any]:
    """Return the stored request ``order_ref`` of the patient as the draft order being signed (status ``draft``)."""
    kind, _, rid = order_ref.partition("/")
    row = resource_get(resource_type=kind, fhir_id=rid) if kind in ORDER_TYPES and rid else None
    if row is None or row.patient_id != patient_id:
        raise LaunchError("That request does not exist for this patient.")
    resource = copy.deepcopy(row.data)
    resource["status"] = "draft"
    return dict(resource)


def _service(base: str, hook: str) -> dict[str, Any]:
    """Return the first service of ``hook`` in the discovery document at ``base``."""
    response = outbound_session().get(base, headers={"Accept": "application/json"})
    response.raise_for_status()
    services = response.json().get("services", [])
    for service in services if isinstance(services, list) else []:
        if isinstance(service, dict) and service.get("hook") == hook and isinstance(service.get("id"), str):
            return service
    raise LaunchError(f"The CDS services offer no {hook} service.")


def cds_hook_call(*, hook: str, patient_id: str, practitioner_id: str, order_ref: str, urls: SandboxUrls) -> CdsResult:
    """Call the configured CDS service for ``hook`` with the draft order ``order_ref`` of ``patient_id``.

    Discovers the service (``services_base``), fills its prefetch, signs the JWT (``cds_jwt``) and POSTs the
    request through the outbound client. Raises ``LaunchError`` for an unknown hook, patient or request; an
    unreachable service or a non-200 answer is a ``CdsResult`` with the status and no cards.
    """
    if hook not in HOOKS:
        raise LaunchError("Choose order-select or order-sign.")
    if resource_get(resource_type="Patient", fhir_id=patient_id) is None:
        raise LaunchError("Unknown patient.")
    draft = _draft_order(order_ref, patient_id)
    base = services_base(urls)
    try:
        service = _service(base, hook)
    except (requests.RequestException, HealthcommerceError, ValueError, AttributeError) as exc:
        message = exc.message if isinstance(exc, LaunchError) else "The CDS services could not be discovered."
        return CdsResult(service_url=base, status=0, error=message)
    url = f"{base}/{service['id']}"
    context: dict[str, Any] = {
        "userId": f"Practitioner/{practitioner_id}",
        "patientId": patient_id,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
    }
    if hook == "order-select":
        context["selections"] = [order_ref]
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": urls.fhir_base,
        "context": context,
        "prefetch": _prefetch(service.get("prefetch"), context, practitioner_id),
    }
    headers = {"Authorization": f"Bearer {cds_jwt(audience=url, urls=urls)}", "Accept": "application/json"}
    try:
        response = outbound_session().post(url, json=body, headers=headers)
        data = response.json() if response.status_code == 200 else {}
    except (requests.RequestException, HealthcommerceError, ValueError) as exc:
        error = f"The CDS service could not be reached ({type(exc).__name__})."
        return CdsResult(service_url=url, status=0, error=error)
    cards = data.get("cards") if isinstance(data, dict) else None
    if response.status_code != 200 or not isinstance(cards, list):
        return CdsResult(service_url=url, status=response.status_code, error="The CDS service refused the call.")
    return CdsResult(service_url=url, status=200, cards=[card for card in cards if isinstance(card, dict)])
