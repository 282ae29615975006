"""Pre-fill reads: everything an order needs from the EHR in one round of concurrent reads, kept as plain values.

Reads (FHIR R4, with ``_elements`` so the EHR sends only what is used), all started at once after the token
exchange: Patient (name, birth date, address, telecom), the DeviceRequest/ServiceRequest in the launch's
``fhirContext`` or else the patient's ``draft``/``active`` ones (of which only the draft order named by a CDS
Hooks card's ``appContext`` is kept, when it is among them), Coverage, and the user named by ``fhirUser`` (a
Practitioner read, or a PractitionerRole search with ``_include=PractitionerRole:practitioner``). A failed read
becomes an outcome code; a bad element or Bundle entry becomes a warning that names it (``orders.extract``); the
rest of the form still fills and the clinician enters what is missing.
"""

import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fhirclient.models.coverage import Coverage
from fhirclient.models.devicerequest import DeviceRequest
from fhirclient.models.patient import Patient
from fhirclient.models.practitioner import Practitioner
from fhirclient.models.practitionerrole import PractitionerRole
from fhirclient.models.reference import Reference
from fhirclient.models.servicerequest import ServiceRequest

from healthcommerce.audit.services import audit_record_many
from healthcommerce.ehr.errors import FHIRError
from healthcommerce.ehr.fhir import FHIRReader, SearchResult
from healthcommerce.ehr.models import Launch
from healthcommerce.orders import extract, fields

logger = logging.getLogger(__name__)

REQUEST_MODELS: dict[str, Any] = {"DeviceRequest": DeviceRequest, "ServiceRequest": ServiceRequest}
PENDING = "draft,active"
SIGNER_TYPES = ("Practitioner", "PractitionerRole")
# Read outcomes (``FHIRError`` codes) that may pass on their own: 5xx or 429, a timeout, no connection. Pre-fill
# records nothing from a round with one of them (``orders.services``), so a reload reads again.
TRANSIENT = frozenset({"server_error", "timeout", "unreachable"})
MAX_READERS = 6
# The reads made once per launch whose value is a dict of columns (the requests are a list of ``RequestInfo``).
ONCE = ("Patient", "Coverage", "Practitioner")


@dataclass
class Prefill:
    """What pre-fill found: plain values only (no FHIR objects), per-read outcomes, and warnings.

    ``values`` maps a resource read once per launch (``Patient``, ``Coverage``, ``Practitioner``) to the columns it
    filled (``{"patient_name": ..., ...}``: ``orders.fields.prefill_values``); a read that failed or found nothing
    has no entry. ``outcomes`` maps a read label (``"Patient"``, ``"DeviceRequest/dr1"``) to ``"success"`` or a
    ``FHIRError`` code; ``warnings`` are user-facing lines naming each element that could not be used.
    """

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[extract.RequestInfo] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Read:
    """One read to run: its audit target and a callable returning ``(value, warnings)``."""

    target: str
    run: Callable[[], tuple[Any, list[str]]]


def user_reference(fhir_user: str) -> tuple[str, str] | None:
    """Return ``(type, id)`` of a ``fhirUser`` URL (relative or absolute, SMART 2.2 "fhirUser"), or None."""
    parts = fhir_user.rstrip("/").split("/")
    if len(parts) < 2 or not extract.FHIR_ID.fullmatch(parts[-1]):
        return None
    return parts[-2], parts[-1]


def can_sign(fhir_user: str) -> bool:
    """Return True when ``fhirUser`` is a Practitioner or PractitionerRole: only they sign orders."""
    kind = user_reference(fhir_user)
    return kind is not None and kind[0] in SIGNER_TYPES


def _request_ref(reference: str) -> tuple[str, str] | None:
    kind, _, rid = reference.partition("/")
    return (kind, rid) if kind in REQUEST_MODELS and extract.FHIR_ID.fullmatch(rid) else None


def app_context_request(launch: Launch) -> tuple[tuple[str, str] | None, str]:
    """Return ``((type, id), "")`` for the draft order named by the launch's CDS Hooks ``appContext``
    (``{"draftOrder": "DeviceRequest/<id>"}``, set by our own card: cdshooks/cards.py), or ``(None, warning)``
    when it names something else, and ``(None, "")`` when there is none. CDS Hooks 2.0 "Link" ``appContext``."""
    if not launch.app_context:
        return None, ""
    try:
        value = json.loads(launch.app_context)
    except ValueError:
        value = None
    draft = value.get("draftOrder") if isinstance(value, dict) else None
    ref = _request_ref(draft) if isinstance(draft, str) else None
    if ref is None:
        named = draft[:100] if isinstance(draft, str) else "appContext"
        return None, f"{named}: the EHR's card named no DeviceRequest or ServiceRequest; it was not used"
    return ref, ""


