"""The X12 005010X279A1 layer for real-time eligibility (ADR 0025): the 270 inquiry out (``x12_270_build``), the 271
response in (``x12_271_parse``), and a structure check for both (``x12_structure_check``). Pure: no Django models,
no I/O, no logging (a 270 and a 271 carry PHI).

Source: ASC X12N 005010X279A1 (Health Care Eligibility Benefit Inquiry and Response): the interchange envelope
(ISA/IEA, GS/GE, ST/SE), the hierarchy 2000A (information source, HL03 20), 2000B (information receiver, 21), 2000C
(subscriber, 22), 2000D (dependent, 23), their names 2100A-2100D, and the subscriber's benefits 2110C (EB); the AAA
reject reason codes (AAA03) and follow-up action codes (AAA04) of its code lists.
"""

import datetime
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from healthcommerce.coverage.types import (
    ACTIVE,
    INACTIVE,
    NOT_FOUND,
    PAYER_UNAVAILABLE,
    PROVIDER_REJECTED,
    REJECTED,
    SERVICE_TYPE_PLAN,
    UNREADABLE,
    EligibilityAnswer,
    EligibilityInquiry,
    Share,
)

VERSION = "005010X279A1"

# The delimiters this layer writes (ISA: element ``*``, repetition ISA11 ``^``, component ISA16 ``:``, segment ``~``).
ELEMENT, REPETITION, COMPONENT, TERMINATOR = "*", "^", ":", "~"

# AAA03 reject reason codes of the X279A1 271 (2000A, 2100A-2100D and 2110C code lists), in plain English.
AAA_REASONS: dict[str, str] = {
    "04": "Authorized quantity exceeded",
    "15": "Required application data missing",
    "33": "Input errors",
    "35": "Out of network",
    "41": "Authorization or access restrictions",
    "42": "Unable to respond at current time",
    "43": "Invalid or missing provider identification",
    "44": "Invalid or missing provider name",
    "45": "Invalid or missing provider specialty",
    "46": "Invalid or missing provider phone number",
    "47": "Invalid or missing provider state",
    "48": "Invalid or missing referring provider identification number",
    "49": "Provider is not primary care physician",
    "50": "Provider ineligible for inquiries",
    "51": "Provider not on file",
    "52": "Service dates not within provider plan enrollment",
    "53": "Inquired benefit inconsistent with provider type",
    "54": "Inappropriate product/service ID qualifier",
    "55": "Inappropriate product/service ID",
    "56": "Inappropriate date",
    "57": "Invalid or missing date(s) of service",
    "58": "Invalid or missing date of birth",
    "60": "Date of birth follows date(s) of service",
    "61": "Date of death precedes date(s) of service",
    "62": "Date of service not within allowable inquiry period",
    "63": "Date of service in future",
    "64": "Invalid or missing patient ID",
    "65": "Invalid or missing patient name",
    "66": "Invalid or missing patient gender code",
    "67": "Patient not found",
    "68": "Duplicate patient ID number",
    "69": "Inconsistent with patient's age",
    "70": "Inconsistent with patient's gender",
    "71": "Patient birth date does not match that for the patient on the database",
    "72": "Invalid or missing subscriber/insured ID",
    "73": "Invalid or missing subscriber/insured name",
    "74": "Invalid or missing subscriber/insured gender code",
    "75": "Subscriber/insured not found",
    "76": "Duplicate subscriber/insured ID number",
    "77": "Subscriber found, patient not found",
    "78": "Subscriber/insured not in group/plan identified",
    "79": "Invalid participant identification",
    "80": "No response received, transaction terminated",
    "97": "Invalid or missing provider address",
    "98": "Experimental service or procedure",
    "AA": "Authorization number not found",
    "AE": "Requires primary care physician authorization",
    "AF": "Invalid or missing diagnosis code(s)",
    "AG": "Invalid or missing procedure code(s)",
    "AO": "Additional patient condition information required",
    "CI": "Certification information does not match patient",
    "E8": "Requires medical review",
    "IA": "Invalid authorization number format",
    "MA": "Missing authorization number",
    "T4": "Payer name or identifier missing",
}

