"""Read the few HL7 v2 elements an order needs, leniently: the ``hl7=`` column of the order's field table
(``orders.fields``) points at the readers here, as its ``prefill=`` column points at ``orders.extract``.

A message is seen through ``Hl7View``: the message-level segments the order uses (MSH, PID, the first IN1) and one
order group's ORC, its RQD or OBR and its TQ1, each field kept as its raw ER7 text and split on the message's own
separators (MSH-1/MSH-2), each piece unescaped (HL7 v2.5.1 2.7 "Use of escape sequences"). Nothing else is kept:
DG1, NTE, OBX, AL1, PV1 and Z-segments are never read (``READ_SEGMENTS``). Each reader returns a plain value and,
on anything unusable, an empty one with a warning naming the field (``"PID-7: birth date could not be read"``):
one bad element costs only that element.

Sources: HL7 v2.5.1 chapter 2 (data types CE/CWE, CX, XPN, XAD, XTN, XCN, HD, TS/DTM, TQ, CQ), chapter 3 (PID),
chapter 4 (ORC, OBR, RQD, TQ1), chapter 6 (IN1); HL7 Table 0396 (coding systems: LN, HCPCS/HPC, C4, SCT);
US NPI (OID 2.16.840.1.113883.4.6).
"""

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from healthcommerce.catalog.models import CPT, HCPCS, LOINC, SNOMED
from healthcommerce.orders import extract

# Segments a reader may look at; every other segment (DG1, NTE, OBX, Z...) is dropped before any reader runs.
MESSAGE_SEGMENTS = ("MSH", "PID", "IN1")
GROUP_SEGMENTS = ("ORC", "RQD", "OBR", "TQ1")
READ_SEGMENTS = (*MESSAGE_SEGMENTS, *GROUP_SEGMENTS)
# HL7 Table 0396 coding system -> FHIR system URI; any other names a site-local system (``local_system``).
CODING_SYSTEMS = {"LN": LOINC, "HCPCS": HCPCS, "HCPC": HCPCS, "HPC": HCPCS, "C4": CPT, "CPT": CPT, "SCT": SNOMED}
NPI_OID = "2.16.840.1.113883.4.6"
SIGNED_AT_FUTURE = datetime.timedelta(hours=1)  # a signing time further ahead than this is a clock error
_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?")
_DIGITS = re.compile(r"\d+")


def local_system(site_id: Any, coding_system: str) -> str:
    """Return the site-local code system of a CE/CWE coding system the app does not know, per site, so a site's
    local code never matches another site's: ``urn:healthcommerce:site:<site id>:hl7:<coding system or L>``. The
    intake queue's "add the code mapping" link fills it in."""
    return f"urn:healthcommerce:site:{site_id}:hl7:{(coding_system or 'L').upper()[:20]}"


class Repetition:
    """One repetition of a field: ``c(i)`` is component ``i`` (1-based) unescaped (its first subcomponent), ``sub(i)``
    the subcomponents of component ``i``; missing ones are ""."""

    def __init__(self, components: list[list[str]]) -> None:
        self.components = components

    def c(self, i: int) -> str:
        subs = self.sub(i)
        return subs[0].strip() if subs else ""

    def sub(self, i: int) -> list[str]:
        return self.components[i - 1] if 0 < i <= len(self.components) else []

    def empty(self) -> bool:
        return not any(part.strip() for component in self.components for part in component)


