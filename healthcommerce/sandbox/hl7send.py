"""The sandbox EHR's outbound HL7 v2 interface ("Send as HL7", issue 20): what Epic Bridges sends an outside vendor
when a clinician signs an order in Epic's own order entry, built from the sandbox's own FHIR data and sent over MLLP.

A DeviceRequest (DME), or a ServiceRequest not coded in LOINC, goes as ORM^O01 with an RQD (HCPCS item code); a
ServiceRequest coded in LOINC (a lab collection kit) goes as OML^O21 with an OBR (HL7 v2.5.1 chapter 4, ORM_O01 and
OML_O21 structures). Both carry what a real feed carries: PID (name, birth date, sex, address, phone and email),
PV1, IN1 (payer and member id from the request's Coverage), ORC-12 the requester with its NPI, and the clinical
segments the app must ignore: an NTE (the request's note) and a DG1 (the patient's first coded Condition).

MSH-3/4 are ``EPIC``/``SANDBOXHOSP`` (the sandbox site's record, ``golive/sites/sandbox.json``), MSH-11 ``T``,
MSH-10 new on every send; ORC-2 is the request's id, so sending the same request twice names the same order.
The sandbox plays an EHR: it imports only ``core`` and python-hl7, and frames MLLP with its own few lines of socket
code (plain TCP to ``SANDBOX_HL7_TARGET``, the app's listener on loopback).
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import hl7
from django.conf import settings

from healthcommerce.sandbox.errors import SandboxError
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.r4 import ORDER_TYPES
from healthcommerce.sandbox.selectors import resource_get

logger = logging.getLogger(__name__)

SENDING_APPLICATION = "EPIC"
SENDING_FACILITY = "SANDBOXHOSP"
RECEIVING = "HEALTHCOMMERCE"
LOINC = "http://loinc.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
# FHIR code system -> HL7 v2 coding system name (HL7 Table 0396).
CODING_SYSTEMS = {
    LOINC: "LN",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://hl7.org/fhir/sid/icd-10-cm": "I10",
    "http://hl7.org/fhir/sid/icd-10": "I10",
    "http://snomed.info/sct": "SCT",
}
SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
START, END = b"\x0b", b"\x1c\x0d"
TIMEOUT_SECONDS = 10.0
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


class Hl7SendError(SandboxError):
    """The message could not be built (``hl7_unknown_request``) or the listener did not answer
    (``hl7_listener_down``, ``hl7_no_ack``); ``message`` says what to do, shown on the page."""

    code = "hl7_send_failed"
    message = "The HL7 message could not be sent."


@dataclass
class Hl7Order:
    """A built order message: ``text`` (segments separated by CR), ``control_id`` (MSH-10), ``message_type``
    (``ORM^O01`` or ``OML^O21``) and the ``segments`` in order (their ids)."""

    text: str
    control_id: str
    message_type: str
    segments: list[str] = field(default_factory=list)


@dataclass
class Hl7Ack:
    """What the listener answered: the ``text``, MSA-1 ``code``, MSA-2 ``echoed`` control id, MSA-3 ``text_message``
    and, for an AE or AR, the ERR segment's location (ERR-2) and user message (ERR-8)."""

    text: str
    code: str = ""
    echoed: str = ""
    text_message: str = ""
    error_location: str = ""
    error_message: str = ""


def esc(value: Any) -> str:
    """Return ``value`` as text with the HL7 v2 delimiters escaped (HL7 v2.5.1 2.7.4) and line breaks as spaces."""
    text = " ".join(str(value or "").split())
    for char, escaped in _ESCAPES:
        text = text.replace(char, escaped)
    return text


def _ts(value: str | datetime | None) -> str:
    """Return an HL7 DTM from a FHIR date or dateTime (``1946-07-04`` -> ``19460704``, ``2023-01-01T00:00:00Z`` ->
    ``20230101000000+0000``) or an aware datetime; ``""`` for nothing or something unreadable."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    text = str(value or "")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return text.replace("-", "")
    try:
        return _ts(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return ""


def _data(reference: Any) -> dict[str, Any]:
    """Return the stored resource a FHIR Reference (``{"reference": "Type/id"}``) or ``Type/id`` names, or {}."""
    ref = reference.get("reference") if isinstance(reference, dict) else reference
    parts = str(ref or "").rstrip("/").split("/")
    if len(parts) < 2:
        return {}
    row = resource_get(resource_type=parts[-2], fhir_id=parts[-1])
    return row.data if row is not None else {}


def _coding(concept: Any) -> dict[str, str]:
    """Return the first coding of a CodeableConcept with its ``text`` as display when it has none."""
    concept = concept if isinstance(concept, dict) else {}
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    coding = dict(codings[0]) if codings else {}
    coding.setdefault("display", concept.get("text") or "")
    return {k: str(v or "") for k, v in coding.items() if k in ("system", "code", "display")}


def _ce(coding: dict[str, str]) -> str:
    """Return a CE/CWE ``code^text^coding system`` from a FHIR coding."""
    system = CODING_SYSTEMS.get(coding.get("system", ""), "L")
    return f"{esc(coding.get('code'))}^{esc(coding.get('display'))}^{system}"


def _name(data: dict[str, Any]) -> tuple[str, str, str, str]:
    """Return ``(family, given, middle, prefix)`` of a resource's first HumanName."""
    names = [n for n in data.get("name") or [] if isinstance(n, dict)]
    name = names[0] if names else {}
    given = [str(g) for g in name.get("given") or []]
    prefix = " ".join(str(p) for p in name.get("prefix") or [])
    return str(name.get("family") or ""), given[0] if given else "", " ".join(given[1:]), prefix