# AAA03 codes that mean "the payer cannot answer now" wherever the AAA sits (a retry may help).
UNAVAILABLE_REASONS = frozenset({"42", "80"})
# AAA03 codes of the 2100C/2100D lists that say the payer does not know the person as sent.
SUBSCRIBER_REASONS = frozenset(
    {"15", "58", "64", "65", "66", "67", "68", "71", "72", "73", "74", "75", "76", "77", "78"}
)
# AAA03 codes of the 2100C/2100D lists that are about the provider, not the person.
PROVIDER_REASONS = frozenset({"41", "43", "45", "47", "48", "49", "51", "52"})

# HL03 level code -> (the 2000 loop, its 2100 name loop, its 2110 benefit loop).
_LEVELS = {
    "20": ("2000A", "2100A", ""),
    "21": ("2000B", "2100B", ""),
    "22": ("2000C", "2100C", "2110C"),
    "23": ("2000D", "2100D", "2110D"),
}
_PARENT_LEVEL = {"20": "", "21": "20", "22": "21", "23": "22"}


def reason_text(code: str) -> str:
    """Return the plain English description of AAA03 ``code`` (X279A1 code list); ``"Unknown reason <code>"`` for a
    code not in ``AAA_REASONS``."""
    return AAA_REASONS.get(code, f"Unknown reason {code}" if code else "No reason given")


# --- 270 out -------------------------------------------------------------------------------------------------------


def x12_clean(value: str, max_length: int) -> str:
    """Return ``value`` as an X12 data element: accents folded to ASCII (NFKD), the delimiters ``* ~ : ^`` and every
    other character outside printable ASCII replaced by a space, runs of spaces collapsed, trimmed, and cut to
    ``max_length`` characters. X12 has no escape character, so a delimiter cannot be sent as data."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    text = "".join(" " if ch in "*~:^" or not (" " <= ch <= "~") else ch for ch in folded)
    return " ".join(text.split())[:max_length].strip()


def _required(value: str, max_length: int, name: str) -> str:
    cleaned = x12_clean(value, max_length)
    if not cleaned:
        raise ValueError(f"{name} is empty once delimiters are removed")
    return cleaned


def _isa_id(value: str, name: str) -> str:
    return _required(value, 15, name).ljust(15)


def _originating_company(submitter_id: str) -> str:
    """TRN03 (10 characters): ``9`` (a user-assigned id) and the submitter id's first 9 letters and digits, padded
    with ``0``."""
    alnum = re.sub(r"[^A-Za-z0-9]", "", submitter_id).upper()
    return "9" + alnum[:9].ljust(9, "0")


def _checked(inquiry: EligibilityInquiry) -> None:
    """Raise ``ValueError`` for an inquiry no 270 can carry (the message names the field, never its value)."""
    if not 1 <= inquiry.control_number <= 999_999_999:
        raise ValueError("control_number must be 1-999999999 (ISA13)")
    if not re.fullmatch(r"\d{10}", inquiry.provider_npi):
        raise ValueError("provider_npi must be ten digits (2100B NM109, qualifier XX)")
    if not re.fullmatch(r"[A-Z0-9]{1,2}", inquiry.service_type):
        raise ValueError("service_type must be an X12 service type code (EQ01)")
    if inquiry.usage not in ("T", "P"):
        raise ValueError("usage must be T or P (ISA15)")


def _segments_270(inquiry: EligibilityInquiry) -> list[list[str]]:
    """Return the 270's segments from BHT to EQ (without ST and SE) as lists of elements."""
    created = inquiry.created.astimezone(datetime.UTC)
    trace = _required(inquiry.trace, 50, "trace")
    payer_id, npi = _required(inquiry.payer_id, 80, "payer_id"), inquiry.provider_npi
    last, member = _required(inquiry.last_name, 60, "last_name"), _required(inquiry.member_id, 80, "member_id")
    return [
        ["BHT", "0022", "13", trace, created.strftime("%Y%m%d"), created.strftime("%H%M")],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", _required(inquiry.payer_name, 60, "payer_name"), *_blank(4), "PI", payer_id],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "1P", "2", _required(inquiry.provider_name, 60, "provider_name"), *_blank(4), "XX", npi],
        ["HL", "3", "2", "22", "0"],
        ["TRN", "1", trace, _originating_company(inquiry.submitter_id)],
        ["NM1", "IL", "1", last, x12_clean(inquiry.first_name, 35), *_blank(3), "MI", member],
        ["DMG", "D8", inquiry.birth_date.strftime("%Y%m%d")],
        ["DTP", "291", "D8", inquiry.service_date.strftime("%Y%m%d")],
        ["EQ", inquiry.service_type],
    ]


