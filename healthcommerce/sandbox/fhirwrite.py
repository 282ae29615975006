"""The write side of the sandbox's FHIR R4 API: ``create`` of Communication and DocumentReference, the two types a
SMART app may write back (Epic offers no DeviceRequest create; issue 10 "Write-back").

Sources: FHIR R4 RESTful API 3.1.0.8 "create" (server-assigned id, ``meta.versionId``/``lastUpdated``, 201 with
``Location: [base]/[type]/[id]/_history/[vid]``, 400 for a body that cannot be parsed, 422 for one that breaks the
resource's rules), 3.1.0.8.1 "conditional create" (``If-None-Exist``: one match answers 200 with it and creates
nothing, several answer 412), SMART App Launch 2.2 "Scopes" (``c`` permission; ``patient/`` limits a write to the
launch patient's compartment).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.db import transaction
from django.utils import timezone
from fhirclient.models.communication import Communication
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.fhirabstractbase import FHIRValidationError

from healthcommerce.sandbox.errors import FhirBadRequest, FhirError, FhirForbidden, FhirNotFound
from healthcommerce.sandbox.fhirapi import Caller
from healthcommerce.sandbox.loader import compartment_patient_id
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.scopes import Context, access_context

# The resource types ``POST [base]/[type]`` accepts, with the fhirclient model that checks the body.
CREATABLE = {"Communication": Communication, "DocumentReference": DocumentReference}
WriteContext = Context


class FhirUnprocessable(FhirError):
    """A parsable resource that breaks its type's rules (wrong element types, unknown elements, a required element
    missing): FHIR R4 3.1.0.8 answers 422."""

    status = 422
    issue_code = "invalid"
    message = "The resource is not valid."


class FhirUnsupportedMediaType(FhirError):
    """A create body that is not JSON by its ``Content-Type`` (the sandbox speaks only JSON): 415."""

    status = 415
    issue_code = "not-supported"
    message = "Send the resource as application/fhir+json."


class FhirPreconditionFailed(FhirError):
    """``If-None-Exist`` matches more than one resource (FHIR R4 3.1.0.8.1): 412."""

    status = 412
    issue_code = "duplicate"
    message = "More than one resource matches If-None-Exist."


@dataclass(frozen=True)
class Created:
    """The outcome of a create: the stored ``resource``, the HTTP ``status`` (201 created, 200 when a conditional
    create found it already there) and its version URL ``location`` (``[base]/[type]/[id]/_history/[vid]``)."""

    resource: dict[str, Any]
    status: int
    location: str


def write_context(scope: str, resource_type: str, *, backend: bool = False) -> WriteContext | None:
    """Return how ``scope`` lets a token create ``resource_type``: ``system`` (only for a ``backend`` token, one
    of the client credentials grant: SMART 2.2 "Backend Services") or ``user`` (any patient), ``patient`` (only
    in the token's launch patient's compartment), None (not covered: 403). ``Type.c``, ``Type.cud``,
    ``Type.write`` and ``*.c`` all grant create (SMART 2.2 v1 ``write`` = v2 ``cud``); as for reads
    (``scopes.access_context``), a ``system/`` scope of a launch token counts for nothing."""
    return access_context(scope, resource_type, "c", backend=backend)


def _parse(resource_type: str, body: bytes) -> dict[str, Any]:
    """Return the JSON resource in ``body``. Raises ``FhirBadRequest`` (not JSON, not an object, another
    ``resourceType``) or ``FhirUnprocessable`` (fhirclient's strict R4 model refuses it)."""
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FhirBadRequest("The body is not a JSON resource.") from None
    if not isinstance(data, dict):
        raise FhirBadRequest("The body is not a JSON resource.")
    if data.get("resourceType") != resource_type:
        raise FhirBadRequest(f"The body's resourceType must be {resource_type}.")
    data.pop("id", None)  # FHIR R4 3.1.0.8: the server ignores a client id and assigns its own
    data.pop("meta", None)
    try:
        CREATABLE[resource_type](jsondict=data, strict=True)
    except FHIRValidationError as exc:
        raise FhirUnprocessable(f"The {resource_type} is not valid: {str(exc)[:300]}") from None
    return data


def _identifier_matches(data: dict[str, Any], system: str, value: str) -> bool:
    identifiers = data.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    return any(
        isinstance(i, dict) and i.get("value") == value and (not system or i.get("system") == system)
        for i in identifiers or []
    )


def _existing(resource_type: str, if_none_exist: str) -> FhirResource | None:
    """Return the resource ``If-None-Exist`` (``identifier=[system|]value``, the one parameter supported) finds, or
    None. Raises ``FhirBadRequest`` for another query, ``FhirPreconditionFailed`` for several matches."""
    pairs = parse_qsl(if_none_exist.lstrip("?"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier" or not pairs[0][1]:
        raise FhirBadRequest("If-None-Exist supports only identifier=[system|]value.")
    system, _, value = pairs[0][1].rpartition("|")
    rows = FhirResource.objects.filter(resource_type=resource_type).order_by("fhir_id")
    found = [row for row in rows if _identifier_matches(row.data, system, value)]
    if len(found) > 1:
        raise FhirPreconditionFailed()
    return found[0] if found else None


def _location(fhir_base: str, data: dict[str, Any]) -> str:
    version = (data.get("meta") or {}).get("versionId", "1")
    return f"{fhir_base}/{data['resourceType']}/{data['id']}/_history/{version}"


@transaction.atomic
def fhir_create(
    *, caller: Caller, resource_type: str, body: bytes, content_type: str, fhir_base: str, if_none_exist: str = ""
) -> Created:
    """Create ``resource_type`` from the JSON ``body`` (FHIR R4 "create"); return ``Created``.

    The server assigns ``id`` (a UUID) and ``meta`` (``versionId`` 1, ``lastUpdated`` now) and stores the resource,
    so a later read or search returns it. With ``if_none_exist`` (``identifier=system|value``) an existing match is
    returned with status 200 and nothing is created (conditional create). Raises ``FhirNotFound`` (a type that
    cannot be created here), ``FhirForbidden`` (no ``c`` scope for the type, or a ``patient/`` scope and a
    subject other than the launch patient), ``FhirUnsupportedMediaType`` (``content_type`` is not JSON),
    ``FhirBadRequest``, ``FhirUnprocessable`` or ``FhirPreconditionFailed``.
    """
    if resource_type not in CREATABLE:
        raise FhirNotFound(f"{resource_type[:64]} cannot be created here.")
    context = write_context(caller.scope, resource_type, backend=caller.backend)
    if context is None:
        raise FhirForbidden(f"The granted scopes do not allow create of {resource_type}.")
    if "json" not in content_type.split(";")[0].lower():
        raise FhirUnsupportedMediaType()
    data = _parse(resource_type, body)
    data["resourceType"] = resource_type
    patient_id = compartment_patient_id(data)
    if context == "patient" and patient_id != caller.patient_id:
        raise FhirForbidden("A patient/ scope may write only into the launch patient's compartment.")
    if if_none_exist:
        # Serialize conditional creates of one type, so two at once cannot both find nothing (PostgreSQL row lock
        # on the type's first row; SQLite serializes writers anyway).
        list(FhirResource.objects.select_for_update().filter(resource_type=resource_type).order_by("pk")[:1])
        existing = _existing(resource_type, if_none_exist)
        if existing is not None:
            return Created(resource=existing.data, status=200, location=_location(fhir_base, existing.data))
    fhir_id = str(uuid.uuid4())
    data = {"resourceType": resource_type, "id": fhir_id, "meta": _meta()} | {
        k: v for k, v in data.items() if k != "resourceType"
    }
    status = data.get("status")
    FhirResource.objects.create(
        resource_type=resource_type,
        fhir_id=fhir_id,
        patient_id=patient_id,
        status=status[:32] if isinstance(status, str) else "",
        data=data,
    )
    return Created(resource=data, status=201, location=_location(fhir_base, data))


def _meta() -> dict[str, str]:
    return {"versionId": "1", "lastUpdated": timezone.now().isoformat(timespec="milliseconds")}
