"""The orders stage's part of the go-live readiness check: what the order form would read of the nominated test
patient (``golive.readiness`` runs it through ``ehr.sitefeatures`` with a backend-services FHIR reader).

Sources: FHIR R4 Patient, Coverage, DeviceRequest, ServiceRequest. The checks never show PHI: they say whether an
element is present, never its value.
"""

from collections.abc import Iterator
from typing import Any

from fhirclient.models.coverage import Coverage
from fhirclient.models.devicerequest import DeviceRequest
from fhirclient.models.patient import Patient
from fhirclient.models.servicerequest import ServiceRequest

from healthcommerce.catalog.selectors import payer_for_coverage, request_orderability
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import FAIL, FIX_READ, PASS, WARN, Check, PatientReads
from healthcommerce.orders import extract

RETRY = "Retry, then raise it with the EHR team."


def _failure(exc: HealthcommerceError) -> str:
    """Say how a FHIR call failed: the HTTP status when the EHR answered (``HTTP 403, forbidden``), else the
    error code (``timeout``, ``unreachable``...)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}, {exc.code}" if isinstance(status, int) else exc.code


def _identity(patient_id: str, info: extract.PatientInfo) -> Check:
    both = bool(info.name and info.birth_date)
    return Check(
        "patient",
        PASS if both else WARN,
        f"Patient/{patient_id} read; name {'present' if info.name else 'missing'}, birth date "
        f"{'present' if info.birth_date else 'missing'}.",
        "" if both else "The order and the patient's check need both; fix the test patient.",
    )


def _address(info: extract.PatientInfo) -> Check:
    address = info.address
    missing = [part for part in ("line", "city", "state", "postal_code") if not address.get(part)]
    if not missing:
        return Check("patient_address", PASS, "Home address present with line, city, state and postal code.")
    return Check(
        "patient_address",
        FAIL,
        "No usable ship-to address: " + ("none on file" if not address else "missing " + ", ".join(missing)) + ".",
        "Give the test patient a home address (line, city, state, postal code), or nominate one who has.",
    )


def _telecom(info: extract.PatientInfo) -> Check:
    if not info.email and not info.phone:
        return Check(
            "patient_telecom",
            FAIL,
            "No email and no phone: the purchase link cannot be sent.",
            "Add an email (and a mobile phone) to the test patient's telecom.",
        )
    have = [n for n, v in (("email", info.email), ("phone", info.phone)) if v]
    lack = [n for n, v in (("email", info.email), ("phone", info.phone)) if not v]
    return Check(
        "patient_telecom",
        PASS if not lack else WARN,
        f"Contact present: {', '.join(have)}" + (f"; missing {', '.join(lack)}." if lack else "."),
        "" if not lack else "Links go out by the channels present; add the other for a fuller test.",
    )


def _patient(site: EHRSite, reads: PatientReads) -> Iterator[Check]:
    patient_id, record = reads.patient_id, reads.record
    try:
        data = reads.reader.read(Patient, patient_id)
    except HealthcommerceError as exc:
        record(f"Patient/{patient_id}", exc.code)
        detail = f"Patient/{patient_id} could not be read ({_failure(exc)})."
        yield Check("patient", FAIL, detail, FIX_READ.get(exc.code, RETRY))
        return
    record(f"Patient/{patient_id}", "success")
    notes = extract.Notes("Patient")
    info = extract.patient_info(data, notes)
    yield _identity(patient_id, info)
    yield _address(info)
    yield _telecom(info)
    for warning in notes.warnings:
        yield Check(
            "patient_data", WARN, warning + ".", "Real data is read leniently; fix it at the source if it matters."
        )


def _coverage(site: EHRSite, reads: PatientReads) -> Check:
    patient_id, record = reads.patient_id, reads.record
    try:
        result = reads.reader.search(Coverage, {"patient": patient_id})
    except HealthcommerceError as exc:
        record(f"Coverage?patient={patient_id}", exc.code)
        detail = f"The search Coverage?patient={patient_id} failed ({_failure(exc)})."
        return Check("coverage", FAIL, detail, FIX_READ.get(exc.code, RETRY))
    record(f"Coverage?patient={patient_id}", "success")
    notes = extract.Notes("Coverage")
    info = extract.coverage_info(result.matches, notes)
    if info is None:
        return Check(
            "coverage",
            WARN,
            f"No active Coverage ({len(result.matches)} read): orders will be self-pay.",
            "If the health system bills insurance, give the test patient an active Coverage with a payor.",
        )
    if not info.payer_name:
        return Check("coverage", WARN, "Active Coverage without a payer name.", "Fill Coverage.payor (display).")
    coverage = extract.coverage_active(result.matches) or {}
    payer = payer_for_coverage(site=site, keys=extract.payer_keys(coverage, notes), name=info.payer_name)
    if payer is None:
        return Check(
            "coverage",
            WARN,
            f"The test patient's coverage ({info.payer_name}) matches no payer record here: clinicians must pick one.",
            "Add a payer record for this site (Catalog > Payers) listing its payor reference or identifier, or an"
            " alias equal to the chart's payer name.",
        )
    member = " and member id" if info.member_id else ""
    return Check("coverage", PASS, f"Active Coverage{member}, matched to the payer record {payer.name}.")


def _code_check(site: EHRSite, reference: str, kind: str, codings: list[tuple[str, str]]) -> Check:
    verdict = request_orderability(site=site, resource_type=kind, codings=codings)
    shown = ", ".join(f"{s}|{c}" for s, c in codings)
    if verdict.mapping is not None:
        scope = "site-local" if verdict.mapping.site_id else "shared"
        return Check("request_code", PASS, f"{reference} {shown} maps to {verdict.mapping.product.sku} ({scope}).")
    if verdict.rule is not None and not verdict.rule.orderable:
        return Check("request_code", PASS, f"{reference} {shown} is marked not orderable ({verdict.reason}).")
    return Check(
        "request_code",
        FAIL,
        f"{reference} {shown} maps to no product and is not marked not orderable.",
        f"Add a code mapping for {codings[0][0]}|{codings[0][1]} to a product at this site, or an orderable rule"
        " marking it not orderable (admin: Catalog).",
    )


def _request_check(site: EHRSite, kind: str, data: dict[str, Any]) -> Check:
    """Check one request's code: malformed (skipped), uncoded, or whether it maps to a product."""
    notes = extract.Notes(f"{kind}/{data.get('id', '?')}")
    try:
        request = extract.request_info(data, notes)
    except ValueError:
        return Check(
            "request_code",
            WARN,
            f"{notes.label} is malformed and was skipped.",
            "Look at the request in the EHR: it lacks what makes it usable (its resourceType or id).",
        )
    codings = [(s, c) for s, c, _ in request.codings if s and c]
    if not codings:
        return Check(
            "request_code",
            FAIL,
            f"{request.reference} has no coded system and code.",
            "Orders need a code (HCPCS, LOINC, SNOMED CT or a site-local code) on the request.",
        )
    return _code_check(site, request.reference, kind, codings)


