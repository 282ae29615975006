"""Pre-fill: read what an order needs from the EHR, concurrently, and keep only the fields it needs.

Reads (FHIR R4, with ``_elements`` so the EHR sends only what is used): Patient (name, birth date,
address, telecom), the DeviceRequest/ServiceRequest in the launch's ``fhirContext`` or else the patient's
``draft``/``active`` ones, Coverage, and the Practitioner named by ``fhirUser``. Each failed read becomes a
warning; the rest of the form still fills, and the clinician enters what is missing.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fhirclient.models.coverage import Coverage
from fhirclient.models.devicerequest import DeviceRequest
from fhirclient.models.patient import Patient
from fhirclient.models.practitioner import Practitioner
from fhirclient.models.servicerequest import ServiceRequest

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.errors import FHIRError
from healthcommerce.ehr.fhir import FHIRReader
from healthcommerce.ehr.models import Launch
from healthcommerce.orders import extract

logger = logging.getLogger(__name__)

ELEMENTS = {
    "Patient": "name,birthDate,address,telecom",
    "DeviceRequest": "status,intent,code,subject,authoredOn,requester,insurance,parameter",
    "ServiceRequest": "status,intent,code,subject,authoredOn,requester,insurance,quantity",
    "Coverage": "status,beneficiary,payor,class,subscriberId",
    "Practitioner": "name,identifier",
}
REQUEST_MODELS: dict[str, Any] = {"DeviceRequest": DeviceRequest, "ServiceRequest": ServiceRequest}
PENDING = "draft,active"


@dataclass
class Prefill:
    """What pre-fill found: plain values only (no FHIR objects), plus per-read outcomes for audit and display."""

    patient: extract.PatientInfo | None = None
    requests: list[extract.RequestInfo] = field(default_factory=list)
    coverage: extract.CoverageInfo | None = None
    practitioner: extract.PractitionerInfo | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # read label -> "success" or FHIRError code
    seconds: float = 0.0


def _context_requests(launch: Launch) -> list[tuple[str, str]]:
    refs = []
    for item in launch.fhir_context:
        ref = str(item.get("reference", ""))
        kind, _, rid = ref.partition("/")
        if kind in REQUEST_MODELS and rid:
            refs.append((kind, rid))
    return refs


def _practitioner_id(fhir_user: str) -> str | None:
    parts = fhir_user.rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Practitioner" else None


def _jobs(launch: Launch, reader: FHIRReader) -> dict[str, tuple[str, Any]]:
    """Return ``{label: (audit target, callable)}`` for every read pre-fill makes."""
    pid = launch.patient_id
    jobs: dict[str, tuple[str, Any]] = {
        "Patient": (
            f"Patient/{pid}",
            lambda: extract.patient_info(reader.read(Patient, pid, elements=ELEMENTS["Patient"])),
        ),
        "Coverage": (
            f"Coverage?beneficiary={pid}",
            lambda: extract.coverage_info(reader.search(Coverage, {"beneficiary": pid}, elements=ELEMENTS["Coverage"])),
        ),
    }
    named = _context_requests(launch)
    for kind, rid in named:
        jobs[f"{kind}/{rid}"] = (
            f"{kind}/{rid}",
            lambda m=REQUEST_MODELS[kind], r=rid, k=kind: [
                extract.request_info(reader.read(m, r, elements=ELEMENTS[k]))
            ],
        )
    for kind, model in [] if named else REQUEST_MODELS.items():
        params = {"patient": pid, "status": PENDING}
        jobs[kind] = (
            f"{kind}?patient={pid}&status={PENDING}",
            lambda m=model, p=params, k=kind: [
                extract.request_info(r) for r in reader.search(m, p, elements=ELEMENTS[k])
            ],
        )
    practitioner_id = _practitioner_id(launch.fhir_user)
    if practitioner_id:
        jobs["Practitioner"] = (
            f"Practitioner/{practitioner_id}",
            lambda: extract.practitioner_info(
                reader.read(Practitioner, practitioner_id, elements=ELEMENTS["Practitioner"])
            ),
        )
    return jobs


def _run(label: str, target: str, job: Any) -> tuple[str, str, Any, str]:
    try:
        return label, target, job(), "success"
    except FHIRError as exc:
        return label, target, None, exc.code
    except extract.MalformedResource:
        return label, target, None, "malformed"


def prefill_gather(*, launch: Launch) -> Prefill:
    """Read everything the order form needs, concurrently; audit each read (one row per read).

    Never raises for an EHR failure: each failed read is recorded in ``Prefill.outcomes``.
    """
    started = time.monotonic()
    reader = FHIRReader(iss=launch.site.iss, access_token=launch.access_token)
    jobs = _jobs(launch, reader)
    with ThreadPoolExecutor(max_workers=min(6, len(jobs))) as pool:
        results = list(pool.map(lambda item: _run(item[0], *item[1]), jobs.items()))
    found = Prefill(seconds=time.monotonic() - started)
    for label, target, value, outcome in results:
        audit_record(
            actor=launch.fhir_user or "unknown",
            action="fhir.read",
            target=target,
            where=launch.site.iss,
            outcome=outcome,
        )
        found.outcomes[label] = outcome
        if value is None:
            continue
        if label == "Patient":
            found.patient = value
        elif label == "Coverage":
            found.coverage = value
        elif label == "Practitioner":
            found.practitioner = value
        else:
            found.requests.extend(r for r in value if r.patient_matches(launch.patient_id))
    logger.info("Pre-fill for launch %s took %.3f s (%d reads)", launch.pk, found.seconds, len(jobs))
    return found
