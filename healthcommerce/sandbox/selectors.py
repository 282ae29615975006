"""Read-only queries of the sandbox EHR: resources, tokens and the EHR page's patient list."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from healthcommerce.sandbox.models import FhirResource, SandboxToken, secret_hash
from healthcommerce.sandbox.r4 import ORDER_TYPES, PENDING_ORDER_STATUSES


@dataclass(frozen=True)
class OrderRow:
    """A pending DeviceRequest or ServiceRequest on the EHR page; ``ref`` is ``Type/id``."""

    ref: str
    code: str
    display: str
    status: str


@dataclass
class PatientRow:
    """A patient on the EHR page with their pending orders."""

    id: str
    name: str
    birth_date: str
    orders: list[OrderRow] = field(default_factory=list)


def resource_get(*, resource_type: str, fhir_id: str) -> FhirResource | None:
    """Return the stored resource ``resource_type/fhir_id`` or None."""
    return FhirResource.objects.filter(resource_type=resource_type, fhir_id=fhir_id).first()


def token_for_bearer(*, access_token: str) -> SandboxToken | None:
    """Return the unexpired token whose value is ``access_token`` (with its launch), or None."""
    if not access_token:
        return None
    return (
        SandboxToken.objects.select_related("launch", "client")
        .filter(access_token_hash=secret_hash(access_token), expires_at__gt=timezone.now())
        .first()
    )


def human_name(data: dict[str, Any]) -> str:
    """Return a display name from a FHIR resource's first ``name`` (HumanName), or its id."""
    names = data.get("name")
    if isinstance(names, list) and names and isinstance(names[0], dict):
        name = names[0]
        if name.get("text"):
            return str(name["text"])
        given = " ".join(str(g) for g in name.get("given") or [])
        return " ".join(part for part in (given, str(name.get("family") or "")) if part) or str(data.get("id"))
    return str(data.get("id"))


def _order_row(row: FhirResource) -> OrderRow:
    concept = row.data.get("codeCodeableConcept") or row.data.get("code") or {}
    codings = concept.get("coding") or [{}] if isinstance(concept, dict) else [{}]
    coding = codings[0] if isinstance(codings[0], dict) else {}
    display = coding.get("display") or (concept.get("text") if isinstance(concept, dict) else "") or ""
    return OrderRow(ref=str(row), code=str(coding.get("code") or ""), display=str(display), status=row.status)


def ehr_patients() -> list[PatientRow]:
    """Return every Patient with its draft/active orders; patients with pending orders first, then by name."""
    orders: dict[str, list[OrderRow]] = defaultdict(list)
    pending = FhirResource.objects.filter(
        resource_type__in=ORDER_TYPES, status__in=PENDING_ORDER_STATUSES, patient_id__isnull=False
    ).order_by("resource_type", "fhir_id")
    for row in pending:
        orders[str(row.patient_id)].append(_order_row(row))
    patients = [
        PatientRow(
            id=row.fhir_id,
            name=human_name(row.data),
            birth_date=str(row.data.get("birthDate") or ""),
            orders=orders.get(row.fhir_id, []),
        )
        for row in FhirResource.objects.filter(resource_type="Patient")
    ]
    patients.sort(key=lambda p: (not p.orders, p.name.lower(), p.id))
    return patients


def practitioners() -> list[tuple[str, str]]:
    """Return ``(id, name)`` of every Practitioner, sorted by name."""
    rows = FhirResource.objects.filter(resource_type="Practitioner")
    return sorted(((row.fhir_id, human_name(row.data)) for row in rows), key=lambda item: item[1].lower())


def patient_row(patient_id: str) -> PatientRow | None:
    """Return one Patient with its draft/active orders (the draft-order page of the CDS Hooks client), or None."""
    row = resource_get(resource_type="Patient", fhir_id=patient_id)
    if row is None:
        return None
    pending = FhirResource.objects.filter(
        resource_type__in=ORDER_TYPES, status__in=PENDING_ORDER_STATUSES, patient_id=patient_id
    ).order_by("resource_type", "fhir_id")
    return PatientRow(
        id=row.fhir_id,
        name=human_name(row.data),
        birth_date=str(row.data.get("birthDate") or ""),
        orders=[_order_row(order) for order in pending],
    )