def _blank(count: int) -> list[str]:
    return [""] * count


def _segment(elements: list[str]) -> str:
    while len(elements) > 1 and elements[-1] == "":
        elements = elements[:-1]  # no trailing empty elements
    return ELEMENT.join(elements) + TERMINATOR


def x12_270_build(inquiry: EligibilityInquiry) -> str:
    """Return the X279A1 270 interchange for ``inquiry``: one ISA/GS(HS)/ST 270 with 2000A (payer, NM1*PR, payer id
    qualifier PI), 2000B (provider, NM1*1P, NPI qualifier XX) and 2000C (subscriber: TRN*1 with our trace and
    originating company id, NM1*IL with member id qualifier MI, DMG birth date, DTP*291 service date, EQ service
    type), on one line, delimiters ``*`` ``^`` ``:`` ``~``.

    Only the inquiry's fields go out. Data elements pass through ``x12_clean``: delimiter and non-ASCII characters
    become spaces (X12 has no escape character), and each element is cut to its X279A1 maximum length. ISA06/ISA08
    are padded to 15 characters. Control numbers: ISA13 (9 digits, zero-padded), GS06 and ST02 (at least 4 digits)
    all derive from ``control_number``. Raises ``ValueError`` (naming the field, never its value) for an NPI that is
    not ten digits, a control number outside 1-999999999, a service type that is not a code, a usage other than
    T/P, or a required element (names, ids, trace) empty once cleaned.
    """
    _checked(inquiry)
    created = inquiry.created.astimezone(datetime.UTC)
    ctl = inquiry.control_number
    sender, receiver = _isa_id(inquiry.submitter_id, "submitter_id"), _isa_id(inquiry.receiver_id, "receiver_id")
    isa = ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", sender, "ZZ", receiver, created.strftime("%y%m%d")]
    isa += [created.strftime("%H%M"), REPETITION, "00501", f"{ctl:09d}", "0", inquiry.usage, COMPONENT]
    gs = ["GS", "HS", sender.strip(), receiver.strip(), created.strftime("%Y%m%d"), created.strftime("%H%M")]
    gs += [str(ctl), "X", VERSION]
    body = [["ST", "270", f"{ctl:04d}", VERSION], *_segments_270(inquiry)]
    body.append(["SE", str(len(body) + 1), f"{ctl:04d}"])
    tail = [["GE", "1", str(ctl)], ["IEA", "1", f"{ctl:09d}"]]
    return ELEMENT.join(isa) + TERMINATOR + "".join(_segment(s) for s in [gs, *body, *tail])


# --- reading an interchange ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delimiters:
    """The delimiters an interchange declares in its ISA: element (ISA's 4th character), repetition (ISA11, empty
    when it is not a separator), component (ISA16) and segment terminator (the character after ISA16)."""

    element: str
    repetition: str
    component: str
    terminator: str


def x12_delimiters(text: str) -> Delimiters | None:
    """Return the delimiters of the interchange ``text`` (leading whitespace and a BOM ignored), or ``None`` when it
    does not start with an ISA that declares them. Reads the ISA by its 16 element separators, so an ISA that is not
    exactly 106 characters still gives its delimiters (``x12_structure_check`` reports the width)."""
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("ISA") or len(text) < 4:
        return None
    element = text[3]
    if element.isalnum() or element.isspace():
        return None
    parts = text.split(element, 16)
    if len(parts) < 17 or len(parts[16]) < 2:
        return None
    component, terminator = parts[16][0], parts[16][1]
    repetition = parts[11] if len(parts[11]) == 1 and not parts[11].isalnum() and parts[11] != " " else ""
    if len({element, component, terminator}) < 3 or terminator.isalnum():
        return None
    return Delimiters(element, repetition, component, terminator)


