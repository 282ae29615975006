"""The stand-in clearinghouse: the far side of a real-time eligibility check, for ``make demo`` and the tests.

Pure functions, no database: ``answer_x12`` reads a 270 and writes the 271 a payer would send back; ``answer_json``
answers the same inquiry in the shape of Stedi's real-time eligibility JSON API. Both answer from one table,
``SCENARIOS`` (member id -> what the payer says), which holds the Da Vinci sandbox members
(``fixtures/davinci/*coverage*.json``, ``Coverage.subscriberId``) and a few special test ids.

This is a test double of ``healthcommerce.coverage`` (``x12.py``, ``clearinghouse.py``), so it has its own small
X12 reader and writer and shares no code with them (and the sandbox may import only ``core``: pyproject.toml
import-linter contract). It reads only what it needs from the 270 and is not a validator.

Sources: ASC X12N 005010X279A1 (270/271): ISA fixed-width header (element separator at offset 3, repetition
separator ISA11 at 82, component separator ISA16 at 104, segment terminator at 105), loops 2000A-2000C,
2100A-2100C (NM1 PR/1P/IL), TRN (2100C; TRN01 1 in the 270, 2 in the 271), EQ (2110C), AAA (reject reason AAA03,
follow-up AAA04), EB (2110C: EB01 benefit, EB02 coverage level, EB03 service type, EB04 insurance type, EB05 plan
description, EB06 time period, EB07 amount, EB08 percent as a fraction, EB12 in-plan network). Stedi's JSON shape:
see ``healthcommerce/coverage/clearinghouse.py`` ``StediJsonClearinghouse``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

# The credential the stand-in accepts: ``Authorization: Bearer sandbox-clearinghouse`` (X12) or
# ``Authorization: sandbox-clearinghouse`` (Stedi JSON). Not a secret: a demo value.
SANDBOX_CLEARINGHOUSE_KEY = "sandbox-clearinghouse"

_COVERED = ("12", "5")  # DME and diagnostic lab


@dataclass(frozen=True)
class Benefit:
    """One EB segment (2110C) the stand-in payer answers with, for the service type asked about.

    ``code``: EB01 (``1`` active, ``6`` inactive, ``A`` coinsurance, ``B`` copay, ``C`` deductible, ``G`` out of
    pocket); ``network``: EB12 (``Y`` in-network, ``N`` out-of-network, ``W`` both, ``""`` not said);
    ``amount``: EB07 in dollars as text; ``percent``: EB08 as a fraction (``"0.2"`` is 20 %); ``period``: EB06
    (``29`` remaining, ``23`` calendar year).
    """

    code: str
    network: str = ""
    amount: str = ""
    percent: str = ""
    period: str = ""
    level: str = "IND"


@dataclass(frozen=True)
class Scenario:
    """What the stand-in payer says about one member id.

    ``benefits`` apply to each service type in ``covered`` (an EB01 ``1`` row with ``plan`` is added first when
    ``active``); any other service type gets EB01 ``6``. ``reject`` is an AAA instead of benefits:
    ``(loop, AAA01 valid-request indicator, AAA03 reason, AAA04 follow-up)`` with loop ``2100A`` or ``2100C``.
    """

    active: bool = True
    plan: str = ""
    benefits: tuple[Benefit, ...] = ()
    covered: tuple[str, ...] = _COVERED
    reject: tuple[str, str, str, str] | None = None


SCENARIOS: dict[str, Scenario] = {
    # pat013 John (o2john_02__coverage.json)
    "10A3D58WH22": Scenario(
        plan="Medicare Part B",
        benefits=(
            Benefit("C", network="Y", amount="240", period="29"),
            Benefit("A", network="Y", percent="0.2"),
            Benefit("G", network="Y", amount="1500", period="29"),
            Benefit("A", network="N", percent="0.4"),
        ),
    ),
    # pat015 Billy (o2billy_02__coverage.json)
    "10A3D58WH456": Scenario(active=False, plan="Medicare Part B"),
    # pat014 Teddy (o2teddy_02__coverage.json)
    "10A3D58WH1600": Scenario(
        plan="Medicare Part B",
        benefits=(Benefit("C", network="Y", amount="0", period="29"), Benefit("B", network="Y", amount="25")),
    ),
    # pat1234 (5. coverage.json)
    "10C6D58ZH25": Scenario(
        plan="Medicare Part B",
        benefits=(Benefit("A", network="Y", percent="0.2"), Benefit("C", network="Y", amount="0", period="29")),
    ),
    "NOTFOUND": Scenario(active=False, reject=("2100C", "N", "72", "C")),
    "UNAVAILABLE": Scenario(active=False, reject=("2100A", "Y", "42", "R")),
}
UNKNOWN = Scenario(active=False, reject=("2100C", "N", "75", "C"))  # subscriber not found

_NETWORK_NAMES = {"Y": "Yes", "N": "No", "W": "Not Applicable", "U": "Unknown"}
_BENEFIT_NAMES = {
    "1": "Active Coverage",
    "6": "Inactive",
    "A": "Co-Insurance",
    "B": "Co-Payment",
    "C": "Deductible",
    "G": "Out of Pocket (Stop Loss)",
}
_FOLLOW_UP_NAMES = {"C": "Please Correct and Resubmit", "R": "Resubmission Allowed", "N": "Resubmission Not Allowed"}
_REASON_NAMES = {
    "42": "Unable to Respond at Current Time",
    "72": "Invalid/Missing Subscriber/Insured ID",
    "75": "Subscriber/Insured Not Found",
}


def scenario_for(member_id: str) -> Scenario:
    """Return the scenario for ``member_id`` (``UNKNOWN``, subscriber not found, for any other id)."""
    return SCENARIOS.get(member_id.strip(), UNKNOWN)


def benefits_for(scenario: Scenario, service_type: str) -> list[Benefit]:
    """Return the EB rows the payer answers for ``service_type``: EB01 1 then the scenario's rows when the member is
    active and the type is covered, else one EB01 6 row; none for a rejection."""
    if scenario.reject:
        return []
    if scenario.active and service_type in scenario.covered:
        return [Benefit("1", level="IND"), *scenario.benefits]
    return [Benefit("6", level="IND")]


# --- X12 -----------------------------------------------------------------------------------------------------


@dataclass
class Inquiry270:
    """What the stand-in reads from a 270: the envelope ids, the parties and the question."""

    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    terminator: str = "~"
    sender: str = ""
    receiver: str = ""
    control: str = "1"
    group_control: str = "1"
    reference: str = ""
    payer_name: str = ""
    payer_id: str = ""
    provider_name: str = ""
    provider_npi: str = ""
    last_name: str = ""
    first_name: str = ""
    member_id: str = ""
    trace: str = ""
    trace_company: str = ""
    service_type: str = ""
    segment_ids: list[str] = field(default_factory=list)


def read_270(body: str) -> Inquiry270 | None:
    """Return what ``body`` asks, or ``None`` when it is not a 270 (no ISA header, or no ST*270)."""
    text = body.lstrip()
    if len(text) < 106 or not text.startswith("ISA"):
        return None
    found = Inquiry270(element=text[3], repetition=text[82], component=text[104], terminator=text[105])
    for raw in text.split(found.terminator):
        segment = raw.strip()
        if segment:
            _read_segment(found, segment.split(found.element))
    return found if "ST" in found.segment_ids and found.service_type != "?" else None


def _read_segment(found: Inquiry270, elements: list[str]) -> None:
    """Copy what the stand-in needs from one segment of a 270 into ``found``."""

    def at(index: int) -> str:
        return elements[index].strip() if index < len(elements) else ""

    sid = elements[0]
    found.segment_ids.append(sid)
    if sid == "ISA":
        found.sender, found.receiver, found.control = at(6), at(8), at(13)
    elif sid == "GS":
        found.group_control = at(6)
    elif sid == "ST" and at(1) != "270":
        found.service_type = "?"  # not an inquiry
    elif sid == "BHT":
        found.reference = at(3)
    elif sid == "NM1" and at(1) == "PR":
        found.payer_name, found.payer_id = at(3), at(9)
    elif sid == "NM1" and at(1) == "1P":
        found.provider_name, found.provider_npi = at(3), at(9)
    elif sid == "NM1" and at(1) == "IL":
        found.last_name, found.first_name, found.member_id = at(3), at(4), at(9)
    elif sid == "TRN":
        found.trace, found.trace_company = at(2), at(3)
    elif sid == "EQ" and found.service_type != "?":
        found.service_type = at(1).split(found.repetition)[0]


def answer_x12(body: str, *, usage: str = "T", now: datetime.datetime | None = None) -> tuple[int, str]:
    """Answer the 270 ``body`` as a payer would: ``(200, 271 text)`` for the member's scenario (``SCENARIOS``),
    echoing the TRN (TRN01 ``2``) and swapping the ISA and GS sender and receiver ids; ``(400, plain text)`` for a
    body that is not a 270. ``usage`` is the reply's ISA15 (``T`` test, ``P`` production); ``now`` (UTC) the
    reply's date and time."""
    found = read_270(body)
    if found is None:
        return 400, "The body is not an X12 270 inquiry."
    moment = now or datetime.datetime.now(datetime.UTC)
    segments = _envelope_start(found, usage=usage, moment=moment) + _transaction(found, moment=moment)
    count = len(segments) - 2 + 1  # ST..SE, with SE itself
    segments += [["SE", str(count), "0001"], ["GE", "1", found.group_control], ["IEA", "1", found.control.zfill(9)]]
    return 200, "".join(found.element.join(parts) + found.terminator for parts in segments) + "\n"


