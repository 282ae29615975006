"""Hypothesis strategies for the pre-fill fuzz test (tests/orders/test_fuzz_prefill.py).

A ``FuzzCase`` is one launch: a fixture patient, an optional named request (``fhirContext``), a few
``Mutation``s of the real fixture JSON the launch reads (Patient, its DeviceRequests/ServiceRequests, Coverage,
Practitioner), whether the sandbox ignores ``_elements``, and an optional replacement for search Bundles'
``link``. Mutations are plain data (``apply`` makes the mutated copy), so a falsifying example prints as
something a person can replay.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

CANARY = "QQcanary7Z"  # planted where the commerce side must never look; appears in no fixture
ORDER_TYPES = ("DeviceRequest", "ServiceRequest")
PROTECTED = {"resourceType", "id", "meta"}  # top-level keys the sandbox itself relies on
NO_LINK = "<sandbox links>"
Path = tuple[str | int, ...]


def short(value: Any) -> str:
    """Return a compact repr: a long run of one character is written ``'x'*400``."""
    if isinstance(value, str) and len(value) > 40:
        if len(set(value)) == 1:
            return f"{value[0]!r}*{len(value)}"
        return repr(value[:30] + "...") + f"({len(value)} chars)"
    if isinstance(value, list | tuple):
        inner = ", ".join(short(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {short(v)}" for k, v in value.items()) + "}"
    return repr(value)


def path_text(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


@dataclass
class Mutation:
    """``kind`` applied to ``target`` (``Type/id``): ``drop`` removes ``path``; ``set`` puts ``value`` at
    ``path``, creating missing objects on the way (a wrong type, an unknown element, a long string, ...)."""

    target: str
    kind: str  # what the mutation means, for reports: drop, wrong_type, unknown, extension, long, ...
    path: Path
    value: Any = None

    def __repr__(self) -> str:
        value = "" if self.kind == "drop" else f" = {short(self.value)}"
        return f"<{self.kind} {self.target} {path_text(self.path)}{value}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints falsifying examples with it
        printer.text(repr(self))

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return a mutated deep copy of ``data``; a ``drop`` of a path that does not exist changes nothing."""
        data = copy.deepcopy(data)
        drop = self.kind == "drop"
        parent: Any = data
        for part, after in zip(self.path, self.path[1:], strict=False):
            shape: type = list if isinstance(after, int) else dict
            if isinstance(parent, dict) and isinstance(part, str):
                if drop and part not in parent:
                    return data
                if not drop and not isinstance(parent.get(part), shape):
                    parent[part] = shape()
            elif isinstance(parent, list) and isinstance(part, int):
                if part >= len(parent):
                    if drop:
                        return data
                    parent.extend(shape() for _ in range(part + 1 - len(parent)))
                if not drop and not isinstance(parent[part], shape):
                    parent[part] = shape()
            else:
                return data
            parent = parent[part]
        last = self.path[-1]
        if isinstance(parent, dict) and isinstance(last, str):
            if drop:
                parent.pop(last, None)
            else:
                parent[last] = copy.deepcopy(self.value)
        elif isinstance(parent, list) and isinstance(last, int):
            if last < len(parent):
                if drop:
                    del parent[last]
                else:
                    parent[last] = copy.deepcopy(self.value)
            elif not drop:
                parent.append(copy.deepcopy(self.value))
        return data


@dataclass
class FuzzCase:
    """One launch: ``patient``, ``request`` (``Type/id`` or "" for a search), the mutations, and the sandbox's
    behaviour: ``ignore_elements`` and ``bundle_link`` (``NO_LINK`` for the sandbox's own links)."""

    patient: str
    request: str
    mutations: tuple[Mutation, ...]
    ignore_elements: bool = False
    bundle_link: Any = NO_LINK

    def __repr__(self) -> str:
        parts = [f"patient={self.patient!r}", f"request={self.request!r}"]
        if self.ignore_elements:
            parts.append("ignore_elements=True")
        if self.bundle_link != NO_LINK:
            parts.append(f"bundle_link={short(self.bundle_link)}")
        parts.append(f"mutations={list(self.mutations)!r}")
        return f"FuzzCase({', '.join(parts)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def mutated(self, originals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Return ``{Type/id: data}`` for every resource a mutation changed, mutations applied in order."""
        changed: dict[str, dict[str, Any]] = {}
        for mutation in self.mutations:
            changed[mutation.target] = mutation.apply(changed.get(mutation.target, originals[mutation.target]))
        return changed