def x12_segments(text: str) -> tuple[Delimiters | None, list[list[str]]]:
    """Return the delimiters and the segments of ``text``, each a list of elements (segment id first), with CR/LF
    and spaces around segment terminators dropped; ``(None, [])`` when ``text`` is not an X12 interchange."""
    delimiters = x12_delimiters(text)
    if delimiters is None:
        return None, []
    text = text.lstrip("\ufeff \t\r\n")
    segments = []
    for raw in text.split(delimiters.terminator):
        raw = raw.strip("\r\n\t ")
        if raw:
            segments.append(raw.split(delimiters.element))
    return delimiters, segments


def _element(segment: list[str], position: int) -> str:
    """Return element ``position`` (1-based, as X12 numbers them) of ``segment``, ``""`` when absent."""
    return segment[position].strip() if position < len(segment) else ""


# --- structure check -----------------------------------------------------------------------------------------------


def _trailer_problems(trailer: list[str], header: list[str] | None, count: int) -> list[str]:
    """Check one trailer (SE, GE or IEA) against its header (ST, GS or ISA) and the ``count`` it must state."""
    tag = trailer[0]
    name, header_tag, control, counted = {
        "SE": ("SE", "ST", 2, "segments in ST..SE"),
        "GE": ("GE", "GS", 6, "transaction sets in the group"),
        "IEA": ("IEA", "ISA", 13, "groups in the interchange"),
    }[tag]
    if header is None:
        return [f"{name} without {header_tag}"]
    problems = []
    if _element(trailer, 1) != str(count):
        problems.append(f"{name}01 is {_element(trailer, 1)!r} but there are {count} {counted}")
    if _element(trailer, 2) != _element(header, control):
        problems.append(f"{name}02 does not match {header_tag}{control:02d}")
    return problems


def _envelope_problems(segments: list[list[str]]) -> list[str]:
    """Check the ISA/GS/ST envelopes of ``segments``: counts and matching control numbers."""
    problems: list[str] = []
    open_: dict[str, list[str] | None] = {"ISA": segments[0], "GS": None, "ST": None}
    counts = {"SE": 0, "GE": 0, "IEA": 0}  # segments in the set, sets in the group, groups in the interchange
    for segment in segments[1:]:
        tag = segment[0]
        counts["SE"] += 1
        if tag in ("GS", "ST"):
            open_[tag] = segment
            counts["IEA" if tag == "GS" else "GE"] += 1
            counts["GE" if tag == "GS" else "SE"] = 0 if tag == "GS" else 1
        elif tag in counts:
            header = {"SE": "ST", "GE": "GS", "IEA": "ISA"}[tag]
            problems += _trailer_problems(segment, open_[header], counts[tag])
            open_[header] = None
    problems += [f"{tag} without its trailer" for tag in ("GS", "ST") if open_[tag] is not None]
    if segments[-1][0] != "IEA":
        problems.append("the interchange does not end with IEA")
    return problems


def _hl_problems(segments: list[list[str]]) -> list[str]:
    """Check each transaction set's HL hierarchy: parents earlier, levels 20 -> 21 -> 22 (-> 23), child codes."""
    problems: list[str] = []
    levels: dict[str, str] = {}
    children: dict[str, int] = {}
    declared: dict[str, str] = {}
    for segment in segments:
        if segment[0] == "ST":
            problems += _child_code_problems(declared, children)
            levels, children, declared = {}, {}, {}
        if segment[0] != "HL":
            continue
        hl_id, parent, level, child = (_element(segment, n) for n in (1, 2, 3, 4))
        if not hl_id or hl_id in levels:
            problems.append(f"HL01 {hl_id!r} is missing or repeated")
            continue
        if parent and parent not in levels:
            problems.append(f"HL {hl_id}: parent {parent} is not an earlier HL")
        elif level not in _PARENT_LEVEL:
            problems.append(f"HL {hl_id}: level {level!r} is not 20, 21, 22 or 23")
        elif levels.get(parent, "") != _PARENT_LEVEL[level]:
            problems.append(f"HL {hl_id}: level {level} cannot sit under level {levels.get(parent) or 'none'}")
        if parent:
            children[parent] = children.get(parent, 0) + 1
        levels[hl_id], declared[hl_id] = level, child
    return problems + _child_code_problems(declared, children)