def _envelope_start(found: Inquiry270, *, usage: str, moment: datetime.datetime) -> list[list[str]]:
    """Return the ISA and GS segments of the reply: our sender is the inquiry's receiver and the other way round."""
    sender, receiver = found.receiver or "STANDIN", found.sender or "SUBMITTER"
    control = found.control.zfill(9)
    isa = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        sender.ljust(15)[:15],
        "ZZ",
        receiver.ljust(15)[:15],
        moment.strftime("%y%m%d"),
        moment.strftime("%H%M"),
        found.repetition,
        "00501",
        control,
        "0",
        usage,
        found.component,
    ]
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M")
    gs = ["GS", "HB", sender, receiver, date, time, found.group_control, "X", "005010X279A1"]
    return [isa, gs]


def _transaction(found: Inquiry270, *, moment: datetime.datetime) -> list[list[str]]:
    """Return ST through the last EB (or AAA) of the 271 for ``found``'s member."""
    scenario = scenario_for(found.member_id)
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M")
    segments = [
        ["ST", "271", "0001", "005010X279A1"],
        ["BHT", "0022", "11", found.reference or found.trace, date, time],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", found.payer_name or "PAYER", "", "", "", "", "PI", found.payer_id],
    ]
    if scenario.reject and scenario.reject[0] == "2100A":
        _, valid, reason, follow_up = scenario.reject
        return [*segments, ["AAA", valid, "", reason, follow_up]]
    segments += [
        ["HL", "2", "1", "21", "1"],
        ["NM1", "1P", "2", found.provider_name or "PROVIDER", "", "", "", "", "XX", found.provider_npi],
        ["HL", "3", "2", "22", "0"],
        ["TRN", "2", found.trace, found.trace_company or "9999999999"],
        ["NM1", "IL", "1", found.last_name, found.first_name, "", "", "", "MI", found.member_id],
    ]
    if scenario.reject:
        _, valid, reason, follow_up = scenario.reject
        return [*segments, ["AAA", valid, "", reason, follow_up]]
    segments.append(["DTP", "291", "D8", date])
    for benefit in benefits_for(scenario, found.service_type):
        segments.append(_eb(benefit, found.service_type, plan=scenario.plan))
    return segments