@dataclass(frozen=True)
class Hl7View:
    """The fields an order's readers may see: ``segments`` maps a segment id of ``READ_SEGMENTS`` to its fields'
    raw text (index = field number: ``segments["PID"][5]`` is PID-5), ``separators`` the message's
    ``(field, repetition, component, subcomponent)`` characters, ``unescape`` the message's unescaper, and the
    site's quirks: ``site_id`` (for local code systems) and ``email_repetition`` (PID-13, 0: auto)."""

    segments: dict[str, list[str]]
    separators: tuple[str, str, str, str]
    unescape: Callable[[str], str]
    site_id: Any = ""
    email_repetition: int = 0

    def has(self, segment: str) -> bool:
        return segment in self.segments

    def field(self, segment: str, number: int) -> str:
        """Return the raw (escaped) text of ``segment``-``number`` ("" when absent)."""
        fields = self.segments.get(segment) or []
        return fields[number] if 0 < number < len(fields) else ""

    def repetitions(self, segment: str, number: int) -> list[Repetition]:
        """Return the non-empty repetitions of ``segment``-``number``, split and unescaped."""
        _, rep, comp, sub = self.separators
        found = []
        for text in self.field(segment, number).split(rep):
            parts = [[self.unescape(piece) for piece in component.split(sub)] for component in text.split(comp)]
            repetition = Repetition(parts)
            if not repetition.empty():
                found.append(repetition)
        return found

    def first(self, segment: str, number: int) -> Repetition:
        """Return the first non-empty repetition of ``segment``-``number`` (an empty one when there is none)."""
        found = self.repetitions(segment, number)
        return found[0] if found else Repetition([])

    def value(self, segment: str, number: int) -> str:
        """Return ``segment``-``number``'s first component of its first repetition, unescaped and stripped."""
        return self.first(segment, number).c(1)


def hl7_view(parsed: Any, group: list[Any], *, site_id: Any = "", email_repetition: int = 0) -> Hl7View:
    """Return the ``Hl7View`` of a python-hl7 ``parsed`` message for one order ``group`` (its segments, ORC first):
    the first MSH, PID and IN1 of the message, the group's first ORC, RQD, OBR and TQ1; nothing else."""
    segments: dict[str, list[str]] = {}
    for segment in parsed:
        name = str(segment[0])
        if name in MESSAGE_SEGMENTS and name not in segments:
            segments[name] = [str(field) for field in segment]
    for segment in group:
        name = str(segment[0])
        if name in GROUP_SEGMENTS and name not in segments:
            segments[name] = [str(field) for field in segment]
    seps = str(parsed.separators)  # "\r|~^&": segment, field, repetition, component, subcomponent
    separators = (seps[1], seps[2], seps[3], seps[4])
    return Hl7View(segments, separators, parsed.unescape, site_id, email_repetition)


# --- PID --------------------------------------------------------------------------------------------------------


def _name(rep: Repetition, *, family: int, given: int, middle: int, prefix: int) -> str:
    parts = [rep.c(prefix), rep.c(given), rep.c(middle), rep.c(family)]
    return " ".join(part for part in parts if part)


def patient_name(view: Hl7View, notes: extract.Notes) -> str:
    """PID-5 (XPN): the legal name (type ``L``), else the first; ``"Given Middle Family"`` with a prefix."""
    names = view.repetitions("PID", 5)
    chosen = next((rep for rep in names if rep.c(7).upper() == "L"), names[0] if names else None)
    if chosen is None:
        return ""
    return notes.text(_name(chosen, family=1, given=2, middle=3, prefix=5), "patient name", 300)


def birth_date(view: Hl7View, notes: extract.Notes) -> datetime.date | None:
    """PID-7 (TS/DTM): the date of birth, a full date from 1900 to today; a year or month only, or anything else,
    costs it with a warning (``orders.extract.birth_date``'s checks)."""
    text = view.value("PID", 7)
    if not text:
        return None
    if not re.fullmatch(r"\d{4}(\d{2}(\d{2})?)?(\d*)(\.\d+)?([+-]\d{4})?", text):
        notes.warn("birth date could not be read")
        return None
    iso = "-".join(part for part in (text[:4], text[4:6], text[6:8]) if part)
    return extract.birth_date({"birthDate": iso}, notes)


_ADDRESS_USE = {"H": "home", "BA": "old", "BDL": "old", "BR": "old", "M": ""}


def ship_to(view: Hl7View, notes: extract.Notes) -> dict[str, Any]:
    """PID-11 (XAD): the ship-to, ``Order.ship_to`` shape. The home address (type ``H``), else the first usable
    repetition (a street line; not a bad address ``BA`` or a birth address); ``{}`` when none is usable. Street
    XAD-1 (its first subcomponent) and XAD-2, city XAD-3, state XAD-4, ZIP XAD-5, country XAD-6 (``USA`` -> US)."""
    addresses = []
    for rep in view.repetitions("PID", 11):
        kind = rep.c(7).upper()
        if not rep.c(1) or _ADDRESS_USE.get(kind) == "old":
            continue
        address = {
            "line": [line for line in (rep.c(1), rep.c(2)) if line],
            "city": rep.c(3),
            "state": rep.c(4),
            "postalCode": rep.c(5),
            "country": rep.c(6) or None,
        }
        if kind == "H":
            address["use"] = "home"
        addresses.append({key: value for key, value in address.items() if value is not None})
    if not addresses and view.repetitions("PID", 11):
        notes.warn("no usable address (a street line is needed)")
    return extract.patient_address({"address": addresses}, notes) if addresses else {}