def _child_code_problems(declared: dict[str, str], children: dict[str, int]) -> list[str]:
    problems = []
    for hl_id, child in declared.items():
        if child == "1" and not children.get(hl_id):
            problems.append(f"HL {hl_id}: HL04 says it has children but none follows")
        elif child == "0" and children.get(hl_id):
            problems.append(f"HL {hl_id}: HL04 says it has no children but some follow")
        elif child not in ("0", "1", ""):
            problems.append(f"HL {hl_id}: HL04 {child!r} is not 0 or 1")
    return problems


def x12_structure_check(text: str) -> list[str]:
    """Return the structural problems of the X12 interchange ``text``, ``[]`` when it is sound: the ISA is 106
    characters; SE01 counts ST..SE; SE02 = ST02; GE01 counts the ST; GE02 = GS06; IEA01 counts the GS; IEA02 = ISA13;
    every HL's parent (HL02) is an earlier HL; HL03 levels go 20 -> 21 -> 22 (-> 23); HL04 says whether children
    follow. Problems name segments and counts, never data values. Does not raise.
    X12.5 (envelopes); 005010X279A1 HL (2000A-2000D)."""
    delimiters, segments = x12_segments(text)
    if delimiters is None or not segments:
        return ["not an X12 interchange: no ISA declaring the delimiters"]
    problems = []
    isa_text = text.lstrip("\ufeff \t\r\n").split(delimiters.terminator, 1)[0] + delimiters.terminator
    if len(isa_text) != 106:
        problems.append(f"the ISA is {len(isa_text)} characters, not 106")
    if len(segments[0]) != 17:
        problems.append(f"the ISA has {len(segments[0]) - 1} elements, not 16")
    return problems + _envelope_problems(segments) + _hl_problems(segments)


# --- 271 in --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Benefit:
    """One 2110C EB segment, read: ``code`` EB01, ``level`` EB02, ``services`` EB03 (empty: applies generally),
    ``period`` EB06, ``amount`` EB07 (string, unparsed), ``percent`` EB08, ``network`` EB12, ``plan`` EB05."""

    code: str
    level: str
    services: tuple[str, ...]
    plan: str
    period: str
    amount: str
    percent: str
    network: str


@dataclass
class _Reading:
    """What a pass over one 271 transaction set collects."""

    rejections: list[tuple[str, str, str]]  # (loop, AAA03, AAA04)
    benefits: list[_Benefit]
    plan_refs: dict[str, str]  # REF01 (18, 1L) -> REF03 in 2100C
    traces: list[tuple[str, str]]  # (TRN01, TRN02) in 2000C
    warnings: list[str]


_CATEGORY = {"C": "deductible", "G": "out-of-pocket", "A": "coinsurance", "B": "copay"}
_STATUS_CODES = frozenset({"1", "6", "7", "8"})


def _transaction(segments: list[list[str]]) -> tuple[list[list[str]], list[str]]:
    """Return the segments of the first 271 transaction set (ST..SE) and warnings; ``[]`` with the reason when
    there is none."""
    kinds = [_element(s, 1) for s in segments if s[0] == "ST"]
    if "271" not in kinds:
        found = f"ST01 {', '.join(kinds)}" if kinds else "no ST segment"
        return [], [f"not a 271 ({found})"]
    start = next(i for i, s in enumerate(segments) if s[0] == "ST" and _element(s, 1) == "271")
    end = next((i for i in range(start, len(segments)) if segments[i][0] == "SE"), len(segments))
    warnings = ["more than one 271 in the interchange: only the first is read"] if kinds.count("271") > 1 else []
    return segments[start : end + 1], warnings


def _benefit(segment: list[str], delimiters: Delimiters) -> _Benefit:
    raw = _element(segment, 3)
    split = raw.split(delimiters.repetition) if delimiters.repetition else [raw]
    services = tuple(s.strip() for s in split if s.strip())
    return _Benefit(
        code=_element(segment, 1),
        level=_element(segment, 2),
        services=services,
        plan=_element(segment, 5),
        period=_element(segment, 6),
        amount=_element(segment, 7),
        percent=_element(segment, 8),
        network=_element(segment, 12),
    )


