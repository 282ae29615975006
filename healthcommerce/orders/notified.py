"""Notify-then-pull, the worker's half (issue 20 "FHIR notify-then-pull"): the ``intake.fhir_notification`` outbox
handler reads the request an EHR's notification named and creates the order through the intake path
(``orders.intake.order_from_intake``, the same as an HL7 v2 order).

Reads, with SMART Backend Services (``ehr.backend.backend_client``; SMART App Launch 2.2 "Backend Services"), only
what the order needs, with the ``_elements`` pre-fill asks for (``orders.fields.elements``): the named
DeviceRequest or ServiceRequest, its Patient, the patient's first active Coverage and the requester (a Practitioner,
or a PractitionerRole's practitioner). Each read writes one ``fhir.read`` audit row (actor ``backend:<client id>``).
The values come from the same table and extractors as pre-fill (``orders.fields.prefill_values``,
``orders.extract``), leniently: a bad element is a warning naming it.

A request that is ``active`` with a Practitioner or PractitionerRole requester was signed in the EHR by that requester:
the ``IntakeOrder`` names the signer and when (``authoredOn``), and the order is signed when complete. Anything else
(``draft``, ``on-hold``, no such requester, a requester whose name cannot be read) is ``signed_in_ehr=False`` with a
warning saying why: the order is held unsigned (its hold reasons say so) and a later notification of the same request,
once active, signs it (``orders.intake.order_from_intake``). The placer order number is the request's ``Type/id`` (a
DeviceRequest and a ServiceRequest may share an id). A ``completed``, ``revoked`` or ``entered-in-error`` request, a 404
or a resource that cannot be used records the notification as failed with the reason
(``intake.notify.intake_notification_settle``) and ends the row: no retry storm. A transient failure (5xx, 429, timeout,
no connection, no token for now) raises for the outbox's retry with backoff; a refusal that staff must fix (403, a
refused backend token, backend services off) is recorded and raised as permanent, so the row is dead-lettered with an
alert and can be retried from the admin once fixed.
"""

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime
from fhirclient.models.coverage import Coverage
from fhirclient.models.reference import Reference

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.backend import backend_client, backend_client_id
from healthcommerce.ehr.errors import BackendServicesError, FHIRError
from healthcommerce.ehr.fhir import FHIRClient
from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.events import intake_message_for_subject
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.notify import intake_notification_settle
from healthcommerce.orders import extract, fields
from healthcommerce.orders.intake import IntakeOrder, IntakeRequest, IntakeSigner, order_from_intake
from healthcommerce.orders.models import Order
from healthcommerce.orders.prefill import REQUEST_MODELS, _practitioner_role, user_reference
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done

logger = logging.getLogger(__name__)

# Request statuses that say there is nothing to order (FHIR R4 request-status).
ENDED = frozenset({"completed", "revoked", "entered-in-error"})
# Read failures that a retry cannot mend and that are about this notification's resources, not the site's set-up.
UNUSABLE = frozenset({"not_found", "malformed", "invalid_id", "rejected"})
REASONS = {
    "not_found": "the EHR has no such resource (404 or 410)",
    "malformed": "the EHR sent something that is not the resource asked for",
    "invalid_id": "the reference is not a valid FHIR type and id",
    "rejected": "the EHR refused the read",
    "forbidden": "the EHR refused the read (403): grant the backend client the system/ scopes of notify-then-pull",
    "unauthorized": "the EHR refused our backend token (401)",
    "backend_token_refused": "the EHR refused our backend-services credentials or scopes: check the registration",
    "backend_not_enabled": "backend services are off for the site: notify-then-pull needs them",
    "backend_no_signing_key": "the site has no key to sign the backend-services assertion with",
}


