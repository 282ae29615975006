"""Reading a hook request and answering it with cards.

Source: CDS Hooks 2.0 "Calling a CDS Service" (``hook``, ``hookInstance``, ``context``, ``prefetch``), the
``order-select`` and ``order-sign`` hooks (``context.userId``, ``patientId``, ``draftOrders`` as a FHIR Bundle,
``selections``), "Prefetch" (a missing key, or ``null``, means the client did not or could not fill it) and
"CDS Service Response" (Card: ``uuid``, ``summary`` under 140 characters, ``indicator``, ``source.label``; Link:
``label``, ``url``, ``type`` ``smart``, ``appContext``). Optional attributes without a value are omitted, as the
specification requires; the cards carry no suggestions, so no ``selectionBehavior``.

The draft orders are read leniently, one entry at a time: an entry that cannot be used costs only itself (ADR 0006).
Of the prefetched Patient only ``id`` and ``address`` are used, and no value of either is echoed back.
"""

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from healthcommerce.catalog.models import Product
from healthcommerce.catalog.selectors import mapping_for_codes
from healthcommerce.cdshooks.errors import CdsBadRequest, CdsPrefetchMissing
from healthcommerce.ehr.models import EHRSite

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatype "id"
REQUEST_TYPES = ("DeviceRequest", "ServiceRequest")
SOURCE = {"label": "healthcommerce"}
MAX_DRAFT_ORDERS = 50
MAX_SUMMARY = 139  # "< 140 characters"
MAX_SELECTIONS = 50


@dataclass(frozen=True)
class HookRequest:
    """What a hook call gives this service: plain values, the draft orders as raw JSON entries and the prefetched
    Patient (``patient``, a dict) it requires."""

    hook: str
    hook_instance: str
    user_id: str
    patient_id: str
    draft_orders: list[Any]
    patient: dict[str, Any]
    selections: list[str] = field(default_factory=list)


def _text(value: Any, name: str, *, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CdsBadRequest(f"{name} must be a non-empty string of at most {limit} characters.")
    return value


def _draft_orders(context: dict[str, Any]) -> list[Any]:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise CdsBadRequest("context.draftOrders must be a FHIR Bundle.")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise CdsBadRequest("context.draftOrders.entry must be a list.")
    return entries[:MAX_DRAFT_ORDERS]


def _patient(data: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Return ``prefetch.patient``; ``CdsPrefetchMissing`` when absent or null (this service never reads the FHIR
    server itself, even with ``fhirAuthorization``), ``CdsBadRequest`` when it is another patient."""
    prefetch = data.get("prefetch")
    patient = prefetch.get("patient") if isinstance(prefetch, dict) else None
    if patient is None:
        raise CdsPrefetchMissing("The prefetch key 'patient' is required.")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient" or patient.get("id") != patient_id:
        raise CdsBadRequest("prefetch.patient must be the Patient named by context.patientId.")
    return patient


def hook_request_parse(body: bytes, *, hook: str) -> HookRequest:
    """Parse and check a hook call's JSON ``body`` for a service of ``hook``.

    Raises ``CdsBadRequest`` (naming the field) for a body that is not a JSON object, another ``hook``, or a missing
    or malformed ``hookInstance``, ``context.userId``, ``context.patientId`` or ``context.draftOrders``; and
    ``CdsPrefetchMissing`` when ``prefetch.patient`` is missing or null.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CdsBadRequest("The body is not JSON.") from exc
    if not isinstance(data, dict):
        raise CdsBadRequest("The body must be a JSON object.")
    if data.get("hook") != hook:
        raise CdsBadRequest(f"hook must be '{hook}' for this service.")
    hook_instance = _text(data.get("hookInstance"), "hookInstance", limit=100)
    context = data.get("context")
    if not isinstance(context, dict):
        raise CdsBadRequest("context must be an object.")
    user_id = _text(context.get("userId"), "context.userId", limit=300)
    patient_id = _text(context.get("patientId"), "context.patientId", limit=64)
    if not FHIR_ID.fullmatch(patient_id):
        raise CdsBadRequest("context.patientId must be a FHIR id.")
    draft_orders = _draft_orders(context)
    selections = context.get("selections")
    chosen = [s for s in selections[:MAX_SELECTIONS] if isinstance(s, str)] if isinstance(selections, list) else []
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        user_id=user_id,
        patient_id=patient_id,
        draft_orders=draft_orders,
        patient=_patient(data, patient_id),
        selections=chosen,
    )


def _codings(resource: dict[str, Any]) -> list[tuple[str, str]]:
    concept = resource.get("codeCodeableConcept" if resource["resourceType"] == "DeviceRequest" else "code")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        return []
    return [
        (item["system"], item["code"])
        for item in codings
        if isinstance(item, dict) and isinstance(item.get("system"), str) and isinstance(item.get("code"), str)
    ]


def _for_patient(resource: dict[str, Any], patient_id: str) -> bool:
    """A draft order names its patient in ``subject``; one that names another patient gets no card."""
    subject = resource.get("subject")
    if subject is None:
        return True
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return isinstance(reference, str) and reference.rstrip("/").split("/")[-2:] == ["Patient", patient_id]


def draft_order_ref(entry: Any, patient_id: str) -> tuple[str, dict[str, Any]] | None:
    """Return ``("DeviceRequest/<id>", resource)`` for a usable DeviceRequest/ServiceRequest entry of the patient,
    or ``None`` for anything else (another type, no valid id, another patient)."""
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict) or resource.get("resourceType") not in REQUEST_TYPES:
        return None
    rid = resource.get("id")
    if not isinstance(rid, str) or not FHIR_ID.fullmatch(rid) or not _for_patient(resource, patient_id):
        return None
    return f"{resource['resourceType']}/{rid}", resource