def _eb(benefit: Benefit, service_type: str, *, plan: str) -> list[str]:
    """Return one EB segment's elements (trailing empty elements dropped)."""
    insurance = "MB" if benefit.code not in ("1", "6") else ""
    description = plan if benefit.code in ("1", "6") else ""
    elements = ["EB", benefit.code, benefit.level, service_type, insurance, description, benefit.period]
    elements += [benefit.amount, benefit.percent, "", "", "", benefit.network]
    while elements[-1] == "":
        elements.pop()
    return elements


# --- Stedi JSON ----------------------------------------------------------------------------------------------


def answer_json(body: Any) -> tuple[int, dict[str, Any]]:
    """Answer a Stedi-shaped eligibility request ``body`` (a parsed JSON object) for the member's scenario:
    ``(200, response)`` with ``planStatus``, ``benefitsInformation`` and, for a rejection, ``errors`` (also
    under ``payer.aaaErrors`` or ``subscriber.aaaErrors``, as Stedi nests them); ``(400, {"errors": [...]})``
    for a body without ``tradingPartnerServiceId``, ``provider.npi`` or ``subscriber.memberId``."""
    subscriber = body.get("subscriber") if isinstance(body, dict) else None
    provider = body.get("provider") if isinstance(body, dict) else None
    if not (
        isinstance(subscriber, dict)
        and isinstance(provider, dict)
        and body.get("tradingPartnerServiceId")
        and subscriber.get("memberId")
        and provider.get("npi")
    ):
        error = {"code": "33", "description": "Input Errors", "followupAction": "Please Correct and Resubmit"}
        return 400, {"errors": [error], "status": "ERROR"}
    encounter = body.get("encounter") if isinstance(body.get("encounter"), dict) else {}
    types = encounter.get("serviceTypeCodes") or ["30"]
    service_type = str(types[0])
    scenario = scenario_for(str(subscriber["memberId"]))
    response: dict[str, Any] = {
        "controlNumber": str(body.get("controlNumber", "")),
        "tradingPartnerServiceId": str(body["tradingPartnerServiceId"]),
        "provider": {"providerName": str(provider.get("organizationName", "")).upper(), "npi": provider["npi"]},
        "subscriber": {
            "memberId": subscriber["memberId"],
            "firstName": str(subscriber.get("firstName", "")).upper(),
            "lastName": str(subscriber.get("lastName", "")).upper(),
        },
        "payer": {"name": "SANDBOX PAYER", "payorIdentification": str(body["tradingPartnerServiceId"])},
    }
    if scenario.reject:
        return 200, _json_rejected(response, scenario.reject)
    benefits = benefits_for(scenario, service_type)
    rows = [_json_benefit(benefit, service_type, plan=scenario.plan) for benefit in benefits]
    status = rows[0]
    response["planStatus"] = [
        {
            "statusCode": status["code"],
            "status": status["name"],
            "planDetails": scenario.plan,
            "serviceTypeCodes": [service_type],
        }
    ]
    response["benefitsInformation"] = rows
    return 200, response