def _email_of(rep: Repetition) -> str:
    """XTN-4 (communication address), else XTN-1 when it holds an ``@`` (v2.3 senders put it there)."""
    return rep.c(4) or (rep.c(1) if "@" in rep.c(1) else "")


def _is_email(rep: Repetition) -> bool:
    return rep.c(2).upper() == "NET" or rep.c(3).upper() in ("INTERNET", "X.400") or "@" in _email_of(rep)


def contact_email(view: Hl7View, notes: extract.Notes) -> str:
    """PID-13 (XTN): the email; the site's repetition (``IntakeSite.hl7_email_repetition``, 1-based) when set, else
    the first with use ``NET``, equipment ``Internet`` or an ``@``. Checked as an address (else dropped)."""
    raw = view.field("PID", 13).split(view.separators[1])
    wanted = view.email_repetition
    if wanted:
        chosen = _split(view, raw[wanted - 1]) if wanted <= len(raw) else Repetition([])
        if not _email_of(chosen):
            notes.warn(f"repetition {wanted} holds no email")
            return ""
        candidates = [chosen]
    else:
        candidates = [rep for rep in view.repetitions("PID", 13) if _is_email(rep)]
    for rep in candidates:
        value = notes.text(_email_of(rep), "email", extract.COLUMN_LIMITS["email"])
        try:
            validate_email(value)
        except ValidationError:
            notes.warn("email is not a valid address and was not used")
            continue
        return value
    return ""


def _split(view: Hl7View, text: str) -> Repetition:
    _, _, comp, sub = view.separators
    return Repetition([[view.unescape(piece) for piece in component.split(sub)] for component in text.split(comp)])


def _phone_of(rep: Repetition) -> str:
    """The number of an XTN: country XTN-5, area XTN-6, local XTN-7, extension XTN-8; else XTN-1 as given."""
    local = "".join(_DIGITS.findall(rep.c(7)))
    if not local:
        return rep.c(1) if "@" not in rep.c(1) else ""
    if len(local) == 7:
        local = f"{local[:3]}-{local[3:]}"
    area = "".join(_DIGITS.findall(rep.c(6)))
    number = f"({area}) {local}" if area else local
    country = "".join(_DIGITS.findall(rep.c(5)))
    number = f"+{country} {number}" if country else number
    return f"{number} x{rep.c(8)}" if rep.c(8) else number


def contact_phone(view: Hl7View, notes: extract.Notes) -> str:
    """PID-13 (XTN) then PID-14: the patient's phone; a cell phone (equipment ``CP``) first, then any phone
    repetition that is not an email, fax or pager (``FX``, ``BP``)."""
    phones = [
        rep
        for rep in (*view.repetitions("PID", 13), *view.repetitions("PID", 14))
        if not _is_email(rep) and rep.c(3).upper() not in ("FX", "BP", "INTERNET", "X.400")
    ]
    for rep in sorted(phones, key=lambda rep: rep.c(3).upper() != "CP"):
        value = notes.text(_phone_of(rep), "phone", extract.COLUMN_LIMITS["phone"])
        if value:
            return value
    return ""


def patient_fhir_id(view: Hl7View, notes: extract.Notes) -> str:
    """PID-3 (CX): the patient's FHIR id when the sender lists it, as the repetition whose identifier type (CX-5)
    is ``FHIR``; "" otherwise (the MRN is not kept)."""
    for rep in view.repetitions("PID", 3):
        if rep.c(5).upper() == "FHIR":
            value = rep.c(1)
            if extract.FHIR_ID.fullmatch(value):
                return value
            notes.warn("the FHIR identifier is not a FHIR id and was not used")
    return ""


# --- IN1 --------------------------------------------------------------------------------------------------------