def launch_url() -> str:
    """Return the SMART launch URL the cards link to: ``{APP_BASE_URL}/smart/launch``."""
    return settings.APP_BASE_URL.rstrip("/") + "/smart/launch"


def order_card(*, ref: str, product: Product) -> dict[str, Any]:
    """Return the card offering ``product`` for the draft order ``ref``, with a SMART link whose ``appContext``
    (a JSON string, ``{"draftOrder": "<Type>/<id>"}``) names the draft order for the launch."""
    prefix, suffix = "Order ", " through healthcommerce"
    name = product.name[: MAX_SUMMARY - len(prefix) - len(suffix)]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"{prefix}{name}{suffix}",
        "indicator": "info",
        "detail": "Sign the pre-filled order in healthcommerce; the patient then receives a link to confirm it.",
        "source": SOURCE,
        "links": [
            {
                "label": "Open the order in healthcommerce",
                "url": launch_url(),
                "type": "smart",
                "appContext": json.dumps({"draftOrder": ref}, separators=(",", ":")),
            }
        ],
    }


def _has_postal_address(patient: dict[str, Any]) -> bool:
    addresses = patient.get("address")
    if not isinstance(addresses, list):
        return False
    for address in addresses:
        if not isinstance(address, dict) or address.get("use") == "old":
            continue
        lines = address.get("line")
        if isinstance(lines, list) and any(isinstance(line, str) and line.strip() for line in lines):
            return True
    return False


def address_card() -> dict[str, Any]:
    """Return the warning card shown when the chart has no usable postal address: the order ships there."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "Add the patient's postal address in the chart before ordering through healthcommerce",
        "indicator": "warning",
        "source": SOURCE,
    }


def cards_build(*, site: EHRSite, request: HookRequest) -> list[dict[str, Any]]:
    """Return the cards for ``request`` at ``site``: one ``order_card`` per DeviceRequest or ServiceRequest draft
    order (only the ``selections`` of an ``order-select`` call, when it names some) whose code maps to an active
    product there (``catalog.selectors.mapping_for_codes``: a site's mapping wins over a global one), and an
    ``address_card`` first when there is one and the prefetched Patient has no postal address. Unmapped and
    unusable entries get no card."""
    wanted = set(request.selections) if request.hook == "order-select" else set()
    cards, seen = [], set()
    for entry in request.draft_orders:
        found = draft_order_ref(entry, request.patient_id)
        if found is None or found[0] in seen or (wanted and found[0] not in wanted):
            continue
        ref, resource = found
        seen.add(ref)
        mapping = mapping_for_codes(site=site, codings=_codings(resource))
        if mapping is not None:
            cards.append(order_card(ref=ref, product=mapping.product))
    if cards and not _has_postal_address(request.patient):
        cards.insert(0, address_card())
    return cards