# --- values -------------------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1.5, 1e12, 2**63, -(2**31)]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(["", " ", "NaN", "Infinity", "-0", "null", "true", "1", "\u0000", "<b>x</b>", "é名🙂"]),
    st.text(max_size=12),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "value", "text", "url", "coding", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)
ODD_URLS = st.sampled_from(
    [
        "http://example.org/fhir/StructureDefinition/fuzz",
        "",
        "relative/StructureDefinition",
        "urn:oid:2.16.840.1.113883.4.642.1",
        "http://" + "u" * 500,
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
    ]
)
ODD_SYSTEMS = st.sampled_from(
    [
        "",
        "relative/CodeSystem",
        "urn:oid:2.16.840.1.113883.6.285",
        "http://" + "s" * 500,
        "HTTPS://WWW.CMS.GOV/Medicare/Coding/HCPCSReleaseCodeSets",
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets/",
        " http://loinc.org",
        "urn:uuid:6f3c0ab2-1d0f-4d4e-9a55-0f1f0bb1b3a4",
    ]
)
ODD_CODES = st.sampled_from([" E0601", "e0601", "E0601\n", "C" * 100, "0", "E0601 E0424", "‮E0601"])
QUANTITIES = st.sampled_from(["NaN", "Infinity", "-Infinity", 1e12, -1, 0, 1.5, "1", 99, 100, 2**63, True, None, {}])
CANARY_EXTENSION = st.builds(
    lambda url, which: [
        {"url": url, "valueString": CANARY},
        {"url": url, "valueCodeableConcept": {"text": CANARY}},
        {"url": url, "extension": [{"url": "inner", "valueString": CANARY}]},
        {"valueString": CANARY},
        {"url": 5, "valueInteger": "x"},
        "not-an-extension",
    ][which],
    ODD_URLS,
    st.integers(min_value=0, max_value=5),
)
CONTAINED = st.lists(
    st.sampled_from(
        [
            {"resourceType": "Condition", "id": "c1", "code": {"text": CANARY}},
            {"resourceType": "Patient", "id": "p1", "name": [{"text": CANARY}]},
            {"resourceType": "DeviceRequest", "id": "dr1", "status": "draft", "note": [{"text": CANARY}]},
            {"id": "no-type", "note": CANARY},
            {"resourceType": "NotAResource", "text": CANARY},
            CANARY,
        ]
    ),
    min_size=1,
    max_size=3,
)
NARRATIVES = st.sampled_from(
    [
        {"status": "generated"},
        {"status": "generated", "div": None},
        {"status": "empty", "div": ""},
        {"status": "generated", "div": 5},
        {"div": f'<div xmlns="http://www.w3.org/1999/xhtml">{CANARY}</div>'},
        {"status": "generated", "div": "<script>alert(1)</script>"},
        "generated",
    ]
)
LONG_LENGTHS = st.sampled_from([400, 1000, 5000, 100000])
LONG_CHARS = st.sampled_from(["x", "é", "名", "9"])
BUNDLE_LINKS = st.sampled_from(
    [
        "next",
        ["https://ehr.example/fhir/DeviceRequest?page=2"],
        [{}],
        [{"relation": "next"}],
        [{"relation": "next", "url": None}],
        [{"relation": "next", "url": 123}],
        [{"relation": 5, "url": "DeviceRequest"}],
        [{"relation": ["next"], "url": "x"}],
        {"relation": "next", "url": "x"},
        None,
        [{"relation": "next", "url": "relative/DeviceRequest?_offset=50"}],
        [{"relation": "next", "url": "https://other-origin.example/fhir/DeviceRequest?_offset=50"}],
        [{"relation": "self", "url": "x" * 5000}],
    ]
)