def _context_requests(launch: Launch) -> list[tuple[str, str]]:
    return [ref for item in launch.fhir_context if (ref := _request_ref(str(item.get("reference", "")))) is not None]


def named_requests(launch: Launch) -> list[str]:
    """Return the references (``DeviceRequest/<id>``) of the requests the launch itself names: those in its
    ``fhirContext``, else the draft order of its CDS Hooks ``appContext``; empty when it names none."""
    named = ["/".join(ref) for ref in _context_requests(launch)]
    if not named:
        draft, _ = app_context_request(launch)
        named = ["/".join(draft)] if draft else []
    return named


def _app_context_select(launch: Launch, found: Prefill) -> None:
    """Keep only the draft order the launch's ``appContext`` names when it is one of the requests found (the
    patient's pending ones, or those in ``fhirContext``), so the form opens on it; otherwise keep them all and add a
    warning naming it."""
    draft, warning = app_context_request(launch)
    if warning:
        found.warnings.append(warning)
    if draft is None:
        return
    reference = "/".join(draft)
    chosen = [request for request in found.requests if request.reference == reference]
    if chosen:
        found.requests = chosen
    else:
        found.warnings.append(
            f"{reference}: the EHR's card named it, but it is not one of the patient's pending requests"
        )


def _one(data: dict[str, Any], kind: str, parse: Callable[..., Any]) -> tuple[Any, list[str]]:
    """Check and parse one resource; a resource without a usable type and id is a malformed read."""
    try:
        extract.resource_check(data, kind)
    except extract.MalformedResource as exc:
        raise FHIRError(str(exc), code="malformed") from exc
    notes = extract.Notes(f"{kind}/{data['id']}" if kind in REQUEST_MODELS else kind)
    if data.get("modifierExtension") and kind in REQUEST_MODELS:
        notes.warn("has a modifier extension this app does not understand: check the request in the EHR")
    return parse(data, notes), notes.warnings


def _requests(result: SearchResult, kind: str) -> tuple[list[extract.RequestInfo], list[str]]:
    """Parse each matched request on its own: a bad entry costs only that entry."""
    found, warnings = [], []
    if result.skipped:
        warnings.append(f"{kind} search: {result.skipped} entries could not be read")
    if result.incomplete:
        warnings.append(f"{kind} search: the EHR's next page could not be read; more requests may be in the EHR")
    for data in result.matches:
        try:
            info, notes = _one(data, kind, extract.request_info)
        except FHIRError:
            warnings.append(f"{kind} search: an entry without a valid id was skipped")
            continue
        found.append(info)
        warnings.extend(notes)
    return found, warnings


def _values(resource: str) -> Callable[[dict[str, Any], extract.Notes], dict[str, Any]]:
    """Return the parser filling the columns read from ``resource`` (``orders.fields.prefill_values``)."""
    return functools.partial(fields.prefill_values, resource)


def _coverage(result: SearchResult) -> tuple[dict[str, Any] | None, list[str]]:
    """Return the columns read from the patient's first active Coverage (None when there is none)."""
    usable = [c for c in result.matches if isinstance(c.get("id"), str)]
    notes = extract.Notes("Coverage")
    if result.skipped:
        notes.warn(f"{result.skipped} entries could not be read")
    if result.incomplete:
        notes.warn("the EHR's next page could not be read")
    coverage = extract.coverage_active(usable)
    return (fields.prefill_values("Coverage", coverage, notes) if coverage else None), notes.warnings


