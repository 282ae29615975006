"""Turn fhirclient models into the few plain values an order needs (data minimization at read time).

Sources: FHIR R4 Patient, DeviceRequest, ServiceRequest, Coverage, Practitioner; US Core (NPI system
``http://hl7.org/fhir/sid/us-npi``); CMS Standard Written Order elements.
"""

import datetime
from dataclasses import dataclass, field
from typing import Any

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


class MalformedResource(ValueError):
    """A resource parsed but lacks what the order needs in a usable shape."""


@dataclass(frozen=True)
class PatientInfo:
    """Name, birth date, ship-to address (``line`` list, ``city``, ``state``, ``postal_code``, ``country``), contact."""

    name: str
    birth_date: datetime.date | None
    address: dict[str, Any]
    email: str
    phone: str


@dataclass(frozen=True)
class RequestInfo:
    """A DeviceRequest/ServiceRequest: reference, status, codings ``[(system, code, display)]``, quantity."""

    reference: str
    status: str
    codings: list[tuple[str, str, str]] = field(default_factory=list)
    text: str = ""
    quantity: int = 1
    subject: str = ""

    def patient_matches(self, patient_id: str) -> bool:
        """Return True when the request's subject is ``Patient/<patient_id>`` (relative or absolute)."""
        return self.subject.rstrip("/").endswith(f"Patient/{patient_id}")

    @property
    def display(self) -> str:
        """Return the request's text, else the first coding's display, else its code."""
        return self.text or next((d or c for _, c, d in self.codings), "")


@dataclass(frozen=True)
class CoverageInfo:
    """Payer name and member id from the patient's first active Coverage."""

    payer_name: str
    member_id: str


@dataclass(frozen=True)
class PractitionerInfo:
    """Practitioner display name and NPI (may be empty)."""

    name: str
    npi: str


def human_name(names: list[Any] | None) -> str:
    """Return ``"Given Middle Family"`` from the official/usual HumanName, else the first one."""
    if not names:
        return ""
    chosen = next((n for n in names if n.use in ("official", "usual")), names[0])
    if chosen.text:
        return str(chosen.text)
    given = [g for g in (chosen.given or []) if g != chosen.family]
    return " ".join([*(chosen.prefix or []), *given, chosen.family or ""]).strip()


def _address(addresses: list[Any] | None) -> dict[str, Any]:
    if not addresses:
        return {}
    usable = [a for a in addresses if a.use != "old" and a.type != "postal"] or addresses
    chosen = next((a for a in usable if a.use == "home"), usable[0])
    return {
        "line": list(chosen.line or []),
        "city": chosen.city or "",
        "state": chosen.state or "",
        "postal_code": chosen.postalCode or "",
        "country": chosen.country or "US",
    }


def _telecom(points: list[Any] | None, system: str) -> str:
    values = [p for p in (points or []) if p.system == system and p.value]
    preferred = sorted(values, key=lambda p: (p.rank or 99, p.use != "mobile"))
    return str(preferred[0].value) if preferred else ""


def patient_info(patient: Any) -> PatientInfo:
    """Return the order's patient fields from a fhirclient ``Patient``."""
    birth = patient.birthDate.date if patient.birthDate else None
    return PatientInfo(
        name=human_name(patient.name),
        birth_date=birth if isinstance(birth, datetime.date) else None,
        address=_address(patient.address),
        email=_telecom(patient.telecom, "email"),
        phone=_telecom(patient.telecom, "phone"),
    )


def request_info(request: Any) -> RequestInfo:
    """Return a ``RequestInfo`` from a fhirclient ``DeviceRequest`` or ``ServiceRequest``."""
    concept = getattr(request, "codeCodeableConcept", None) or getattr(request, "code", None)
    if concept is not None and not hasattr(concept, "coding"):
        concept = None  # DeviceRequest.codeReference: no codes to map
    codings = [(c.system or "", c.code or "", c.display or "") for c in (concept.coding or [])] if concept else []
    quantity = 1
    value = getattr(getattr(request, "quantityQuantity", None), "value", None)
    if value is not None:
        if value <= 0:
            raise MalformedResource("quantity must be positive")
        quantity = int(value)
    return RequestInfo(
        reference=f"{request.resource_type}/{request.id}",
        status=request.status or "",
        codings=codings,
        text=(concept.text or "") if concept else "",
        quantity=quantity,
        subject=(request.subject.reference or "") if request.subject else "",
    )


def coverage_info(coverages: list[Any]) -> CoverageInfo | None:
    """Return payer and member id from the first active Coverage, or None when there is none."""
    active = [c for c in coverages if c.status == "active"]
    if not active:
        return None
    coverage = active[0]
    payer = next((p.display for p in (coverage.payor or []) if p.display), "")
    plan = next((c.name or c.value for c in (coverage.class_fhir or []) if c.name or c.value), "")
    return CoverageInfo(payer_name=payer or plan or "Coverage on file", member_id=coverage.subscriberId or "")


def practitioner_info(practitioner: Any) -> PractitionerInfo:
    """Return name and NPI from a fhirclient ``Practitioner``."""
    npi = next((i.value for i in (practitioner.identifier or []) if i.system == NPI_SYSTEM and i.value), "")
    return PractitionerInfo(name=human_name(practitioner.name), npi=npi or "")