def wrong_type(current: Any) -> st.SearchStrategy[Any]:
    """A value of another JSON type than ``current`` (string <-> number <-> list <-> object <-> null <-> bool)."""
    kinds = {
        "str": st.sampled_from(["", "x", "12", "[]"]),
        "num": st.sampled_from([0, -1, 1.5, 1e12]),
        "list": st.sampled_from([[], ["x"], [None], [{"a": 1}]]),
        "dict": st.sampled_from([{}, {"value": "x"}, {"text": 1}]),
        "null": st.none(),
        "bool": st.booleans(),
    }
    mine = (
        "bool"
        if isinstance(current, bool)
        else "num"
        if isinstance(current, int | float)
        else "str"
        if isinstance(current, str)
        else "list"
        if isinstance(current, list)
        else "dict"
        if isinstance(current, dict)
        else "null"
    )
    return st.one_of(*(strategy for name, strategy in kinds.items() if name != mine))


# --- where to mutate ----------------------------------------------------------------------------------------


def paths(data: Any, prefix: Path = ()) -> list[Path]:
    """Every path below ``data`` (object keys and list indices), outer first; ``PROTECTED`` roots left out."""
    found: list[Path] = []
    children: list[tuple[str | int, Any]] = (
        list(data.items()) if isinstance(data, dict) else list(enumerate(data)) if isinstance(data, list) else []
    )
    for key, _child in children:
        if not prefix and key in PROTECTED:
            continue
        found.append((*prefix, key))
    for key, child in children:
        if not prefix and key in PROTECTED:
            continue
        found.extend(paths(child, (*prefix, key)))
    return found


READ = {  # the elements pre-fill reads (docs/architecture.md "Pre-fill"); mutations favour them
    "Patient": {"name", "birthDate", "address", "telecom"},
    "DeviceRequest": {"status", "intent", "codeCodeableConcept", "subject", "requester", "insurance", "parameter"},
    "ServiceRequest": {"status", "intent", "code", "subject", "requester", "insurance", "quantityQuantity"},
    "Coverage": {"status", "beneficiary", "payor", "class", "subscriberId"},
    "Practitioner": {"name", "identifier"},
}


def some_path(resource_type: str, candidates: list[Path]) -> st.SearchStrategy[Path]:
    """One of ``candidates``, half the time one under an element pre-fill reads."""
    read = [p for p in candidates if p and p[0] in READ.get(resource_type, set())]
    return st.one_of(st.sampled_from(read), st.sampled_from(candidates)) if read else st.sampled_from(candidates)


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def object_paths(data: dict[str, Any]) -> list[Path]:
    """The root and every object inside ``data``."""
    return [(), *(p for p in paths(data) if isinstance(_at(data, p), dict))]


def string_paths(data: dict[str, Any]) -> list[Path]:
    return [p for p in paths(data) if isinstance(_at(data, p), str)]


def coding_paths(data: dict[str, Any]) -> list[Path]:
    """Every Coding: an object in a list named ``coding``."""
    return [p for p in paths(data) if len(p) >= 2 and p[-2] == "coding" and isinstance(_at(data, p), dict)]


def _code_key(resource_type: str) -> str:
    return "codeCodeableConcept" if resource_type == "DeviceRequest" else "code"