class Unusable(Exception):
    """The notification cannot become an order; ``reason`` says why (no PHI: types, ids and codes only)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _read(site: EHRSite, reader: FHIRClient, kind: str, fhir_id: str, *, elements: str = "") -> dict[str, Any]:
    """Read ``kind/fhir_id`` and write its ``fhir.read`` audit row; raise ``Unusable`` for ``UNUSABLE`` codes,
    the backend error for the rest."""
    target = f"{kind}/{fhir_id}"[:300]
    try:
        data = reader.read(kind, fhir_id, elements=elements)
    except BackendServicesError as exc:
        _audit(site, target, exc.code, elements)
        if exc.code in UNUSABLE:
            raise Unusable(f"{kind}/{fhir_id}: {REASONS[exc.code]}") from exc
        raise
    _audit(site, target, "success", elements)
    return data


def _audit(site: EHRSite, target: str, outcome: str, elements: str = "") -> None:
    audit_record(
        actor=f"backend:{backend_client_id(site)}",
        action="fhir.read",
        target=target,
        where=site.iss,
        outcome=outcome,
        detail={"via": "backend_services", "for": "fhir_notification"} | ({"elements": elements} if elements else {}),
        site=site.iss,
    )


def _request(
    site: EHRSite, reader: FHIRClient, focus: str, notes: extract.Notes
) -> tuple[extract.RequestInfo, dict[str, Any]]:
    """Read and check the named request; raise ``Unusable`` when it is not one to order from."""
    kind, _, rid = focus.partition("/")
    if kind not in REQUEST_MODELS:
        raise Unusable(f"{focus[:100]}: not a DeviceRequest or ServiceRequest")
    data = _read(site, reader, kind, rid, elements=fields.elements(kind))
    try:
        extract.resource_check(data, kind)
    except extract.MalformedResource as exc:
        raise Unusable(f"{focus}: {exc}") from exc
    if data["id"] != rid:
        raise Unusable(f"{focus}: the EHR answered with another {kind}")
    info = extract.request_info(data, notes)
    if info.status in ENDED:
        raise Unusable(f"{focus}: the request is {info.status} in the EHR; nothing to order")
    return info, data


def _patient_id(info: extract.RequestInfo) -> str:
    """Return the id of the request's ``subject`` Patient; raise ``Unusable`` when it names none."""
    subject = user_reference(info.subject) if info.subject else None
    if subject is None or subject[0] != "Patient":
        raise Unusable(f"{info.reference}: the request's subject is not a Patient")
    return subject[1]


def _coverage(site: EHRSite, reader: FHIRClient, patient_id: str, notes: extract.Notes) -> dict[str, Any]:
    """Return the columns of the patient's first active Coverage (``{}`` when none, or the search failed for good:
    a warning; the payer is not needed to order). A transient failure raises."""
    target = f"Coverage?beneficiary={patient_id}"
    try:
        result = reader.search(Coverage, {"beneficiary": patient_id}, elements=fields.elements("Coverage"))
    except BackendServicesError as exc:
        _audit(site, target, exc.code)
        if exc.temporary:
            raise
        notes.warn(f"Coverage could not be read ({exc.code}); the payer was left empty")
        return {}
    _audit(site, target, "success")
    coverage = extract.coverage_active([c for c in result.matches if isinstance(c.get("id"), str)])
    if coverage is None:
        return {}
    return fields.prefill_values("Coverage", coverage, extract.Notes("Coverage", notes.warnings))


def _requester(data: dict[str, Any], notes: extract.Notes) -> tuple[str, str] | None:
    """Return ``(type, id)`` of the request's ``requester`` when it is a Practitioner or PractitionerRole."""
    reference = notes.element(Reference, data.get("requester"), "requester")
    found = user_reference(reference.reference or "") if reference is not None else None
    return found if found and found[0] in ("Practitioner", "PractitionerRole") else None


def _practitioner(
    site: EHRSite, reader: FHIRClient, requester: tuple[str, str], notes: extract.Notes
) -> dict[str, Any] | None:
    """Return the practitioner columns (name, NPI) of the requester, None (with a warning) when it cannot be read
    for good. A transient failure raises."""
    kind, rid = requester
    try:
        if kind == "PractitionerRole":
            values, warnings = _practitioner_role(reader, rid)
            _audit(site, f"PractitionerRole/{rid}", "success")
            notes.warnings.extend(warnings)
            return values
        data = _read(site, reader, "Practitioner", rid, elements=fields.elements("Practitioner"))
    except Unusable as exc:
        notes.warn(exc.reason)
        return None
    except FHIRError as exc:
        if exc.temporary:
            raise
        notes.warn(f"the requester {kind}/{rid} could not be read ({exc.code})")
        return None
    return fields.prefill_values("Practitioner", data, extract.Notes("Practitioner", notes.warnings))


def _signed_at(data: dict[str, Any], notes: extract.Notes) -> datetime | None:
    """Return ``authoredOn`` as an aware datetime (when the request was signed), None with a warning otherwise."""
    raw = data.get("authoredOn")
    parsed = parse_datetime(raw) if isinstance(raw, str) else None
    if parsed is None or parsed.tzinfo is None:
        notes.warn("authoredOn is not a date and time with a zone; the time the order arrived is used")
        return None
    return parsed