def _npi(data: dict[str, Any]) -> str:
    for identifier in data.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == NPI:
            return str(identifier.get("value") or "")
    return ""


def _xcn(practitioner: dict[str, Any]) -> str:
    """Return ORC-12/OBR-16 (XCN): ``NPI^family^given^middle^^prefix^^^NPI^L^^^NPI``."""
    family, given, middle, prefix = _name(practitioner)
    npi = _npi(practitioner)
    authority = "^NPI^L^^^NPI" if npi else ""
    return f"{esc(npi)}^{esc(family)}^{esc(given)}^{esc(middle)}^^{esc(prefix)}^^{authority}".rstrip("^")


def _address(patient: dict[str, Any]) -> str:
    """Return PID-11 (XAD) from the patient's home (else first) address."""
    addresses = [a for a in patient.get("address") or [] if isinstance(a, dict)]
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    lines = [str(line) for line in home.get("line") or []]
    parts = [lines[0] if lines else "", " ".join(lines[1:]), home.get("city"), home.get("state")]
    parts += [home.get("postalCode"), home.get("country") or "USA", "H"]
    return "^".join(esc(p) for p in parts) if home else ""


def _telecom(patient: dict[str, Any]) -> str:
    """Return PID-13 (XTN repetitions): each phone as ``text^PRN|PRS^PH|CP^^^area^local``, each email as
    ``^NET^Internet^address``."""
    found = []
    for point in patient.get("telecom") or []:
        if not isinstance(point, dict) or not point.get("value"):
            continue
        value = str(point["value"])
        if point.get("system") == "email":
            found.append(f"^NET^Internet^{esc(value)}")
        elif point.get("system") in ("phone", "sms"):
            digits = re.sub(r"\D", "", value)[-10:]
            mobile = point.get("use") == "mobile"
            use, kind = ("PRS", "CP") if mobile else ("PRN", "PH")
            area, local = (digits[:3], digits[3:]) if len(digits) == 10 else ("", digits)
            found.append(f"{esc(value)}^{use}^{kind}^^^{area}^{local}")
    return "~".join(found)


def _identifiers(patient: dict[str, Any]) -> str:
    """Return PID-3 (CX repetitions): the medical record number (the identifier typed ``MR``) when there is one,
    then the patient's FHIR id with identifier type ``FHIR``, as Epic lists them."""
    found = []
    for identifier in patient.get("identifier") or []:
        types = _coding(identifier.get("type")) if isinstance(identifier, dict) else {}
        if types.get("code") == "MR" and identifier.get("value"):
            found.append(f"{esc(identifier['value'])}^^^{SENDING_FACILITY}^MR")
            break
    found.append(f"{esc(patient.get('id'))}^^^{SENDING_FACILITY}^FHIR")
    return "~".join(found)


def _pid(patient: dict[str, Any]) -> str:
    family, given, middle, _ = _name(patient)
    fields = [
        "PID",
        "1",
        "",
        _identifiers(patient),
        "",
        f"{esc(family)}^{esc(given)}^{esc(middle)}".rstrip("^"),
        "",
        _ts(patient.get("birthDate")),
        SEX.get(str(patient.get("gender") or ""), "U"),
        "",
        "",
        _address(patient),
        "",
        _telecom(patient),
    ]
    return "|".join(fields).rstrip("|")