def targeted(resource_type: str) -> list[tuple[str, Path, st.SearchStrategy[Any]]]:
    """Over-long or odd values at the elements pre-fill reads, per resource type."""
    long_text = st.builds(lambda n, ch: ch * n, LONG_LENGTHS, LONG_CHARS)
    if resource_type == "Patient":
        return [
            ("long_name", ("name", 0, "family"), long_text),
            ("long_name", ("name", 0, "given"), st.builds(lambda s: [s, s], long_text)),
            ("long_name", ("name", 0, "text"), long_text),
            ("long_phone", ("telecom",), st.just([{"system": "phone", "value": "+1 " + "5" * 57}])),
            ("long_email", ("telecom",), st.just([{"system": "email", "value": "a" * 300 + "@example.org"}])),
            ("odd_email", ("telecom",), st.just([{"system": "email", "value": "not an email"}])),
            ("long_address", ("address", 0, "line"), st.builds(lambda s: [s, s], long_text)),
            ("long_address", ("address", 0, "postalCode"), st.just("9" * 100)),
            ("long_address", ("address", 0, "country"), st.just("United States of America")),
            ("odd_birth_date", ("birthDate",), st.sampled_from(["1946", "1946-13-40", "tomorrow", "0000-01-01"])),
        ]
    if resource_type in ORDER_TYPES:
        code = _code_key(resource_type)
        quantity: list[tuple[str, Path, st.SearchStrategy[Any]]] = [
            ("quantity", ("quantityQuantity", "value"), QUANTITIES),
            ("quantity", ("quantityQuantity",), QUANTITIES),
        ]
        if resource_type == "DeviceRequest":
            quantity.append(
                (
                    "quantity",
                    ("parameter",),
                    st.builds(lambda v: [{"code": {"text": "quantity"}, "valueQuantity": {"value": v}}], QUANTITIES),
                )
            )
        return [
            *quantity,
            ("long_code", (code, "coding", 0, "code"), st.just("C" * 100)),
            ("odd_code", (code, "coding", 0, "code"), ODD_CODES),
            ("long_display", (code, "coding", 0, "display"), long_text),
            ("long_display", (code, "text"), long_text),
            ("odd_system", (code, "coding", 0, "system"), ODD_SYSTEMS),
            ("status", ("status",), st.sampled_from(["active", "draft", "on-hold", "DRAFT", ""])),
            ("subject", ("subject", "reference"), st.sampled_from(["Patient/other", "#p1", "Patient/", ""])),
        ]
    if resource_type == "Coverage":
        return [
            ("long_member_id", ("subscriberId",), st.just("M" * 200)),
            ("long_payer", ("payor", 0, "display"), long_text),
            ("long_payer", ("class", 0, "value"), long_text),
            ("long_payer", ("class", 0, "name"), long_text),
        ]
    return [  # Practitioner
        ("long_name", ("name", 0, "family"), long_text),
        ("long_npi", ("identifier", 0, "value"), st.just("1" * 100)),
    ]


RACE_CANARY = [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "valueString": CANARY}]


def canary_sites(resource_type: str) -> list[tuple[Path, Any]]:
    """Elements that must never reach the commerce side, each with a value holding ``CANARY``."""
    if resource_type in ORDER_TYPES:
        code = _code_key(resource_type)
        return [
            (("note",), [{"text": CANARY}]),
            (("reasonCode",), [{"text": CANARY, "coding": [{"system": "http://snomed.info/sct", "display": CANARY}]}]),
            (("reasonReference",), [{"display": CANARY}]),
            (("supportingInfo",), [{"display": CANARY}]),
            (("patientInstruction",), CANARY),
            ((code, "text"), CANARY),
            ((code, "coding", 0, "display"), CANARY),
            (("requester", "display"), CANARY),
        ]
    if resource_type == "Patient":
        return [
            (("identifier",), [{"system": "urn:mrn", "value": CANARY}]),
            (
                ("extension",),
                [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "valueString": CANARY}],
            ),
            (("name", 0, "extension"), [{"url": "http://example.org/diagnosis", "valueString": CANARY}]),
            (("maritalStatus",), {"text": CANARY}),
        ]
    if resource_type == "Coverage":
        return [(("payor", 0, "display"), CANARY), (("subscriberId",), CANARY), (("class", 0, "name"), CANARY)]
    return [(("name", 0, "text"), CANARY), (("qualification",), [{"code": {"text": CANARY}}])]