def _search(reads: PatientReads, model: Any) -> tuple[Any, Check | None]:
    """Search ``model`` for the test patient: ``(result, None)``, or ``(None, the failing check)``."""
    search = f"{model.resource_type}?patient={reads.patient_id}"
    try:
        result = reads.reader.search(model, {"patient": reads.patient_id})
    except HealthcommerceError as exc:
        reads.record(search, exc.code)
        detail = f"The search {search} failed ({_failure(exc)}): its requests were not checked."
        return None, Check("requests", FAIL, detail, FIX_READ.get(exc.code, RETRY))
    reads.record(search, "success")
    return result, None


def _requests(site: EHRSite, reads: PatientReads) -> Iterator[Check]:
    """Check each DeviceRequest and ServiceRequest of the test patient. A failed search is a failure naming the
    search, how it failed and the fix; only searches that succeeded may say the patient has none."""
    seen, failed, empty = 0, [], []
    for model in (DeviceRequest, ServiceRequest):
        kind = model.resource_type
        result, failure = _search(reads, model)
        if failure is not None:
            failed.append(kind)
            yield failure
            continue
        if result.incomplete:
            yield Check(
                "requests",
                WARN,
                f"The search {kind}?patient={reads.patient_id} stopped at a page that failed: only"
                f" {len(result.matches)} read.",
                "The EHR's next-page link failed: retry, then raise it with the EHR team.",
            )
        if not result.matches:
            empty.append(kind)
        for data in result.matches:
            check = _request_check(site, kind, data)
            seen += check.status != WARN  # a malformed request is skipped, not seen
            yield check
    if not seen and not failed:
        yield Check(
            "requests",
            WARN,
            "The test patient has no DeviceRequest or ServiceRequest.",
            "Nominate a test patient with a pending DME or kit order so the codes can be checked.",
        )
    elif not seen and empty:
        yield Check(
            "requests",
            WARN,
            f"The {' and '.join(empty)} search found none, and the {' and '.join(failed)} search failed (above).",
            "Fix the failed search first; then, if the patient has no request, nominate one with a pending order.",
        )


def order_patient_readiness(site: EHRSite, reads: PatientReads) -> Iterator[Check]:
    """Yield the checks of what an order reads of the test patient (``reads``: the backend-services reader, the
    patient id and the audit callback): Patient (name, birth date, address, telecom), Coverage, then each
    DeviceRequest and ServiceRequest (its code maps to a product or is marked not orderable). Each read is
    recorded through ``reads.record``. Raises nothing for what the EHR answers: every problem is a failing
    check."""
    yield from _patient(site, reads)
    yield _coverage(site, reads)
    yield from _requests(site, reads)