def _coverage(request: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Return the request's Coverage (``insurance``), else the patient's first active one, else {}."""
    for reference in request.get("insurance") or []:
        data = _data(reference)
        if data:
            return data
    rows = FhirResource.objects.filter(resource_type="Coverage", patient_id=patient_id).order_by("fhir_id")
    return next((row.data for row in rows if row.data.get("status") in ("active", "", None)), {})


def _payer(coverage: dict[str, Any]) -> tuple[str, str]:
    """Return ``(payer id, payer name)`` of a Coverage's first ``payor`` (the Organization's id and name, or the
    reference's display)."""
    payors = [p for p in coverage.get("payor") or [] if isinstance(p, dict)]
    if not payors:
        return "", ""
    payer = _data(payors[0])
    return str(payors[0].get("reference") or "").rsplit("/", 1)[-1], str(
        payer.get("name") or payors[0].get("display") or ""
    )


def _in1(coverage: dict[str, Any]) -> str | None:
    """Return IN1 (IN1-2 plan, IN1-3 payer id, IN1-4 payer name, IN1-17 relationship, IN1-36 member id), or None
    without a Coverage."""
    if not coverage:
        return None
    payer_id, payer_name = _payer(coverage)
    classes = [c for c in coverage.get("class") or [] if isinstance(c, dict)]
    plan = str(classes[0].get("value") or "") if classes else ""
    fields = ["IN1", "1", f"^{esc(plan)}" if plan else "", esc(payer_id), esc(payer_name)]
    fields += [""] * 12 + ["SEL^Self^HL70063"] + [""] * 18 + [esc(coverage.get("subscriberId"))]
    return "|".join(fields)


def _dg1(patient_id: str) -> str | None:
    """Return a DG1 with the patient's first coded Condition (the app must ignore it), or None."""
    rows = FhirResource.objects.filter(resource_type="Condition", patient_id=patient_id).order_by("fhir_id")
    for row in rows:
        coding = _coding(row.data.get("code"))
        if coding.get("code"):
            return "|".join(["DG1", "1", "", _ce(coding), esc(coding.get("display")), "", "F"])
    return None


def _nte(request: dict[str, Any]) -> str:
    """Return an NTE with the request's first note (the app must ignore it), or a comment a clerk would type."""
    notes = [n for n in request.get("note") or [] if isinstance(n, dict) and n.get("text")]
    text = notes[0]["text"] if notes else "Patient asked for delivery to the home address."
    return "|".join(["NTE", "1", "P", esc(text)])


def _order_segments(kind: str, request_id: str, request: dict[str, Any], requester: str, signed: str) -> list[str]:
    """Return the ORC and its detail: RQD (``ORM``) or OBR (``OML``), with the quantity."""
    coding = _coding(request.get("codeCodeableConcept") or request.get("code"))
    quantity = request.get("quantityQuantity") or {}
    count = str(int(quantity.get("value") or 1)) if isinstance(quantity, dict) else "1"
    placer = f"{esc(request_id)}^{SENDING_APPLICATION}"
    orc = ["ORC", "NW", placer, "", "", "", "", count if kind == "OML" else "", "", signed, "", "", requester]
    if kind == "OML":
        detail = ["OBR", "1", placer, "", _ce(coding), "", "", signed] + [""] * 8 + [requester]
    else:
        detail = ["RQD", "1", _ce(coding), "", "", count, "EA"]
    return ["|".join(orc), "|".join(detail)]


def _request(request_ref: str) -> tuple[str, dict[str, Any]]:
    """Return ``(kind, data)`` of a pending request ``Type/id``: kind ``OML`` for a LOINC-coded ServiceRequest,
    else ``ORM``. Raises ``Hl7SendError`` for anything that is not a known DeviceRequest or ServiceRequest."""
    resource_type, _, fhir_id = request_ref.partition("/")
    row = resource_get(resource_type=resource_type, fhir_id=fhir_id) if resource_type in ORDER_TYPES else None
    if row is None or not row.patient_id:
        raise Hl7SendError("Unknown request: pick a pending order on the Patients page.", code="hl7_unknown_request")
    lab = resource_type == "ServiceRequest" and _coding(row.data.get("code")).get("system") == LOINC
    return ("OML" if lab else "ORM"), row.data


def hl7_order_build(*, request_ref: str, practitioner_id: str, now: datetime) -> Hl7Order:
    """Return the order message for the pending request ``request_ref`` (``DeviceRequest/<id>`` or
    ``ServiceRequest/<id>``) as Epic would send it when the request's requester (else ``practitioner_id``) signed
    it, at ``now`` (MSH-7). Raises ``Hl7SendError`` (``hl7_unknown_request``)."""
    kind, request = _request(request_ref)
    patient = _data(request.get("subject"))
    patient_id = str(patient.get("id") or "")
    requester = _data(request.get("requester")) or _data(f"Practitioner/{practitioner_id}")
    signed = _ts(request.get("authoredOn")) or _ts(now)
    control_id = "SB" + secrets.token_hex(9).upper()  # 20 characters, new on every send
    message_type = "ORM^O01^ORM_O01" if kind == "ORM" else "OML^O21^OML_O21"
    msh = f"MSH|^~\\&|{SENDING_APPLICATION}|{SENDING_FACILITY}|{RECEIVING}|{RECEIVING}|{_ts(now)}||{message_type}|"
    msh += f"{control_id}|T|2.5.1||||||UNICODE UTF-8"
    segments = [msh, _pid(patient), "PV1|1|O"]
    segments += [s for s in (_in1(_coverage(request, patient_id)),) if s]
    segments += _order_segments(kind, request_ref.partition("/")[2], request, _xcn(requester), signed)
    segments += [_nte(request)] + [s for s in (_dg1(patient_id),) if s]
    return Hl7Order(
        text="\r".join(segments) + "\r",
        control_id=control_id,
        message_type=message_type.rsplit("^", 1)[0],
        segments=[s.split("|", 1)[0] for s in segments],
    )


def _target() -> tuple[str, int]:
    target = str(getattr(settings, "SANDBOX_HL7_TARGET", "") or "127.0.0.1:2575")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise Hl7SendError(f"SANDBOX_HL7_TARGET {target!r} is not host:port.", code="hl7_listener_down")
    return host.strip("[]"), int(port)


def mllp_exchange(text: str, *, timeout: float | None = None) -> str:
    """Send ``text`` in one MLLP frame (``0x0B`` ... ``0x1C 0x0D``, UTF-8) over plain TCP to
    ``SANDBOX_HL7_TARGET`` and return the answer frame's text, within ``timeout`` seconds in all (default
    ``TIMEOUT_SECONDS``). Raises
    ``Hl7SendError``: ``hl7_listener_down`` (nothing listens) or ``hl7_no_ack`` (no complete answer in time)."""
    host, port = _target()
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    down = f"No HL7 listener at {host}:{port}: start make demo (its hl7 process), or python manage.py hl7_listen."
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Hl7SendError(down, code="hl7_listener_down") from exc
    buffer = b""
    try:
        with sock:
            sock.sendall(START + text.encode("utf-8") + END)
            while END not in buffer:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
    except OSError as exc:
        raise Hl7SendError(f"No ACK from {host}:{port} within {timeout:.0f} s.", code="hl7_no_ack") from exc
    if END not in buffer or START not in buffer:
        raise Hl7SendError(f"{host}:{port} closed the connection without an ACK.", code="hl7_no_ack")
    return buffer[buffer.index(START) + 1 : buffer.index(END)].decode("utf-8", errors="replace")


def ack_read(text: str) -> Hl7Ack:
    """Return what an ACK says (``Hl7Ack``); an unreadable answer keeps only its ``text``."""
    ack = Hl7Ack(text=text)
    try:
        parsed = hl7.parse(text.replace("\n", "\r"))
        msa = parsed.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException):
        return ack
    ack.code, ack.echoed, ack.text_message = (str(msa(n)) if len(msa) > n else "" for n in (1, 2, 3))
    try:
        err = parsed.segment("ERR")
    except KeyError:
        return ack
    ack.error_location = str(err(2)) if len(err) > 2 else ""
    ack.error_message = str(err(8)) if len(err) > 8 else ""
    return ack


