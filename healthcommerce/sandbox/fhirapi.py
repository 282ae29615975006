"""Read-only FHIR R4 REST API of the sandbox: read, search, scope and compartment enforcement, faults.

Sources: FHIR R4 RESTful API (read, search-type, searchset Bundle, OperationOutcome), SMART App Launch 2.2
"Scopes and Launch Context" (patient/ scopes limit access to the launch patient's compartment), RFC 6750
section 3 (``WWW-Authenticate``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from healthcommerce.sandbox.errors import (
    FhirBadRequest,
    FhirError,
    FhirForbidden,
    FhirNotFound,
    FhirUnauthorized,
)
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.r4 import RESOURCE_TYPES, SHARED_TYPES
from healthcommerce.sandbox.scopes import Context, Interaction, access_context
from healthcommerce.sandbox.selectors import resource_get, token_for_bearer

DEFAULT_COUNT = 50
MAX_COUNT = 200
OFFSET_PARAM = "_offset"
_REFERENCE_PARAMS = ("patient", "subject", "beneficiary")
_IGNORED_PARAMS = ("_format",)
ELEMENTS_PARAM = "_elements"
INCLUDE_PARAM = "_include"
_SUPPORTED_PARAMS = {
    *_REFERENCE_PARAMS, "status", "_id", "_count", OFFSET_PARAM, ELEMENTS_PARAM, INCLUDE_PARAM, *_IGNORED_PARAMS,
}  # fmt: skip
_MANDATORY_ELEMENTS = {"resourceType", "id", "meta"}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def elements_subset(resource: dict[str, Any], elements: Sequence[str]) -> dict[str, Any]:
    """Return ``resource`` with only the top-level ``elements`` (plus ``resourceType``, ``id``, ``meta``),
    tagged ``SUBSETTED`` (FHIR R4 search 3.1.1.5.9 ``_elements``). A choice element ``code`` also keeps
    ``codeCodeableConcept``/``codeReference``. No ``elements`` returns the resource unchanged."""
    wanted = {e.strip() for value in elements for e in value.split(",") if e.strip()}
    if not wanted:
        return resource
    kept = {
        key: value
        for key, value in resource.items()
        if key in _MANDATORY_ELEMENTS
        or key in wanted
        or any(key.startswith(w) and key[len(w) : len(w) + 1].isupper() for w in wanted)
    }
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


# Stored but not served: a subscriber's Subscription carries its bearer token in channel.header (sandbox/notify.py).
NOT_SERVED = frozenset({"Subscription"})
_STORED_TYPES = RESOURCE_TYPES - {"Bundle", "CapabilityStatement", "OperationOutcome"} - NOT_SERVED
TEST_HOOK = ("SandboxTestHook", "fuzz")  # (resource_type, fhir_id) of the row ``test_hook`` reads


def test_hook() -> dict[str, Any]:
    """Test only (tests/orders/test_fuzz_prefill.py): return the ``data`` of the ``FhirResource`` row
    ``TEST_HOOK`` (``{}`` when absent or when ``SANDBOX_ENABLED`` is off). ``"link"`` (any JSON value) replaces a
    search Bundle's ``link``; ``"ignoreElements": true`` ignores ``_elements``, which FHIR R4 search 3.1.1.5.9
    allows a server to do. The row is never served: its type is not an R4 resource type."""
    if not settings.SANDBOX_ENABLED:
        return {}
    row = FhirResource.objects.filter(resource_type=TEST_HOOK[0], fhir_id=TEST_HOOK[1]).first()
    return row.data if row is not None and isinstance(row.data, dict) else {}


@dataclass(frozen=True)
class Caller:
    """Who calls the FHIR API: the token's granted ``scope`` and launch ``patient_id``; ``backend`` for a client
    credentials token (no launch, ``patient_id`` empty: SMART 2.2 "Backend Services")."""

    scope: str
    patient_id: str
    backend: bool = False


def caller_for(authorization: str) -> Caller:
    """Return the caller of an ``Authorization: Bearer <token>`` header.

    Raises ``FhirUnauthorized`` for a missing, unknown or expired token.
    """
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise FhirUnauthorized()
    token = token_for_bearer(access_token=value.strip())
    if token is None:
        raise FhirUnauthorized("The access token is invalid or expired.")
    if token.launch is None:
        return Caller(scope=token.scope, patient_id="", backend=True)
    return Caller(scope=token.scope, patient_id=token.launch.patient_id)


def check_resource_type(resource_type: str) -> None:
    """Raise ``FhirNotFound`` unless ``resource_type`` is an R4 resource type this API serves."""
    if resource_type not in _STORED_TYPES:
        raise FhirNotFound(f"Unknown resource type {resource_type[:64]!r}.")


def _context(caller: Caller, resource_type: str, interaction: Interaction) -> Context:
    context = access_context(caller.scope, resource_type, interaction, backend=caller.backend)
    if context is None:
        verb = "read" if interaction == "r" else "search"
        raise FhirForbidden(f"The granted scopes do not allow {verb} of {resource_type}.")
    return context


def fhir_read(*, caller: Caller, resource_type: str, fhir_id: str, elements: Sequence[str] = ()) -> dict[str, Any]:
    """Return the resource ``resource_type/fhir_id`` (FHIR R4 "read"), subset to ``elements`` when given.

    Raises ``FhirNotFound`` (unknown type or id), ``FhirForbidden`` (scope does not cover the type, or a
    patient/ scope and the resource is in another patient's compartment).
    """
    check_resource_type(resource_type)
    context = _context(caller, resource_type, "r")
    row = resource_get(resource_type=resource_type, fhir_id=fhir_id)
    if row is None:
        raise FhirNotFound(f"{resource_type}/{fhir_id[:64]} is not known.")
    if context == "patient" and not _in_compartment(row, caller.patient_id):
        raise FhirForbidden("The resource is outside the launch patient's compartment.")
    return elements_subset(row.data, () if test_hook().get("ignoreElements") else elements)


def _in_compartment(row: FhirResource, patient_id: str) -> bool:
    if row.patient_id is None:
        return row.resource_type in SHARED_TYPES
    return row.patient_id == patient_id


def _single(params: Mapping[str, Sequence[str]], name: str, default: int, maximum: int | None) -> int:
    values = params.get(name) or []
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        raise FhirBadRequest(f"{name} must be a whole number.") from None
    if number < 0:
        raise FhirBadRequest(f"{name} must not be negative.")
    return min(number, maximum) if maximum is not None else number


def _patient_ids(value: str) -> list[str]:
    """Return the Patient ids of ``123,Patient/456``; a reference to another type matches nothing."""
    ids = []
    for item in value.split(","):
        parts = item.strip().rstrip("/").split("/")
        if len(parts) == 1 or parts[-2] == "Patient":
            ids.append(parts[-1])
    return ids


def _filtered(queryset: QuerySet[FhirResource], params: Mapping[str, Sequence[str]]) -> QuerySet[FhirResource]:
    """Apply the search parameters; a repeated parameter ANDs, commas inside one value OR (FHIR R4 search 3.1.1.4)."""
    unknown = sorted(set(params) - _SUPPORTED_PARAMS)
    if unknown:
        raise FhirBadRequest(f"Unsupported search parameter {unknown[0][:64]!r}.")
    for name in _REFERENCE_PARAMS:
        for value in params.get(name) or []:
            queryset = queryset.filter(patient_id__in=_patient_ids(value))
    for value in params.get("status") or []:
        queryset = queryset.filter(status__in=[s.strip() for s in value.split(",")])
    for value in params.get("_id") or []:
        queryset = queryset.filter(fhir_id__in=[s.strip() for s in value.split(",")])
    return queryset


def _page_url(fhir_base: str, resource_type: str, params: Mapping[str, Sequence[str]], offset: int) -> str:
    pairs = [(k, v) for k, values in sorted(params.items()) if k != OFFSET_PARAM for v in values]
    if offset:
        pairs.append((OFFSET_PARAM, str(offset)))
    query = urlencode(pairs)
    return f"{fhir_base}/{resource_type}" + (f"?{query}" if query else "")


def fhir_search(
    *, caller: Caller, resource_type: str, params: Mapping[str, Sequence[str]], fhir_base: str
) -> dict[str, Any]:
    """Return a searchset Bundle (FHIR R4 "search") with ``total``, ``link`` self/next/previous and entries
    ``{"fullUrl", "resource", "search": {"mode": "match"}}``.

    ``params`` maps names to value lists (``request.GET`` as dict of lists). Supports ``patient``, ``subject``,
    ``beneficiary`` (``123`` or ``Patient/123``), ``status``, ``_id``, ``_count`` (default 50, at most 200) and
    ``_offset``. Under patient/ scopes the search is limited to the launch patient. Raises ``FhirNotFound``,
    ``FhirForbidden`` or ``FhirBadRequest`` (unsupported parameter or bad number).
    """
    check_resource_type(resource_type)
    context = _context(caller, resource_type, "s")
    queryset = _filtered(FhirResource.objects.filter(resource_type=resource_type), params)
    if context == "patient" and resource_type not in SHARED_TYPES:
        queryset = queryset.filter(patient_id=caller.patient_id)
    count = _single(params, "_count", DEFAULT_COUNT, MAX_COUNT)
    offset = _single(params, OFFSET_PARAM, 0, None)
    total = queryset.count()
    rows = list(queryset.order_by("fhir_id")[offset : offset + count]) if count else []
    links = [{"relation": "self", "url": _page_url(fhir_base, resource_type, params, offset)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": _page_url(fhir_base, resource_type, params, offset + count)})
    if count and offset > 0:
        previous = max(offset - count, 0)
        links.append({"relation": "previous", "url": _page_url(fhir_base, resource_type, params, previous)})
    hook = test_hook()
    elements = [] if hook.get("ignoreElements") else params.get(ELEMENTS_PARAM) or []
    included = _included(caller, resource_type, rows, params.get(INCLUDE_PARAM) or [])
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": timezone.now().isoformat()},
        "type": "searchset",
        "total": total,
        "link": hook.get("link", links),
        "entry": [
            {
                "fullUrl": f"{fhir_base}/{row.resource_type}/{row.fhir_id}",
                "resource": elements_subset(row.data, elements),
                "search": {"mode": "match"},
            }
            for row in rows
        ]
        + [
            {
                "fullUrl": f"{fhir_base}/{row.resource_type}/{row.fhir_id}",
                "resource": row.data,
                "search": {"mode": "include"},
            }
            for row in included
        ],
    }


def _included(
    caller: Caller, resource_type: str, rows: list[FhirResource], includes: Sequence[str]
) -> list[FhirResource]:
    """Return the resources named by ``_include=Type:element`` on ``rows`` (FHIR R4 search 3.1.1.5.4), where
    ``element`` is a top-level Reference (or list of them) of ``Type``. Raises ``FhirBadRequest`` for an
    ``_include`` of another type; a target the caller may not read is left out, as a real server does."""
    found: dict[tuple[str, str], FhirResource] = {}
    for include in includes:
        kind, _, element = include.partition(":")
        if kind != resource_type or not element.isidentifier():
            raise FhirBadRequest(f"Unsupported _include {include[:64]!r}.")
        for key in _references(rows, element):
            if key in found:
                continue
            resource = _include_target(caller, *key)
            if resource is not None:
                found[key] = resource
    return list(found.values())


def _references(rows: list[FhirResource], element: str) -> Iterator[tuple[str, str]]:
    """Yield ``(type, id)`` of each ``Type/id`` Reference in the top-level ``element`` (one or a list) of
    ``rows``, for a resource type the sandbox serves; anything else is skipped."""
    for row in rows:
        value = row.data.get(element)
        for ref in value if isinstance(value, list) else [value]:
            target = ref.get("reference") if isinstance(ref, dict) else None
            parts = target.split("/") if isinstance(target, str) else []
            if len(parts) == 2 and parts[0] in RESOURCE_TYPES:
                yield parts[0], parts[1]


def _include_target(caller: Caller, kind: str, fhir_id: str) -> FhirResource | None:
    """Return the resource ``kind/fhir_id`` when the caller may read it (scope, and compartment under
    ``patient/`` scopes), else None."""
    try:
        context = _context(caller, kind, "r")
    except FhirError:
        return None
    resource = resource_get(resource_type=kind, fhir_id=fhir_id)
    if resource is not None and (context != "patient" or _in_compartment(resource, caller.patient_id)):
        return resource
    return None


def operation_outcome(error: FhirError) -> dict[str, Any]:
    """Return an OperationOutcome for ``error`` (severity ``error``, its issue code and message)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": error.issue_code, "diagnostics": error.message}],
    }


def malformed_body(resource_type: str, *, search: bool) -> dict[str, Any]:
    """Return valid JSON with fields of the wrong FHIR types, for the ``malformed`` fault."""
    if search:
        return {"resourceType": "Bundle", "type": "searchset", "total": "many", "entry": {"resource": resource_type}}
    return {
        "resourceType": resource_type,
        "id": 12345,
        "meta": "not-an-object",
        "status": {"code": 1},
        "subject": ["Patient/unknown"],
        "text": 42,
    }


def stored_resource_types() -> list[str]:
    """Return the resource types present in the sandbox and served (not ``NOT_SERVED``), sorted."""
    rows = FhirResource.objects.exclude(resource_type__in=NOT_SERVED).order_by("resource_type")
    return list(rows.values_list("resource_type", flat=True).distinct())