def payer_name(view: Hl7View, notes: extract.Notes) -> str:
    """IN1-4 (XON): the insurance company's name (XON-1) of the first IN1, else its IN1-3 company id (CX-1)
    as ``"payer <id>"``; "" when there is no IN1."""
    if not view.has("IN1"):
        return ""
    name = view.value("IN1", 4)
    if not name and view.value("IN1", 3):
        name = f"payer {view.value('IN1', 3)}"
    if not name:
        notes.warn("payer name missing")
    return notes.text(name, "payer name", extract.COLUMN_LIMITS["payer_name"])


def payer_keys(view: Hl7View, notes: extract.Notes) -> list[str]:
    """IN1-3 (CX): the insurance company id of the first IN1 (CX-1), then ``<CX-4 assigning authority>|<id>`` when
    it names one; ``[]`` when there is no IN1 or no id (HL7 v2.5.1 6.5.6.3). Matched against payer records'
    identifiers (``catalog.selectors.payer_for_coverage``)."""
    company = view.first("IN1", 3)
    value, authority = company.c(1), company.c(4)
    if not value:
        return []
    if len(value) + len(authority) >= extract.PAYER_KEY_LIMIT:
        notes.warn("the insurance company id is too long and was not used")
        return []
    return [value] + ([f"{authority}|{value}"] if authority else [])


def member_id(view: Hl7View, notes: extract.Notes) -> str:
    """IN1-36 (policy number), else IN1-49 (insured's ID number, CX-1): the member id of the first IN1."""
    value = view.value("IN1", 36) or view.value("IN1", 49)
    return notes.text(value, "member id", extract.COLUMN_LIMITS["member_id"])


# --- ORC --------------------------------------------------------------------------------------------------------


def placer_order_number(view: Hl7View, notes: extract.Notes) -> str:
    """ORC-2 (EI-1), else OBR-2: the placer order number, the EHR's own id of the order."""
    return notes.text(view.value("ORC", 2) or view.value("OBR", 2), "placer order number", 200)


@dataclass(frozen=True)
class Signer:
    """The ordering provider: ``reference`` (``<NPI system>|<npi>``, else ``<assigning authority>|<id>``), ``name``
    and ``npi`` (ten digits, "" when not given as such)."""

    reference: str = ""
    name: str = ""
    npi: str = ""


def _is_npi(rep: Repetition) -> bool:
    authority = " ".join(rep.sub(9)).upper()
    return rep.c(13).upper() == "NPI" or "NPI" in authority or NPI_OID in authority


def signer(view: Hl7View, notes: extract.Notes) -> Signer:
    """ORC-12 (XCN): the ordering provider, with the NPI from the repetition whose assigning authority (XCN-9) or
    identifier type (XCN-13) says NPI; name ``"Prefix Given Middle Family"`` (XCN-6, -3, -4, -2)."""
    reps = view.repetitions("ORC", 12)
    if not reps:
        return Signer()
    chosen = next((rep for rep in reps if _is_npi(rep)), reps[0])
    npi = chosen.c(1) if _is_npi(chosen) else ""
    if npi and not re.fullmatch(r"\d{10}", npi):
        notes.warn("NPI is not ten digits and was not used")
        npi = ""
    name = notes.text(_name(chosen, family=2, given=3, middle=4, prefix=6), "ordering provider name", 300)
    if npi:
        reference = f"{extract.NPI_SYSTEM}|{npi}"
    elif chosen.c(1):
        reference = f"{chosen.c(9) or 'ORC-12'}|{chosen.c(1)}"
    else:
        reference = ""
    return Signer(reference=notes.text(reference, "ordering provider id", 500), name=name, npi=npi)


def practitioner_reference(view: Hl7View, notes: extract.Notes) -> str:
    """ORC-12: the ordering provider's reference (``Signer.reference``)."""
    return signer(view, notes).reference


def practitioner_name(view: Hl7View, notes: extract.Notes) -> str:
    """ORC-12: the ordering provider's name."""
    return signer(view, notes).name


def practitioner_npi(view: Hl7View, notes: extract.Notes) -> str:
    """ORC-12: the ordering provider's NPI (ten digits) or ""."""
    return signer(view, notes).npi