@dataclass
class Hl7Sent:
    """The outcome of "Send as HL7": the ``order`` message sent, the ``ack`` received (None when none came) and
    the ``error`` to show instead (``""`` when an ACK came)."""

    order: Hl7Order
    ack: Hl7Ack | None = None
    error: str = ""


def sandbox_hl7_send(*, request_ref: str, practitioner_id: str, now: datetime) -> Hl7Sent:
    """Build the order message of ``request_ref`` (``hl7_order_build``), send it to ``SANDBOX_HL7_TARGET`` and
    return what was sent and the ACK. Not idempotent: each call is a new message (new MSH-10) for the same order
    (same ORC-2). A listener that is down or silent is an ``error`` on the result; raises ``Hl7SendError``
    (``hl7_unknown_request``) only for a request the sandbox does not have."""
    built = hl7_order_build(request_ref=request_ref, practitioner_id=practitioner_id, now=now)
    try:
        ack = ack_read(mllp_exchange(built.text))
    except Hl7SendError as error:
        logger.info(
            "sandbox hl7 %s control_id=%s not acknowledged: %s", built.message_type, built.control_id, error.code
        )
        return Hl7Sent(order=built, error=error.message)
    logger.info("sandbox hl7 %s control_id=%s answered %s", built.message_type, built.control_id, ack.code or "?")
    return Hl7Sent(order=built, ack=ack)
