"""Turn FHIR JSON into the few plain values an order needs, leniently (data minimization at read time).

Real EHR data is imperfect: each element the order uses is parsed on its own with fhirclient's element models
(``HumanName``, ``Address``, ``ContactPoint``, ``CodeableConcept``, ``Coding``, ``Quantity``, ``Reference``),
so a bad element costs only that element, with a warning that names it ("Patient: address 2 could not be
read"). Elements the order does not use (narrative ``text``, ``note``, ``reasonCode``, extensions,
``contained``) are never parsed and never kept. Every value is then checked against the column it will fill
(``COLUMN_LIMITS``: length, finite numbers, quantity 1 to 99); anything out of range is dropped with a warning.

Sources: FHIR R4 Patient, DeviceRequest, ServiceRequest, Coverage, Practitioner, PractitionerRole and the
datatypes above; US Core (NPI system ``http://hl7.org/fhir/sid/us-npi``); CMS Standard Written Order elements.
"""

import datetime
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from fhirclient.models.address import Address
from fhirclient.models.coding import Coding
from fhirclient.models.contactpoint import ContactPoint
from fhirclient.models.fhirabstractbase import FHIRAbstractBase, FHIRValidationError
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import PatientCommunication
from fhirclient.models.quantity import Quantity
from fhirclient.models.reference import Reference

from healthcommerce.core.language import language_supported

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatype "id"
MIN_QUANTITY, MAX_QUANTITY = 1, 99
EARLIEST_BIRTH = datetime.date(1900, 1, 1)
# Column sizes the extracted values must fit (orders.models.Order and the order form's ship-to fields).
COLUMN_LIMITS = {
    "name": 300,
    "address_line": 200,
    "city": 100,
    "state": 50,
    "postal_code": 20,
    "country": 2,
    "email": 254,
    "phone": 40,
    "payer_name": 300,
    "member_id": 100,
    "system": 200,
    "code": 64,
    "display": 300,
    "subject": 300,
}
# The sub-elements read from each datatype; the rest (period, extension, assigner ...) is never parsed.
USED = {
    "HumanName": {"use", "text", "family", "given", "prefix"},
    "Address": {"use", "type", "line", "city", "state", "postalCode", "country"},
    "ContactPoint": {"system", "value", "use", "rank"},
    "Coding": {"system", "code", "display"},
    "Identifier": {"system", "value"},
    "Reference": {"reference", "display", "identifier"},
    "Quantity": {"value"},
    "PatientCommunication": {"language", "preferred"},
}
PARSE_ERRORS = (FHIRValidationError, TypeError, ValueError, AttributeError, KeyError, IndexError)
E = TypeVar("E", bound=FHIRAbstractBase)


class MalformedResource(ValueError):
    """A resource lacks what makes it usable at all (not a JSON object, wrong ``resourceType``, no valid ``id``)."""


@dataclass
class Notes:
    """Warnings about one resource, each prefixed with its label (``"Patient"``, ``"DeviceRequest/dr1"``)."""

    label: str
    warnings: list[str] = field(default_factory=list)
    # Elements already parsed, so a list two columns read (``telecom``: email and phone) is parsed and warned once.
    parsed: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict, repr=False, compare=False)

    def warn(self, text: str) -> None:
        """Record ``"{label}: {text}"``."""
        self.warnings.append(f"{self.label}: {text}")

    def element(self, model: type[E], value: Any, name: str) -> E | None:
        """Return ``value`` parsed as fhirclient element ``model`` (strictly, only the sub-elements the order
        uses: ``USED``), or None with a warning naming it."""
        if value is None:
            return None
        try:
            if not isinstance(value, dict):
                raise TypeError("not a JSON object")
            used = USED.get(model.__name__)
            return model(known_only(model, {k: v for k, v in value.items() if used is None or k in used}), strict=True)
        except PARSE_ERRORS:
            self.warn(f"{name} could not be read")
            return None

    def elements(self, model: type[E], value: Any, name: str) -> list[E]:
        """Return each item of the list ``value`` parsed as ``model``; a bad item is dropped with a warning
        naming it (``"address 2 could not be read"``). A single object where a list belongs is accepted."""
        if value is None:
            return []
        key = (model.__name__, name, id(value))
        if key not in self.parsed:
            items = value if isinstance(value, list) else [value]
            named = [(item, f"{name} {n}" if len(items) > 1 else name) for n, item in enumerate(items, 1)]
            parsed = [self.element(model, item, label) for item, label in named]
            self.parsed[key] = [item for item in parsed if item is not None]
        return list(self.parsed[key])

    def text(self, value: Any, name: str, limit: int) -> str:
        """Return ``value`` stripped when it is a string of at most ``limit`` characters; else "" with a warning."""
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            self.warn(f"{name} is not text")
            return ""
        value = value.strip()
        if len(value) > limit:
            self.warn(f"{name} is longer than {limit} characters and was not used")
            return ""
        return value


