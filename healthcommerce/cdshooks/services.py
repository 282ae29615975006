"""The CDS services: discovery and the hook calls ``order-select`` and ``order-sign``.

Source: CDS Hooks 2.0 "Discovery" (``services[]`` with ``hook``, ``id``, ``title``, ``description``, ``prefetch``),
"Calling a CDS Service", "Prefetch Template" (``{{context.patientId}}``) and "CDS Service Response"; Epic's CDS
Hooks documentation (order-select/order-sign, SMART links with ``appContext``). ADR 0021.

Data minimization: the only prefetch asked for is the Patient, of which only the address is looked at (a warning
card when there is none); the draft orders come in the hook context. The service never calls the EHR's FHIR
server, so ``fhirAuthorization`` is ignored and a missing prefetch answers 412.
"""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from healthcommerce.audit.services import audit_record, audit_refusal
from healthcommerce.cdshooks.auth import CdsCaller, cds_caller_authenticate
from healthcommerce.cdshooks.cards import HookRequest, cards_build, hook_request_parse
from healthcommerce.cdshooks.errors import CdsBadRequest, CdsPrefetchMissing, CdsUnauthorized, CdsUnknownService

logger = logging.getLogger(__name__)

AUDIT_ACTION = "cds.call"
PREFETCH = {"patient": "Patient/{{context.patientId}}"}


@dataclass(frozen=True)
class CdsService:
    """One CDS service as discovery lists it (CDS Hooks 2.0 "Discovery": ``id``, ``hook``, ``title``,
    ``description``, ``prefetch``)."""

    id: str
    hook: str
    title: str
    description: str

    def discovery(self) -> dict[str, Any]:
        """Return this service's entry in the discovery response."""
        return {
            "id": self.id,
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH),
        }


SERVICES = {
    service.id: service
    for service in (
        CdsService(
            id="healthcommerce-order-select",
            hook="order-select",
            title="Order DME and collection kits through healthcommerce",
            description="When a selected draft DeviceRequest or ServiceRequest maps to a product, offers a SMART "
            "link that opens the pre-filled order in healthcommerce.",
        ),
        CdsService(
            id="healthcommerce-order-sign",
            hook="order-sign",
            title="Send signed DME and kit orders to fulfilment through healthcommerce",
            description="When a draft DeviceRequest or ServiceRequest being signed maps to a product, offers a SMART "
            "link that opens the pre-filled order in healthcommerce for fulfilment.",
        ),
    )
}


def cds_discovery() -> dict[str, list[dict[str, Any]]]:
    """Return the discovery document ``{"services": [...]}``: static, no PHI, the same for every caller."""
    return {"services": [service.discovery() for service in SERVICES.values()]}


def service_url(service_id: str) -> str:
    """Return the exact URL of a service, ``{APP_BASE_URL}/cds-services/<id>``: the JWT's ``aud`` must equal it."""
    return f"{settings.APP_BASE_URL.rstrip('/')}/cds-services/{service_id}"


def _audit(caller: CdsCaller, service: CdsService, request: HookRequest | None, outcome: str, cards: int) -> None:
    audit_record(
        actor=request.user_id if request else "unknown",
        action=AUDIT_ACTION,
        target=f"Patient/{request.patient_id}" if request else f"cds-services/{service.id}",
        where=caller.iss,
        outcome=outcome,
        detail={
            "service": service.id,
            "hook_instance": request.hook_instance if request else "",
            "draft_orders": len(request.draft_orders) if request else 0,
            "cards": cards,
        },
        site=caller.site.iss,
    )


def cds_service_call(*, service_id: str, authorization: str, body: bytes) -> dict[str, list[dict[str, Any]]]:
    """Answer one hook call to service ``service_id``: authenticate the EHR's JWT (``auth.cds_caller_authenticate``,
    ``aud`` = ``service_url``), parse the request (``cards.hook_request_parse``) and return ``{"cards": [...]}``.

    Raises ``CdsUnknownService`` (404), ``CdsUnauthorized`` (401; audited as an aggregated ``cds.call`` refusal
    with the failed check), ``CdsBadRequest`` (400) and ``CdsPrefetchMissing`` (412). Every authenticated call
    received PHI and writes one ``cds.call`` audit row (target the patient once known, outcome ``success`` or the
    error code, detail: service, hookInstance, counts). Logs carry ids and counts only.
    """
    service = SERVICES.get(service_id)
    if service is None:
        raise CdsUnknownService()
    try:
        caller = cds_caller_authenticate(authorization=authorization, audience=service_url(service.id))
    except CdsUnauthorized as exc:
        audit_refusal(action=AUDIT_ACTION, reason=exc.code, site=exc.site_iss, target=f"cds-services/{service.id}")
        logger.info("CDS Hooks call to %s refused: %s", service.id, exc.code)
        raise
    try:
        request = hook_request_parse(body, hook=service.hook)
    except (CdsBadRequest, CdsPrefetchMissing) as exc:
        _audit(caller, service, None, exc.code, 0)
        logger.info("CDS Hooks call to %s from site %s: %s", service.id, caller.site.pk, exc.code)
        raise
    cards = cards_build(site=caller.site, request=request)
    _audit(caller, service, request, "success", len(cards))
    logger.info(
        "CDS Hooks call to %s from site %s: %d draft orders, %d cards",
        service.id,
        caller.site.pk,
        len(request.draft_orders),
        len(cards),
    )
    return {"cards": cards}