def _signer(
    site: EHRSite, reader: FHIRClient, info: extract.RequestInfo, data: dict[str, Any], notes: extract.Notes
) -> tuple[IntakeSigner, datetime | None, bool]:
    """Return ``(signer, signed_at, signed_in_ehr)``: the requester (a Practitioner or PractitionerRole, read for
    its name and NPI) and ``authoredOn`` when the request counts as signed in the EHR (``active`` with such a
    requester whose name could be read); else the requester as known (or an empty signer), None and False, with a
    warning saying why. A transient failure reading the requester raises."""
    requester = _requester(data, notes)
    if requester is None:
        notes.warn("the request names no Practitioner or PractitionerRole as its requester: nobody signed it")
        return IntakeSigner(reference="", name=""), None, False
    values = _practitioner(site, reader, requester, notes) or {}
    reference = "/".join(requester)
    signer = IntakeSigner(
        reference=reference, name=values.get("practitioner_name") or "", npi=values.get("practitioner_npi") or ""
    )
    if info.status != "active":
        status = info.status or "without a status"
        notes.warn(f"the request is {status} in the EHR, not active: it is held until the EHR signs it")
        return signer, None, False
    if not signer.name:
        notes.warn(f"the requester {reference}'s name could not be read: it is held until the signer is known")
        return signer, None, False
    return signer, _signed_at(data, notes), True


def _intake_request(info: extract.RequestInfo) -> IntakeRequest:
    """Return what the request asks for: its first coding, its display (the text, else a coding's display), the
    quantity as the request gives it (None: the catalog's default), its ``Type/id`` and every coding of its code,
    so the site's code mapping may match any of them (``catalog.selectors.mapping_for_codes``)."""
    system, code, _ = info.codings[0] if info.codings else ("", "", "")
    return IntakeRequest(
        system=system,
        code=code,
        display=info.display,
        quantity=info.quantity,
        reference=info.reference,
        codings=tuple((s, c) for s, c, _ in info.codings if s and c),
    )


def notified_intake_order(message: IntakeMessage, focus: str) -> IntakeOrder:
    """Read what the order needs for the event ``message`` (focus ``Type/id``) and return its ``IntakeOrder``.

    Raises ``Unusable`` (the reason) when there is nothing to order from, or ``BackendServicesError`` (transient or
    not) when the EHR could not be read.
    """
    site = message.site
    if site is None:
        raise Unusable("the notification has no site")
    reader = backend_client(site)
    notes = extract.Notes(focus)
    info, data = _request(site, reader, focus, notes)
    patient_id = _patient_id(info)
    patient = _read(site, reader, "Patient", patient_id, elements=fields.elements("Patient"))
    values = fields.prefill_values("Patient", patient, extract.Notes("Patient", notes.warnings))
    values |= _coverage(site, reader, patient_id, notes)
    signer, signed_at, signed_in_ehr = _signer(site, reader, info, data, notes)
    values["patient_fhir_id"] = patient_id
    return IntakeOrder(
        site=site,
        source=Order.Source.FHIR_NOTIFICATION,
        placer_order_number=info.reference,
        request=_intake_request(info),
        signer=signer,
        signed_at=signed_at,
        values=values,
        intake_message=message,
        warnings=notes.warnings,
        signed_in_ehr=signed_in_ehr,
    )


def _failed(outbox: OutboxMessage, message: IntakeMessage, reason: str) -> None:
    """Record the notification as failed with ``reason`` and end its row (no retry)."""
    with transaction.atomic():
        intake_notification_settle(message=message, error=reason)
        message_done(outbox, result="failed")
    logger.info("FHIR notification %s made no order: %s", message.pk, reason)


def notified_order_create(message: OutboxMessage) -> None:
    """Handle ``intake.fhir_notification``: read the named request (``notified_intake_order``) and create its order
    (``orders.intake.order_from_intake``: signed when complete, else held with its hold reasons); the order names
    the stored notification (``Order.intake_message``) and the notification the order (``order_reference``, as
    for an HL7 v2 message), recorded with the reads' warnings (``intake_notification_settle``), and the row is
    marked done, in one transaction.

    Idempotent: a notification that already names an order is done at once, and ``order_from_intake`` returns the
    existing order for the same request at the site (another notification of the same request names that order).
    Not one transaction on purpose: the EHR reads come first, outside any transaction (docs/style.md 2). Raises
    the backend error for the outbox: transient ones retry, permanent ones (403, a refused token, backend services
    off) are recorded on the notification and dead-letter.
    """
    intake = intake_message_for_subject(message.subject).select_related("site").first()
    if intake is None or intake.order_reference:
        message_done(message, result=f"skipped:{'done' if intake else 'no_message'}")
        return
    try:
        incoming = notified_intake_order(intake, str(message.payload.get("focus", "")))
    except Unusable as exc:
        _failed(message, intake, exc.reason)
        return
    except BackendServicesError as exc:
        if not exc.temporary:
            reason = REASONS.get(exc.code, f"the EHR could not be read ({exc.code})")
            intake_notification_settle(message=intake, error=reason)
        raise
    with transaction.atomic():
        order = order_from_intake(incoming)
        intake_notification_settle(message=intake, order_reference=order.reference, warnings=incoming.warnings)
        message_done(message, result=f"Order/{order.pk}")
    logger.info("FHIR notification %s -> order %s (%s)", intake.pk, order.reference, order.status)