@functools.cache
def _properties(model: Any) -> dict[str, Any]:
    """Return ``{json name: type}`` of ``model``'s elements (fhirclient ``elementProperties``)."""
    return {jsname: kind for _, jsname, kind, *_ in model().elementProperties()}


def known_only(model: Any, data: Any) -> Any:
    """Return ``data`` without the keys ``model`` does not define, recursively, and without extensions.

    Unknown elements and extensions are ignored (FHIR R4 "Extensibility": an application may ignore
    extensions it does not understand; modifier extensions on resources are reported by the caller), so they
    cannot make an element the order needs unreadable.
    """
    if isinstance(data, list):
        return [known_only(model, item) for item in data]
    if not isinstance(data, dict):
        return data
    properties = _properties(model)
    kept = {}
    for key, value in data.items():
        kind = properties.get(key)
        if kind is None or key in ("extension", "modifierExtension"):
            continue
        nested = isinstance(kind, type) and issubclass(kind, FHIRAbstractBase)
        kept[key] = known_only(kind, value) if nested else value
    return kept


def resource_check(data: Any, resource_type: str) -> dict[str, Any]:
    """Return ``data`` when it is a ``resource_type`` JSON object with a valid FHIR ``id``.

    Raises ``MalformedResource`` otherwise: without its type and id a resource cannot be referred to.
    """
    if not isinstance(data, dict) or data.get("resourceType") != resource_type:
        raise MalformedResource(f"not a {resource_type}")
    if not isinstance(data.get("id"), str) or not FHIR_ID.fullmatch(data["id"]):
        raise MalformedResource(f"{resource_type} without a valid id")
    return data


@dataclass(frozen=True)
class PatientInfo:
    """Name, birth date, ship-to address (``line`` list, ``city``, ``state``, ``postal_code``, ``country``), contact,
    and the language to write to the patient in (a code of ``settings.LANGUAGES``, "" when none is known)."""

    name: str
    birth_date: datetime.date | None
    address: dict[str, Any]
    email: str
    phone: str
    language: str = ""


@dataclass(frozen=True)
class RequestInfo:
    """A DeviceRequest/ServiceRequest: reference, status, codings ``[(system, code, display)]``, quantity."""

    reference: str
    status: str
    codings: list[tuple[str, str, str]] = field(default_factory=list)
    text: str = ""
    quantity: int | None = None
    subject: str = ""

    @property
    def resource_type(self) -> str:
        """Return ``DeviceRequest`` or ``ServiceRequest``."""
        return self.reference.partition("/")[0]

    def patient_matches(self, patient_id: str) -> bool:
        """Return True when the request's subject is ``Patient/<patient_id>`` (relative or absolute)."""
        subject = self.subject.rstrip("/")
        return subject == f"Patient/{patient_id}" or subject.endswith(f"/Patient/{patient_id}")

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


def human_name(names: list[HumanName]) -> str:
    """Return ``"Given Middle Family"`` from the official/usual HumanName, else the first one ("" for none)."""
    if not names:
        return ""
    chosen = next((n for n in names if n.use in ("official", "usual")), names[0])
    if isinstance(chosen.text, str) and chosen.text.strip():
        return chosen.text.strip()
    family = chosen.family if isinstance(chosen.family, str) else ""
    given = [g for g in _strings(chosen.given) if g != family]
    return " ".join(part for part in [*_strings(chosen.prefix), *given, family] if part).strip()