def _json_rejected(response: dict[str, Any], reject: tuple[str, str, str, str]) -> dict[str, Any]:
    """Add the AAA ``reject`` to ``response`` as Stedi does: in ``errors`` and under the loop's party."""
    loop, _valid, reason, follow_up = reject
    error = {
        "code": reason,
        "description": _REASON_NAMES.get(reason, ""),
        "followupAction": _FOLLOW_UP_NAMES.get(follow_up, follow_up),
        "location": f"Loop {loop}",
    }
    party = "payer" if loop == "2100A" else "subscriber"
    response[party]["aaaErrors"] = [error]
    response["errors"] = [error]
    return response


def _json_benefit(benefit: Benefit, service_type: str, *, plan: str) -> dict[str, Any]:
    """Return one ``benefitsInformation`` item for ``benefit`` (amounts and percent as strings, as Stedi sends)."""
    row: dict[str, Any] = {
        "code": benefit.code,
        "name": _BENEFIT_NAMES.get(benefit.code, ""),
        "coverageLevelCode": benefit.level,
        "serviceTypeCodes": [service_type],
    }
    if benefit.code in ("1", "6") and plan:
        row["planCoverage"] = plan
    if benefit.period:
        row["timeQualifierCode"] = benefit.period
    if benefit.amount:
        row["benefitAmount"] = benefit.amount
    if benefit.percent:
        row["benefitPercent"] = benefit.percent
    if benefit.network:
        row["inPlanNetworkIndicatorCode"] = benefit.network
        row["inPlanNetworkIndicator"] = _NETWORK_NAMES.get(benefit.network, "")
    return row