def _moment(text: str) -> datetime.datetime | None:
    """An HL7 DTM ``YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]`` (minutes at least) as an aware datetime; without an offset, in
    the server's time zone. None when it is not one."""
    match = _DTM.fullmatch(text.strip())
    if match is None or match.group(5) is None:
        return None
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in match.groups()[:6])
    try:
        naive = datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    offset = match.group(7)
    if offset is None:
        return timezone.make_aware(naive)
    minutes = (1 if offset[0] == "+" else -1) * (int(offset[1:3]) * 60 + int(offset[3:]))
    return naive.replace(tzinfo=datetime.timezone(datetime.timedelta(minutes=minutes)))


def signed_at(view: Hl7View, notes: extract.Notes) -> datetime.datetime | None:
    """ORC-9 (date/time of transaction), else MSH-7 (message time): when the order was signed in the EHR, to the
    minute at least; None (then: received now) when neither is usable or it lies in the future."""
    for label, text in (("ORC-9", view.value("ORC", 9)), ("MSH-7", view.value("MSH", 7))):
        if not text:
            continue
        moment = _moment(text)
        if moment is None:
            notes.warn(f"{label} time could not be read")
        elif moment > timezone.now() + SIGNED_AT_FUTURE:
            notes.warn(f"{label} time is in the future and was not used")
        else:
            return moment
    return None


# --- RQD / OBR / TQ1 --------------------------------------------------------------------------------------------


def _item_field(view: Hl7View) -> tuple[str, int]:
    return ("RQD", 2) if view.has("RQD") else ("OBR", 4)


def item_codings(view: Hl7View, notes: extract.Notes) -> list[tuple[str, str, str]]:
    """RQD-2 (then RQD-3, RQD-4) or OBR-4 (CE/CWE): ``[(FHIR system, code, text)]``, the identifier (-1, -2, -3)
    then the alternate (-4, -5, -6), each coding system mapped by ``CODING_SYSTEMS`` (LN, HCPCS ...), any other
    to the site-local system (``local_system``)."""
    segment, number = _item_field(view)
    numbers = (2, 3, 4) if segment == "RQD" else (number,)
    found = []
    for field_number in numbers:
        for rep in view.repetitions(segment, field_number)[:1]:
            for first in (1, 4):
                code, text, system = rep.c(first), rep.c(first + 1), rep.c(first + 2)
                code = notes.text(code, "item code", extract.COLUMN_LIMITS["code"])
                if code:
                    uri = CODING_SYSTEMS.get(system.upper()) or local_system(view.site_id, system)
                    found.append((uri, code, text[: extract.COLUMN_LIMITS["display"]]))
    return found


def request_system(view: Hl7View, notes: extract.Notes) -> str:
    """RQD-2 or OBR-4: the first coding's system (FHIR URI)."""
    codings = item_codings(view, notes)
    return codings[0][0] if codings else ""


def request_code(view: Hl7View, notes: extract.Notes) -> str:
    """RQD-2 or OBR-4: the first coding's code."""
    codings = item_codings(view, notes)
    return codings[0][1] if codings else ""


def request_display(view: Hl7View, notes: extract.Notes) -> str:
    """RQD-2 or OBR-4: the first text of a coding."""
    return next((text for _, _, text in item_codings(view, notes) if text), "")


def _whole(notes: extract.Notes, label: str, text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        notes.warn(f"{label} quantity is not a number; the catalog default was used")
        return None
    if value != int(value) or not extract.MIN_QUANTITY <= value <= extract.MAX_QUANTITY:
        notes.warn(f"{label} quantity is not a whole number from 1 to 99; the catalog default was used")
        return None
    return int(value)


def quantity(view: Hl7View, notes: extract.Notes) -> int | None:
    """RQD-5 (requisition quantity), else TQ1-2 (CQ-1), else ORC-7 (TQ-1, CQ-1) or OBR-27: whole units 1 to 99;
    None (the catalog default) when none is given or usable."""
    sources = [("RQD-5", view.value("RQD", 5)), ("TQ1-2", view.value("TQ1", 2))]
    sources += [("ORC-7", view.value("ORC", 7)), ("OBR-27", view.value("OBR", 27))]
    for label, text in sources:
        if text:
            return _whole(notes, label, text)
    return None