def _strings(value: Any) -> list[str]:
    """Return the string items of a list element (fhirclient does not check a list's item types)."""
    return [item.strip() for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _country(notes: Notes, value: Any) -> str:
    """Return an address's country as a two-letter code ("US" for the spelled-out United States), or "" with a
    warning when it is something else."""
    country = notes.text(value, "address country", 60).upper()
    if country in ("USA", "UNITED STATES", "UNITED STATES OF AMERICA"):
        return "US"
    if country and not re.fullmatch(r"[A-Z]{2}", country):
        notes.warn("address country is not a two-letter code; US assumed")
        return ""
    return country


def _address(notes: Notes, value: Any) -> dict[str, Any]:
    addresses = notes.elements(Address, value, "address")
    usable = [a for a in addresses if a.use != "old" and a.type != "postal"] or addresses
    if not usable:
        return {}
    chosen = next((a for a in usable if a.use == "home"), usable[0])
    limit = COLUMN_LIMITS
    raw_lines = chosen.line if isinstance(chosen.line, list) else []
    lines = [notes.text(line, "address line", limit["address_line"]) for line in raw_lines]
    country = _country(notes, chosen.country)
    return {
        "line": [line for line in lines if line][:2],
        "city": notes.text(chosen.city, "address city", limit["city"]),
        "state": notes.text(chosen.state, "address state", limit["state"]),
        "postal_code": notes.text(chosen.postalCode, "address postal code", limit["postal_code"]),
        "country": country or "US",
    }


def patient_address(data: dict[str, Any], notes: Notes) -> dict[str, Any]:
    """Return the ship-to address of Patient JSON ``data`` (``Order.ship_to`` shape: ``line`` list, ``city``,
    ``state``, ``postal_code``, ``country``), picked as pre-fill picks it: the home address, else the first one
    that is neither old nor postal-only; ``{}`` when there is none."""
    return _address(notes, data.get("address"))


def _telecom(notes: Notes, points: list[ContactPoint], system: str) -> str:
    values = [p for p in points if p.system == system and isinstance(p.value, str) and p.value.strip()]
    for point in sorted(values, key=lambda p: (p.rank or 99, p.use != "mobile")):
        value = notes.text(point.value, system, COLUMN_LIMITS[system])
        if system == "email" and value:
            try:
                validate_email(value)
            except ValidationError:
                notes.warn("email is not a valid address and was not used")
                continue
        if value:
            return value
    return ""


def _birth_date(notes: Notes, value: Any) -> datetime.date | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", value):
        notes.warn("birth date could not be read")
        return None
    if len(value) < 10:
        notes.warn("birth date is incomplete (year or month only)")
        return None
    try:
        born = datetime.date.fromisoformat(value)
    except ValueError:
        notes.warn("birth date could not be read")
        return None
    if not EARLIEST_BIRTH <= born <= datetime.date.today():
        notes.warn("birth date is out of range and was not used")
        return None
    return born


def _resource_name(notes: Notes, data: dict[str, Any]) -> str:
    """Return the display name of a Patient or Practitioner, or "" with a warning when it does not fit its column."""
    name = human_name(notes.elements(HumanName, data.get("name"), "name"))
    if len(name) > COLUMN_LIMITS["name"]:
        notes.warn(f"name is longer than {COLUMN_LIMITS['name']} characters and was not used")
        return ""
    return name


def _language(notes: Notes, value: Any) -> str:
    """Return the patient's language from ``Patient.communication`` as a code of ``settings.LANGUAGES``.

    The entry with ``preferred: true``, else the first readable one; its ``language.coding[].code`` (BCP 47,
    ``urn:ietf:bcp:47``: ``es``, ``es-MX``, ``en-US``) mapped by ``core.language.language_supported``, the first
    coding that maps winning. A code no supported language serves is ignored with a warning naming it; a bad
    entry costs only itself ("communication 2 could not be read"). FHIR R4 Patient.communication.
    """
    entries = [c for c in notes.elements(PatientCommunication, value, "communication") if c.language is not None]
    if not entries:
        return ""
    chosen = next((c for c in entries if c.preferred is True), entries[0])
    codes = [c.code.strip() for c in chosen.language.coding or [] if isinstance(c.code, str) and c.code.strip()]
    for code in codes:
        if supported := language_supported(code):
            return supported
    for code in codes[:3]:
        notes.warn(f"language {code[: COLUMN_LIMITS['code']]!r} is not offered to patients; English is used")
    return ""


def resource_name(data: dict[str, Any], notes: Notes) -> str:
    """Return the display name of Patient or Practitioner JSON ``data`` (``human_name``), "" when none fits."""
    return _resource_name(notes, data)


def birth_date(data: dict[str, Any], notes: Notes) -> datetime.date | None:
    """Return Patient ``birthDate`` as a full date from 1900 to today, else None with a warning."""
    return _birth_date(notes, data.get("birthDate"))


def _telecoms(data: dict[str, Any], notes: Notes) -> list[ContactPoint]:
    return notes.elements(ContactPoint, data.get("telecom"), "telecom")


def email(data: dict[str, Any], notes: Notes) -> str:
    """Return the first valid email of ``telecom`` (by ``rank``, mobile first), or ""."""
    return _telecom(notes, _telecoms(data, notes), "email")


def phone(data: dict[str, Any], notes: Notes) -> str:
    """Return the first phone number of ``telecom`` (by ``rank``, mobile first), or ""."""
    return _telecom(notes, _telecoms(data, notes), "phone")


def language(data: dict[str, Any], notes: Notes) -> str:
    """Return the patient's language from ``communication`` (``_language``), "" when none is offered."""
    return _language(notes, data.get("communication"))


def patient_info(data: dict[str, Any], notes: Notes) -> PatientInfo:
    """Return the order's patient fields from Patient JSON (checked with ``resource_check``)."""
    name = resource_name(data, notes)
    _telecoms(data, notes)  # parsed (and warned about) before the birth date, as the readiness check reports it
    return PatientInfo(
        name=name,
        birth_date=birth_date(data, notes),
        address=patient_address(data, notes),
        email=email(data, notes),
        phone=phone(data, notes),
        language=language(data, notes),
    )


def _codings(notes: Notes, value: Any) -> tuple[list[tuple[str, str, str]], str]:
    """Return ``([(system, code, display)], text)`` from a CodeableConcept, coding by coding."""
    if value is None:
        return [], ""
    if not isinstance(value, dict):
        notes.warn("code could not be read")
        return [], ""
    raw_text = value.get("text")
    text = raw_text if isinstance(raw_text, str) else ""
    found = []
    for coding in notes.elements(Coding, value.get("coding"), "code coding"):
        if not (coding.system and coding.code):
            notes.warn("a coding without both a system and a code was skipped")
            continue
        system = notes.text(coding.system, "code system", COLUMN_LIMITS["system"])
        code = notes.text(coding.code, "code", COLUMN_LIMITS["code"])
        if system and code:
            found.append((system, code, (coding.display or "").strip()[: COLUMN_LIMITS["display"]]))
    return found, text.strip()[: COLUMN_LIMITS["display"]]


def _quantity(notes: Notes, data: dict[str, Any]) -> int | None:
    """Return ServiceRequest ``quantityQuantity.value`` as a whole number 1 to 99, or None (use the default)."""
    quantity = notes.element(Quantity, data.get("quantityQuantity"), "quantity")
    value = quantity.value if quantity is not None else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        notes.warn("quantity is not a number; the catalog default was used")
        return None
    if value != int(value) or not MIN_QUANTITY <= value <= MAX_QUANTITY:
        notes.warn(f"quantity {value:g} is not a whole number from {MIN_QUANTITY} to {MAX_QUANTITY}; default used")
        return None
    return int(value)


def request_info(data: dict[str, Any], notes: Notes) -> RequestInfo:
    """Return a ``RequestInfo`` from DeviceRequest or ServiceRequest JSON (checked with ``resource_check``)."""
    kind = data["resourceType"]
    if kind == "DeviceRequest" and data.get("codeReference") is not None and data.get("codeCodeableConcept") is None:
        codings: list[tuple[str, str, str]] = []
        text = ""
        notes.warn("the device is a reference, not a code; pick a product")
    else:
        codings, text = _codings(notes, data.get("codeCodeableConcept" if kind == "DeviceRequest" else "code"))
    subject = notes.element(Reference, data.get("subject"), "subject")
    raw_status = data.get("status")
    status = raw_status if isinstance(raw_status, str) else ""
    return RequestInfo(
        reference=f"{kind}/{data['id']}",
        status=status[:20],
        codings=codings,
        text=text,
        quantity=_quantity(notes, data) if kind == "ServiceRequest" else None,
        subject=notes.text(subject.reference, "subject", COLUMN_LIMITS["subject"]) if subject else "",
    )


def coverage_active(coverages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the first Coverage JSON with ``status`` active, or None."""
    return next((c for c in coverages if c.get("status") == "active"), None)


def _class_name(coverage: dict[str, Any]) -> Any:
    raw = coverage.get("class")
    classes = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    return next((c.get("name") or c.get("value") for c in classes if c.get("name") or c.get("value")), "")


def payer_name(coverage: dict[str, Any], notes: Notes) -> str:
    """Return the payer of Coverage JSON: a ``payor`` display, else a ``class`` name or value; "Coverage on file"
    with a warning when none is usable."""
    payors = notes.elements(Reference, coverage.get("payor"), "payor")
    payer: Any = next((p.display.strip() for p in payors if isinstance(p.display, str) and p.display.strip()), "")
    payer = notes.text(payer or _class_name(coverage), "payer name", COLUMN_LIMITS["payer_name"])
    if not payer:
        notes.warn("payer name missing")
    return payer or "Coverage on file"


MAX_PAYER_KEYS = 10
PAYER_KEY_LIMIT = 200


def payer_keys(coverage: dict[str, Any], notes: Notes) -> list[str]:
    """Return the keys that identify Coverage JSON's payors (FHIR R4 Coverage.payor, a Reference): each
    ``reference`` (an absolute one also as its last ``Type/id``), each ``identifier`` as ``system|value`` and as its
    bare ``value``; in order, each once, at most ``MAX_PAYER_KEYS`` of at most ``PAYER_KEY_LIMIT`` characters
    (a longer one is dropped with a warning). Not PHI: they name the payer, not the patient."""
    keys: list[str] = []
    for payor in notes.elements(Reference, coverage.get("payor"), "payor"):
        reference = payor.reference.strip() if isinstance(payor.reference, str) else ""
        if reference:
            keys.append(reference)
            parts = reference.rstrip("/").split("/")
            if "://" in reference and len(parts) >= 2:
                keys.append("/".join(parts[-2:]))
        identifier = payor.identifier
        if identifier is not None and isinstance(identifier.value, str) and identifier.value.strip():
            value = identifier.value.strip()
            keys += [f"{identifier.system}|{value}"] if identifier.system else []
            keys.append(value)
    usable = [key for key in dict.fromkeys(keys) if len(key) <= PAYER_KEY_LIMIT]
    if len(usable) < len(dict.fromkeys(keys)):
        notes.warn(f"a payor key longer than {PAYER_KEY_LIMIT} characters was not used")
    return usable[:MAX_PAYER_KEYS]


def member_id(coverage: dict[str, Any], notes: Notes) -> str:
    """Return Coverage ``subscriberId`` (the member id), or ""."""
    return notes.text(coverage.get("subscriberId"), "member id", COLUMN_LIMITS["member_id"])


def coverage_info(coverages: list[dict[str, Any]], notes: Notes) -> CoverageInfo | None:
    """Return payer and member id from the first active Coverage JSON, or None when there is none."""
    coverage = coverage_active(coverages)
    if coverage is None:
        return None
    return CoverageInfo(payer_name=payer_name(coverage, notes), member_id=member_id(coverage, notes))


def npi(data: dict[str, Any], notes: Notes) -> str:
    """Return Practitioner JSON's NPI (``identifier`` with the US NPI system): ten digits, else "" with a warning."""
    identifiers = notes.elements(Identifier, data.get("identifier"), "identifier")
    found = next((str(i.value).strip() for i in identifiers if i.system == NPI_SYSTEM and i.value), "")
    if found and not re.fullmatch(r"\d{10}", found):
        notes.warn("NPI is not ten digits and was not used")
        return ""
    return found


def practitioner_info(data: dict[str, Any], notes: Notes) -> PractitionerInfo:
    """Return name and NPI (ten digits, else dropped with a warning) from Practitioner JSON."""
    return PractitionerInfo(name=resource_name(data, notes), npi=npi(data, notes))