KINDS = (
    "drop",
    "wrong_type",
    "unknown",
    "extension",
    "primitive_extension",
    "contained",
    "long_string",
    "targeted",
    "odd_system",
    "narrative",
    "canary",
)


@st.composite
def mutations(draw: st.DrawFn, target: str, data: dict[str, Any]) -> Mutation:
    """One mutation of the resource ``target`` whose fixture JSON is ``data``."""
    resource_type = target.partition("/")[0]
    kind = draw(st.sampled_from(KINDS))
    if kind in ("drop", "wrong_type"):
        path = draw(some_path(resource_type, paths(data)))
        if kind == "drop":
            return Mutation(target, "drop", path)
        return Mutation(target, "wrong_type", path, draw(wrong_type(_at(data, path))))
    if kind == "unknown":
        where = draw(some_path(resource_type, object_paths(data)))
        key = draw(st.sampled_from(["fuzzUnknown", "valueWeird", "résumé", "_" + "x" * 80, "fhir_comments"]))
        return Mutation(target, "unknown", (*where, key), draw(JSON))
    if kind == "extension":
        where = draw(some_path(resource_type, object_paths(data)))
        name = draw(st.sampled_from(["extension", "modifierExtension"]))
        return Mutation(target, name, (*where, name), [draw(CANARY_EXTENSION)])
    if kind == "primitive_extension":
        primitives = [p for p in paths(data) if isinstance(p[-1], str) and isinstance(_at(data, p), str)]
        path = draw(some_path(resource_type, primitives))
        extension = {"extension": [{"url": draw(ODD_URLS), "valueString": CANARY}]}
        return Mutation(target, "primitive_extension", (*path[:-1], f"_{path[-1]}"), extension)
    if kind == "contained":
        return Mutation(target, "contained", ("contained",), draw(CONTAINED))
    if kind == "long_string":
        path = draw(some_path(resource_type, string_paths(data)))
        return Mutation(target, "long_string", path, draw(LONG_CHARS) * draw(LONG_LENGTHS))
    if kind == "targeted":
        name, path, values = draw(st.sampled_from(targeted(resource_type)))
        return Mutation(target, name, path, draw(values))
    if kind == "odd_system":
        codings = coding_paths(data)
        if not codings:
            return Mutation(target, "narrative", ("text",), draw(NARRATIVES))
        return Mutation(target, "odd_system", (*draw(some_path(resource_type, codings)), "system"), draw(ODD_SYSTEMS))
    if kind == "narrative":
        return Mutation(target, "narrative", ("text",), draw(NARRATIVES))
    path, value = draw(st.sampled_from(canary_sites(resource_type)))
    return Mutation(target, "canary", path, value)


@st.composite
def fuzz_cases(draw: st.DrawFn, patients: dict[str, list[str]], originals: dict[str, dict[str, Any]]) -> FuzzCase:
    """A launch for one of ``patients`` (``{patient id: [Type/id it reads]}``) with 0-4 mutations of what it
    reads (``originals``: ``{Type/id: fixture JSON}``)."""
    patient = draw(st.sampled_from(sorted(patients)))
    reads = patients[patient]
    requests = [ref for ref in reads if ref.partition("/")[0] in ORDER_TYPES]
    request = draw(st.one_of(st.just(""), st.sampled_from(requests)))
    # A search launch reads every request of the patient; a named launch reads only the named one.
    targets = [ref for ref in reads if ref.partition("/")[0] not in ORDER_TYPES or not request or ref == request]
    found = draw(
        st.lists(
            st.sampled_from(targets).flatmap(lambda ref: mutations(ref, originals[ref])),
            max_size=4,
        )
    )
    ignore_elements = draw(st.booleans())
    bundle_link = draw(st.one_of(st.just(NO_LINK), BUNDLE_LINKS))
    return FuzzCase(patient, request, tuple(found), ignore_elements, bundle_link)