@dataclass
class _Position:
    """Where a walk over a 271 is: the HL level (HL03), the loop, and whether inside LS/LE (loop 2120)."""

    level: str = ""
    loop: str = ""
    in_2120: bool = False

    def move(self, segment: list[str]) -> None:
        """Follow ``segment``: HL opens a 2000 loop, NM1 its 2100 loop, EB the 2110 loop, LS/LE enclose 2120."""
        tag = segment[0]
        if tag == "HL":
            self.level, self.in_2120 = _element(segment, 3), False
            self.loop = _LEVELS.get(self.level, ("", "", ""))[0]
        elif tag == "NM1" and not self.in_2120 and self.loop.startswith("2000"):
            self.loop = _LEVELS[self.level][1]
        elif tag == "EB" and self.level in ("22", "23"):
            self.loop = _LEVELS[self.level][2]
        elif tag in ("LS", "LE"):
            self.in_2120 = tag == "LS"


def _read(transaction: list[list[str]], delimiters: Delimiters) -> _Reading:
    """Walk one 271 by its loops and collect the AAAs with their loop, the 2110C EBs, the 2100C plan REFs and the
    2000C TRNs."""
    reading = _Reading([], [], {}, [], [])
    where = _Position()
    for segment in transaction:
        where.move(segment)
        tag = segment[0]
        if tag == "EB" and where.loop == "2110C":
            reading.benefits.append(_benefit(segment, delimiters))
        elif tag == "AAA" and not where.in_2120:
            loop = "2100A" if where.loop == "2000A" else where.loop
            reading.rejections.append((loop, _element(segment, 3), _element(segment, 4)))
        elif tag == "TRN" and where.level == "22":
            reading.traces.append((_element(segment, 1), _element(segment, 2)))
        elif tag == "REF" and where.loop == "2100C" and _element(segment, 1) in ("18", "1L"):
            reading.plan_refs.setdefault(_element(segment, 1), _element(segment, 3))
    return reading


def _rejection(rejections: list[tuple[str, str, str]]) -> tuple[str, str, str, str] | None:
    """Return (outcome, AAA03, loop, AAA04) for the AAAs of a 271, ``None`` when there are none. Any 42 or 80 makes
    the payer unavailable; otherwise the first AAA decides by its loop and code."""
    if not rejections:
        return None
    for loop, code, follow_up in rejections:
        if code in UNAVAILABLE_REASONS:
            return PAYER_UNAVAILABLE, code, loop, follow_up
    loop, code, follow_up = rejections[0]
    if loop == "2100B" or (loop in ("2100C", "2100D") and code in PROVIDER_REASONS):
        outcome = PROVIDER_REJECTED
    elif loop in ("2100C", "2100D") and code in SUBSCRIBER_REASONS:
        outcome = NOT_FOUND
    else:
        outcome = REJECTED
    return outcome, code, loop, follow_up


def _for_service(benefits: Iterable[_Benefit], service_type: str) -> list[_Benefit]:
    """Return the benefits that name ``service_type`` when there are any, else those that apply generally (EB03
    empty or 30)."""
    benefits = list(benefits)
    specific = [b for b in benefits if service_type and service_type in b.services]
    if specific:
        return specific
    return [b for b in benefits if not b.services or SERVICE_TYPE_PLAN in b.services]


def _level_rank(benefit: _Benefit) -> int:
    """EB02: individual first, then unstated, then other levels, family last."""
    return {"IND": 0, "": 1, "FAM": 3}.get(benefit.level, 2)


def _in_tier(benefits: list[_Benefit], tier: str) -> list[_Benefit]:
    """Return the benefits for network tier ``tier`` (EB12 Y or N): those naming it first, then those for both
    (EB12 W, U or missing), each ordered individual before family."""
    exact = [b for b in benefits if b.network == tier]
    both = [b for b in benefits if b.network not in ("Y", "N")]
    return sorted(exact, key=_level_rank) + sorted(both, key=_level_rank)