def _practitioner_role(reader: FHIRReader, role_id: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Return the practitioner of PractitionerRole ``role_id``, fetched with the role through
    ``_include=PractitionerRole:practitioner`` (FHIR R4 search "_include"): one request.

    A server that refuses ``_include`` (400) is asked without it, and one that ignores it gets a second read of
    the role's ``practitioner`` reference: two rounds, only for such servers.
    """
    try:
        result = reader.search(PractitionerRole, {"_id": role_id, "_include": "PractitionerRole:practitioner"})
    except FHIRError as exc:
        if exc.code != "server_error":
            raise
        result = reader.search(PractitionerRole, {"_id": role_id})
    included = [r for r in result.included if r.get("resourceType") == "Practitioner"]
    if included:
        return _one(included[0], "Practitioner", _values("Practitioner"))
    role = result.matches[0] if result.matches else {}
    notes = extract.Notes("PractitionerRole")
    practitioner = notes.element(Reference, role.get("practitioner"), "practitioner")
    user = user_reference(practitioner.reference or "") if practitioner else None
    if not user or user[0] != "Practitioner":
        return None, [*notes.warnings, "PractitionerRole: no practitioner to sign as; launch as a practitioner"]
    data = reader.read(Practitioner, user[1], elements=fields.elements("Practitioner"))
    info, warnings = _one(data, "Practitioner", _values("Practitioner"))
    return info, notes.warnings + warnings


def _reads(launch: Launch, reader: FHIRReader) -> dict[str, _Read]:
    """Return ``{label: _Read}`` for every read pre-fill makes; all of them run concurrently."""
    pid = launch.patient_id
    reads = {
        "Patient": _Read(
            f"Patient/{pid}",
            lambda: _one(reader.read(Patient, pid, elements=fields.elements("Patient")), "Patient", _values("Patient")),
        ),
        "Coverage": _Read(
            f"Coverage?beneficiary={pid}",
            lambda: _coverage(reader.search(Coverage, {"beneficiary": pid}, elements=fields.elements("Coverage"))),
        ),
    }
    named = _context_requests(launch)
    for kind, rid in named:
        reads[f"{kind}/{rid}"] = _Read(f"{kind}/{rid}", functools.partial(_named_request, reader, kind, rid))
    for kind in [] if named else REQUEST_MODELS:
        reads[kind] = _Read(f"{kind}?patient={pid}&status={PENDING}", functools.partial(_pending, reader, kind, pid))
    user = user_reference(launch.fhir_user)
    if user and user[0] == "Practitioner":
        reads["Practitioner"] = _Read(
            f"Practitioner/{user[1]}",
            lambda: _one(
                reader.read(Practitioner, user[1], elements=fields.elements("Practitioner")),
                "Practitioner",
                _values("Practitioner"),
            ),
        )
    elif user and user[0] == "PractitionerRole":
        reads["Practitioner"] = _Read(
            f"PractitionerRole/{user[1]}", functools.partial(_practitioner_role, reader, user[1])
        )
    return reads


def _named_request(reader: FHIRReader, kind: str, rid: str) -> tuple[list[extract.RequestInfo], list[str]]:
    """Read the request named in ``fhirContext``."""
    data = reader.read(REQUEST_MODELS[kind], rid, elements=fields.elements(kind))
    info, warnings = _one(data, kind, extract.request_info)
    return [info], warnings


def _pending(reader: FHIRReader, kind: str, pid: str) -> tuple[list[extract.RequestInfo], list[str]]:
    """Search the patient's draft and active requests of ``kind``."""
    params = {"patient": pid, "status": PENDING}
    return _requests(reader.search(REQUEST_MODELS[kind], params, elements=fields.elements(kind)), kind)


def _run(label: str, read: _Read) -> tuple[str, Any, list[str], str]:
    try:
        value, warnings = read.run()
    except FHIRError as exc:
        return label, None, [], exc.code
    return label, value, warnings, "success"


def prefill_gather(*, launch: Launch, access_token: str | None = None) -> Prefill:
    """Read everything the order form needs in one round of concurrent reads; audit each read (one row each, all
    inserted in one statement).

    ``access_token`` overrides the launch's stored token (after a refresh). Never raises for an EHR failure
    or bad data: each failed read is an outcome code, each unusable element a warning.
    """
    started = time.monotonic()
    reader = FHIRReader(
        iss=launch.site.iss, access_token=access_token or launch.access_token, site=launch.site.name[:100]
    )
    reads = _reads(launch, reader)
    # Each read runs in a copy of this context, so its log lines keep the request id (core.requestid).
    contexts = [contextvars.copy_context() for _ in reads]
    with ThreadPoolExecutor(max_workers=min(MAX_READERS, len(reads))) as pool:
        results = list(pool.map(lambda ctx, item: ctx.run(_run, *item), contexts, reads.items()))
    found = Prefill(seconds=time.monotonic() - started)
    audit_record_many(
        records=[
            {
                "actor": launch.fhir_user or "unknown",
                "action": "fhir.read",
                "target": reads[label].target,
                "where": launch.site.iss,
                "outcome": outcome,
                "site": launch.site.iss,
                "launch_id": launch.pk,
            }
            for label, _value, _warnings, outcome in results
        ]
    )
    for label, value, warnings, outcome in results:
        found.outcomes[label] = outcome
        found.warnings.extend(warnings)
        if value is None:
            continue
        if label in ONCE:
            found.values[label] = value
        else:
            for request in value:
                if request.patient_matches(launch.patient_id):
                    found.requests.append(request)
                else:
                    found.warnings.append(f"{request.reference}: is not for this patient and was not used")
    _app_context_select(launch, found)
    logger.info(
        "Pre-fill for launch %s took %.3f s (%d reads, %d warnings)",
        launch.pk,
        found.seconds,
        len(reads),
        len(found.warnings),
    )
    return found
