"""Hypothesis strategies for the commerce-boundary property tests (tests/fulfillment/test_boundary.py and
tests/fulfillment/backends/medusa/test_medusa_boundary.py).

A ``BoundaryCase`` is a pre-fill fuzz ``FuzzCase`` (tests/orders/fuzz_strategies.py) whose mutations plant
clinical content into the fixture resources a launch reads: notes, diagnoses (``reasonCode``,
``reasonReference``, a contained ``Condition``), extensions and modifier extensions, ``supportingInfo``, the
request's display, the birth date, the Coverage member id and payer, the practitioner's name and NPI. Each
planted text is a sentinel ``CLIN-<where>-<8 hex>`` that no fixture and no commerce value contains, so finding
one in outbound bytes can only mean it leaked; ``planted`` lists every value to look for. A few of the pre-fill
fuzz's own mutations (``mutations``) are mixed in, and ``_elements`` is mostly ignored by the sandbox, so the
clinical elements do reach the app.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.orders.fuzz_strategies import ORDER_TYPES, FuzzCase, Mutation, mutations

SENTINEL_PREFIX = "CLIN-"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_CODES = ("E11.9", "G47.33", "J44.9", "E66.01", "I50.9", "J96.11", "Z99.81", "E11.65")
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
EXTENSION_URL = "http://example.org/fhir/StructureDefinition/clinical-detail"
BIRTH_DATES = st.dates(min_value=datetime.date(1920, 1, 1), max_value=datetime.date(2005, 12, 31))


@dataclass
class BoundaryCase:
    """A launch with clinical content planted (``fuzz``) and the values that must never cross (``planted``)."""

    fuzz: FuzzCase
    planted: tuple[str, ...]

    def __repr__(self) -> str:
        return f"BoundaryCase({self.fuzz!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


Plant = tuple[Mutation, tuple[str, ...]]


def sentinel(where: str) -> st.SearchStrategy[str]:
    """``CLIN-<where>-<8 hex>``: distinctive, so a match in outbound bytes is never a coincidence."""
    return st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: f"{SENTINEL_PREFIX}{where}-{n:08x}")


def _extension(value: str) -> list[dict[str, Any]]:
    return [{"url": EXTENSION_URL, "valueString": value}]


def _diagnosis(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": ICD10, "code": code, "display": display}], "text": display}


@st.composite
def request_plant(draw: st.DrawFn, target: str) -> Plant:
    """Clinical content on a DeviceRequest/ServiceRequest: what pre-fill must not keep, or keeps only on the
    ``Order`` (the request's display)."""
    code_key = "codeCodeableConcept" if target.startswith("DeviceRequest/") else "code"
    text, other, icd = draw(sentinel("req")), draw(sentinel("req")), draw(st.sampled_from(ICD10_CODES))
    sites: list[tuple[tuple[str | int, ...], Any, tuple[str, ...]]] = [
        (("note",), [{"text": text}, {"text": other}], (text, other)),
        (("reasonCode",), [_diagnosis(icd, text)], (icd, text)),
        (("reasonReference",), [{"reference": f"Condition/{other}", "display": text}], (text, other)),
        (
            ("contained",),
            [{"resourceType": "Condition", "id": "dx1", "code": _diagnosis(icd, text), "note": [{"text": other}]}],
            (icd, text, other),
        ),
        (("extension",), _extension(text), (text,)),
        (("modifierExtension",), _extension(text), (text,)),
        (("supportingInfo",), [{"reference": f"Observation/{other}", "display": text}], (text, other)),
        (("patientInstruction",), text, (text,)),
        ((code_key, "text"), text, (text,)),
        ((code_key, "coding", 0, "display"), text, (text,)),
        ((code_key, "coding", 0, "extension"), _extension(text), (text,)),
        ((code_key, "coding", 0, "_display"), {"extension": _extension(text)}, (text,)),
        (("requester", "display"), text, (text,)),
        (("insurance",), [{"reference": f"Coverage/{other}", "display": text}], (text, other)),
        (("parameter",), [{"code": {"text": text}, "valueCodeableConcept": {"text": other}}], (text, other)),
    ]
    path, value, planted = draw(st.sampled_from(sites))
    return Mutation(target, "clinical", path, value), planted


@st.composite
def patient_plant(draw: st.DrawFn, target: str) -> Plant:
    """Clinical content on the Patient: a birth date (kept on the ``Order``), identifiers and extensions, also
    on the elements pre-fill reads (name, address, telecom)."""
    text = draw(sentinel("pat"))
    born = draw(BIRTH_DATES).isoformat()
    sites: list[tuple[tuple[str | int, ...], Any, tuple[str, ...]]] = [
        (("birthDate",), born, (born,)),
        (("identifier",), [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": text}], (text,)),
        (("extension",), _extension(text), (text,)),
        (("name", 0, "extension"), _extension(text), (text,)),
        (("address", 0, "extension"), _extension(text), (text,)),
        (("address", 0, "_city"), {"extension": _extension(text)}, (text,)),
        (("telecom", 0, "extension"), _extension(text), (text,)),
        (("maritalStatus",), {"text": text}, (text,)),
        (("generalPractitioner",), [{"display": text}], (text,)),
        (("text",), {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}, (text,)),
    ]
    path, value, planted = draw(st.sampled_from(sites))
    return Mutation(target, "clinical", path, value), planted


@st.composite
def coverage_plant(draw: st.DrawFn, target: str) -> Plant:
    """The member id and payer (kept on the ``Order``) and other Coverage content."""
    text = draw(sentinel("cov"))
    sites: list[tuple[tuple[str | int, ...], Any]] = [
        (("subscriberId",), text),
        (("payor", 0, "display"), text),
        (("class", 0, "name"), text),
        (("class", 0, "value"), text),
        (("identifier",), [{"value": text}]),
        (("extension",), _extension(text)),
    ]
    path, value = draw(st.sampled_from(sites))
    return Mutation(target, "clinical", path, value), (text,)


@st.composite
def practitioner_plant(draw: st.DrawFn, target: str) -> Plant:
    """The signer's name and NPI (kept on the ``Order``) and a qualification."""
    text = draw(sentinel("pra"))
    npi = str(draw(st.integers(min_value=10**9, max_value=10**10 - 1)))
    sites: list[tuple[tuple[str | int, ...], Any, tuple[str, ...]]] = [
        (("name",), [{"use": "official", "text": text}], (text,)),
        (("identifier",), [{"system": NPI_SYSTEM, "value": npi}], (npi,)),
        (("qualification",), [{"code": {"text": text}}], (text,)),
    ]
    path, value, planted = draw(st.sampled_from(sites))
    return Mutation(target, "clinical", path, value), planted


def plant(target: str) -> st.SearchStrategy[Plant]:
    """One planting of clinical content into ``target`` (``Type/id``)."""
    resource_type = target.partition("/")[0]
    if resource_type in ORDER_TYPES:
        return request_plant(target)
    if resource_type == "Patient":
        return patient_plant(target)
    if resource_type == "Coverage":
        return coverage_plant(target)
    return practitioner_plant(target)


@st.composite
def boundary_cases(
    draw: st.DrawFn, patients: dict[str, list[str]], originals: dict[str, dict[str, Any]]
) -> BoundaryCase:
    """A launch for one of ``patients`` (``{patient id: [Type/id it reads]}``) with 1-8 plantings of clinical
    content and 0-2 of the pre-fill fuzz's mutations of what it reads (``originals``: ``{Type/id: JSON}``)."""
    patient = draw(st.sampled_from(sorted(patients)))
    reads = patients[patient]
    requests = [ref for ref in reads if ref.partition("/")[0] in ORDER_TYPES]
    request = draw(st.one_of(st.just(""), st.sampled_from(requests)))
    targets = [ref for ref in reads if ref.partition("/")[0] not in ORDER_TYPES or not request or ref == request]
    noise = draw(st.lists(st.sampled_from(targets).flatmap(lambda ref: mutations(ref, originals[ref])), max_size=2))
    plants = draw(st.lists(st.sampled_from(targets).flatmap(plant), min_size=1, max_size=8))
    ignore_elements = draw(st.sampled_from([True, True, True, False]))  # mostly: let the clinical elements in
    fuzz = FuzzCase(patient, request, (*noise, *(m for m, _ in plants)), ignore_elements)
    return BoundaryCase(fuzz, tuple(value for _, values in plants for value in values))


# --- HL7 v2 input ----------------------------------------------------------------------------------------------

# Items the seeded catalog maps (catalog migration 0002): (code, HL7 coding system, text, detail segment for ORM).
HL7_ITEMS = (
    ("E0601", "HCPCS", "CPAP device", "RQD"),
    ("E0424", "HCPCS", "Stationary oxygen", "RQD"),
    ("E0607", "HCPCS", "Glucose monitor", "OBR"),
    ("29771-3", "LN", "FIT kit", "OBR"),
    ("4548-4", "LN", "HbA1c kit", "OBR"),
)
_LETTERS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=12)
Z_SEGMENTS = ("ZPV", "ZOR", "ZXX", "ZDX")


@dataclass
class Hl7BoundaryCase:
    """An HL7 v2 order message (``lines``, one segment each) with clinical content planted in DG1, NTE, OBX, AL1,
    Z-segments and the clinical fields of the segments the order reads (OBR-13, OBR-31, ORC-16), and the values
    that must never cross or be kept on the order (``planted``)."""

    lines: list[str]
    planted: tuple[str, ...]


@st.composite
def _noise(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """One clinical segment: a diagnosis (DG1, ICD-10), a note (NTE), an observation (OBX), an allergy (AL1) or a
    site's Z-segment, each with a sentinel."""
    text, icd = draw(sentinel("hl7")), draw(st.sampled_from(ICD10_CODES))
    choices = [
        (f"DG1|1|I10|{icd}^{text}^I10||20261201|A", (icd, text)),
        (f"NTE|1|P|{text}", (text,)),
        (f"OBX|1|ST|8302-2^Body height^LN||{text}||||||F", (text,)),
        (f"OBX|2|CE|29463-7^Body weight^LN||{icd}^{text}^I10||||||F", (icd, text)),
        (f"AL1|1|DA|^{text}", (text,)),
        (f"{draw(st.sampled_from(Z_SEGMENTS))}|1|{text}|{icd}", (text, icd)),
    ]
    return draw(st.sampled_from(choices))


@st.composite
def hl7_boundary_cases(draw: st.DrawFn) -> Hl7BoundaryCase:
    """An ORM^O01 (RQD or OBR) or OML^O21 (OBR) for a mapped item, a complete patient, and 1-8 clinical plantings
    at random places after MSH."""
    code, system, text, detail = draw(st.sampled_from(HL7_ITEMS))
    oml = detail == "OBR" and draw(st.booleans())
    family, given = draw(_LETTERS), draw(_LETTERS)
    born = draw(BIRTH_DATES).strftime("%Y%m%d")
    reason, clinical_info, control_reason = draw(sentinel("obr")), draw(sentinel("obr")), draw(sentinel("orc"))
    icd = draw(st.sampled_from(ICD10_CODES))
    orc = f"ORC|NW|PLC-{draw(st.integers(1, 10**6))}|||||||20261206101200|||1234567893^HALE^ANN^^^^^^NPI||||"
    orc += f"{control_reason}"
    if detail == "RQD" and not oml:
        item = f"RQD|1|{code}^{text}^{system}|||1|EA"
        planted: tuple[str, ...] = (control_reason,)
    else:
        item = f"OBR|1|PLC-1||{code}^{text}^{system}|||||||||{clinical_info}|||||||||||||||||||{icd}^{reason}^I10"
        planted = (control_reason, clinical_info, reason, icd)
    lines = [
        f"MSH|^~\\&|EPIC|SANDBOXHOSP|HC|HC|20261206101500||{'OML^O21' if oml else 'ORM^O01'}|M1|P|2.5.1",
        f"PID|1||E1^^^EPIC^MR||{family}^{given}^^^^^L||{born}|F|||1 MAIN ST^^RICHMOND^VA^23219^USA^H||"
        f"^PRN^CP^^1^804^5551234~^NET^Internet^{given.lower()}@example.org",
        orc,
        item,
    ]
    for segment, values in draw(st.lists(_noise(), min_size=1, max_size=8)):
        lines.insert(draw(st.integers(min_value=1, max_value=len(lines))), segment)
        planted += values
    return Hl7BoundaryCase(lines, planted)