def _cents(value: str) -> int | None:
    """Return the X12 decimal dollar amount ``value`` as integer cents (rounded half up), ``None`` when it is not a
    non-negative amount."""
    if not re.fullmatch(r"\d*\.?\d+|\d+\.", value):
        return None
    return int((Decimal(value) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _percent(value: str) -> Decimal | None:
    """Return the X12 decimal fraction ``value`` (0-1) as a percentage 0-100, ``None`` when it is not one."""
    if not re.fullmatch(r"\d*\.?\d+|\d+\.", value):
        return None
    try:
        fraction = Decimal(value)
    except InvalidOperation:
        return None
    if fraction > 1:
        return None
    percent = fraction * 100
    return percent.quantize(Decimal(1)) if percent == percent.to_integral_value() else percent.normalize()


def _first_value(candidates: list[_Benefit], category: str, warnings: list[str]) -> int | Decimal | None:
    """Return the first readable value among ``candidates`` for ``category``; warn once per unreadable element."""
    for benefit in candidates:
        if category == "coinsurance":
            value: int | Decimal | None = _percent(benefit.percent)
            element = "EB08"
            raw = benefit.percent
        else:
            value, element, raw = _cents(benefit.amount), "EB07", benefit.amount
        if value is not None:
            return value
        warning = f"{element} of {category} is {'missing' if not raw else 'not an amount'}"
        if category == "coinsurance" and raw:
            warning = f"{element} of {category} is not a fraction 0-1"
        if warning not in warnings:
            warnings.append(warning)
    return None


def _tier_value(benefits: list[_Benefit], code: str, tier: str, warnings: list[str]) -> int | Decimal | None:
    """Return the value of one share field (EB01 ``code``) in network tier ``tier`` (Y or N)."""
    category = _CATEGORY[code]
    rows = _in_tier([b for b in benefits if b.code == code], tier)
    if code in ("C", "G"):
        remaining = [b for b in rows if b.period == "29"]
        if rows and not remaining:
            warning = f"EB06 of {category}: only a total is given, not what remains (time period 29)"
            if warning not in warnings:
                warnings.append(warning)
        rows = remaining
    return _first_value(rows, category, warnings)


def _share(benefits: list[_Benefit], tier: str, warnings: list[str]) -> Share | None:
    """Return the subscriber's share in network tier ``tier`` (EB12 Y or N), ``None`` when the 271 says nothing."""
    deductible = _tier_value(benefits, "C", tier, warnings)
    out_of_pocket = _tier_value(benefits, "G", tier, warnings)
    coinsurance = _tier_value(benefits, "A", tier, warnings)
    copay = _tier_value(benefits, "B", tier, warnings)
    if deductible is None and out_of_pocket is None and coinsurance is None and copay is None:
        return None
    return Share(
        deductible_remaining_cents=deductible if isinstance(deductible, int) else None,
        out_of_pocket_remaining_cents=out_of_pocket if isinstance(out_of_pocket, int) else None,
        coinsurance_percent=coinsurance if isinstance(coinsurance, Decimal) else None,
        copay_cents=copay if isinstance(copay, int) else None,
    )


def _status(reading: _Reading, service_type: str) -> list[_Benefit]:
    """Return the EB01 1 rows for the service (empty: inactive); warn when no status row (1, 6, 7, 8) is there."""
    status = _for_service([b for b in reading.benefits if b.code in _STATUS_CODES], service_type)
    if not status:
        reading.warnings.append(f"no EB01 1/6 for service type {service_type or SERVICE_TYPE_PLAN}: read as inactive")
    return [b for b in status if b.code == "1"]


def _plan_name(active: list[_Benefit], reading: _Reading) -> str:
    """Return EB05 of the active coverage (individual first), else the 2100C REF*18 or REF*1L description."""
    plan = next((b.plan for b in sorted(active, key=_level_rank) if b.plan), "")
    return plan or reading.plan_refs.get("18", "") or reading.plan_refs.get("1L", "")


def _answered_service(benefits: list[_Benefit], service_type: str) -> str:
    """Return ``service_type`` when an EB03 names it, else 30 when some EB applies generally, else ``""``."""
    if any(service_type and service_type in b.services for b in benefits):
        return service_type
    return SERVICE_TYPE_PLAN if any(not b.services or SERVICE_TYPE_PLAN in b.services for b in benefits) else ""


def _benefits_answer(reading: _Reading, service_type: str) -> EligibilityAnswer:
    """Return the answer of a 271 without AAA: status, plan and shares from its 2110C EBs for ``service_type``."""
    active = _status(reading, service_type)
    money = _for_service([b for b in reading.benefits if b.code in _CATEGORY], service_type)
    return EligibilityAnswer(
        outcome=ACTIVE if active else INACTIVE,
        plan_name=_plan_name(active, reading),
        service_type=_answered_service(reading.benefits, service_type),
        in_network=_share(money, "Y", reading.warnings),
        out_of_network=_share(money, "N", reading.warnings),
        trace=_trace(reading.traces),
        warnings=tuple(reading.warnings),
    )


def _trace(traces: list[tuple[str, str]]) -> str:
    """Return our TRN02 echoed in 2000C (TRN01 2, referenced transaction), else the first TRN02."""
    echoed = [number for kind, number in traces if kind == "2"]
    return (echoed or [number for _, number in traces] or [""])[0]


def _guess_service_type(benefits: list[_Benefit]) -> str:
    """Return the service type the 271 answers about when the caller did not say: the first EB03 other than 30."""
    return next((s for b in benefits for s in b.services if s != SERVICE_TYPE_PLAN), "")


def x12_271_parse(text: str, *, service_type: str | None = None) -> EligibilityAnswer:
    """Return what the payer answered in the X279A1 271 ``text``, for ``service_type`` (EQ01 asked; when ``None``,
    the first service type other than 30 the EBs name).

    Delimiters come from the ISA (CR/LF after terminators, leading whitespace and a BOM are fine). Outcome: an AAA
    anywhere with AAA03 42 or 80 -> ``PAYER_UNAVAILABLE``; else the first AAA decides: at 2100B, or at 2100C/2100D
    with a provider reason -> ``PROVIDER_REJECTED``; at 2100C/2100D with a subscriber/patient reason
    (``SUBSCRIBER_REASONS``) -> ``NOT_FOUND``; any other (2000A/2100A, 2110C) -> ``REJECTED`` (an AAA at 2000A is
    reported as loop 2100A). Without AAA: an EB01 1 for the service -> ``ACTIVE``, else ``INACTIVE`` (EB01 6, 7, 8
    or none). 2110C EB rows naming the service type win over those that apply generally (EB03 empty or 30); EB02
    IND wins over FAM; EB12 Y and N give the two tiers, W, U or none counts for both. Deductible (EB01 C) and
    out-of-pocket (G): only EB06 29 (remaining), EB07 dollars -> cents; coinsurance (A): EB08 fraction -> percent;
    copay (B): EB07 -> cents. Plan name: EB05 of the active EB01 1, else 2100C REF*18 or REF*1L REF03. Trace: the
    2000C TRN02 echoed. Anything that is not a 271 (no ISA, a 999, a TA1) -> ``UNREADABLE`` with a warning.

    Never raises on bad input: an unreadable element costs only itself, with a warning naming it ("EB07 of
    deductible is not an amount"). Warnings carry no data values.
    """
    try:
        return _parse(text, service_type)
    except Exception as exc:  # lenient reading: a bug here must not lose the answer
        return EligibilityAnswer(outcome=UNREADABLE, warnings=(f"the 271 could not be read ({type(exc).__name__})",))


def _parse(text: str, service_type: str | None) -> EligibilityAnswer:
    delimiters, segments = x12_segments(text if isinstance(text, str) else "")
    if delimiters is None:
        return EligibilityAnswer(outcome=UNREADABLE, warnings=("not an X12 interchange: no ISA declaring delimiters",))
    transaction, warnings = _transaction(segments)
    if not transaction:
        return EligibilityAnswer(outcome=UNREADABLE, warnings=tuple(warnings))
    reading = _read(transaction, delimiters)
    reading.warnings.extend(warnings)
    rejection = _rejection(reading.rejections)
    if rejection:
        outcome, code, loop, follow_up = rejection
        return EligibilityAnswer(
            outcome=outcome,
            reason_code=code,
            reason_loop=loop,
            follow_up=follow_up,
            trace=_trace(reading.traces),
            warnings=tuple(reading.warnings),
        )
    asked = service_type if service_type is not None else _guess_service_type(reading.benefits)
    return _benefits_answer(reading, asked)
