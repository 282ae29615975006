"""The shapes an eligibility check passes between its parts (ADR 0026; the X12 layer: ADR 0025): what is asked
(``EligibilityInquiry``, the only data a clearinghouse receives), what the payer answered (``EligibilityAnswer`` with
a ``Share`` per network tier) and the outcome codes both carry. Pure data, no Django: the X12 layer
(``coverage.x12``), the clearinghouse adapters (``coverage.clearinghouse``) and the stored check
(``coverage.models.EligibilityCheck``) share them.

Source: ASC X12N 005010X279A1 (Health Care Eligibility Benefit Inquiry and Response), loops 2000A-2000C,
2100A-2100C, 2110C; AAA reject reason codes (AAA03) and follow-up action codes (AAA04) from its code lists.
"""

import datetime
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

# Service type codes (EQ01 / EB03) this app asks about: durable medical equipment for devices, diagnostic lab for
# specimen-collection kits. "30" (health benefit plan coverage) is the generic answer a payer may give instead.
SERVICE_TYPE_DME = "12"
SERVICE_TYPE_LAB = "5"
SERVICE_TYPE_PLAN = "30"

# Outcome codes of one check, stored on ``EligibilityCheck.outcome`` and counted per clearinghouse and payer.
ACTIVE = "active"  # coverage active for the service type (EB01 1)
INACTIVE = "inactive"  # coverage not active (EB01 6, or no EB01 1 at all)
NOT_FOUND = "not_found"  # the payer does not know the subscriber as sent (AAA at 2100C/2100D: 72, 73, 75, 58 ...)
PROVIDER_REJECTED = "provider_rejected"  # the payer refuses the provider (AAA at 2100B: 41, 43, 44, 51, 79 ...)
PAYER_UNAVAILABLE = "payer_unavailable"  # the payer cannot answer now (AAA 42 or 80): temporary, retried
REJECTED = "rejected"  # any other AAA rejection (for example at the payer, 2100A)
UNREADABLE = "unreadable"  # the answer is not a 271 this app can read
OUTCOMES = (ACTIVE, INACTIVE, NOT_FOUND, PROVIDER_REJECTED, PAYER_UNAVAILABLE, REJECTED, UNREADABLE)


@dataclass(frozen=True)
class EligibilityInquiry:
    """One 270 inquiry: everything a clearinghouse receives, and nothing more (data minimization).

    ``control_number``: 1-999999999 (ISA13, GS06, ST02 derive from it); ``trace``: our check's reference for TRN02
    (no PHI, at most 50 characters); ``submitter_id``/``receiver_id``: ISA06/ISA08 and GS02/GS03; ``payer_id``: the
    clearinghouse's payer id (2100A NM109, qualifier PI); ``provider_npi``: ten digits (2100B NM109, qualifier XX);
    ``member_id``, ``first_name``, ``last_name``, ``birth_date``: the subscriber (2100C NM1 and DMG); ``service_type``:
    EQ01 (``SERVICE_TYPE_DME`` or ``SERVICE_TYPE_LAB``); ``service_date``: DTP*291; ``usage``: ISA15 ``T`` (test)
    or ``P`` (production); ``created``: ISA09/ISA10 and GS04/GS05 (UTC).
    """

    control_number: int
    trace: str
    submitter_id: str
    receiver_id: str
    payer_id: str
    payer_name: str
    provider_npi: str
    provider_name: str
    member_id: str
    first_name: str
    last_name: str
    birth_date: datetime.date
    service_type: str
    service_date: datetime.date
    usage: str = "T"
    created: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


@dataclass(frozen=True)
class Share:
    """What the subscriber pays for the service type in one network tier, as the 271's 2110C EB segments give it.

    Money in integer cents; ``None`` means the answer did not say. ``deductible_remaining_cents`` and
    ``out_of_pocket_remaining_cents``: EB01 C and G with time period 29 (remaining); ``coinsurance_percent``: EB01 A,
    EB08 as a percentage 0-100 (EB08 0.2 -> Decimal("20")); ``copay_cents``: EB01 B, EB07.
    """

    deductible_remaining_cents: int | None = None
    out_of_pocket_remaining_cents: int | None = None
    coinsurance_percent: Decimal | None = None
    copay_cents: int | None = None


@dataclass(frozen=True)
class EligibilityAnswer:
    """What the payer answered to one inquiry, read from a 271 (``coverage.x12.x12_271_parse``) or a clearinghouse's
    JSON form of it. ``outcome`` is one of ``OUTCOMES``; a rejection gives ``reason_code`` (AAA03), ``reason_loop``
    (where the AAA sat: ``2100A`` payer, ``2100B`` provider, ``2100C`` subscriber, ``2100D`` dependent) and
    ``follow_up`` (AAA04). ``plan_name``: EB05 of the active coverage (or 2100C's plan REF); ``in_network`` and
    ``out_of_network``: the shares for EB12 Y and N (EB12 W, or none, counts for both); ``trace``: the TRN02 echoed.
    ``warnings`` name each element that could not be read (one bad element costs only that element)."""

    outcome: str
    reason_code: str = ""
    reason_loop: str = ""
    follow_up: str = ""
    plan_name: str = ""
    service_type: str = ""
    in_network: Share | None = None
    out_of_network: Share | None = None
    trace: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def temporary(self) -> bool:
        """Whether asking again later may give another answer (the payer could not answer now)."""
        return self.outcome == PAYER_UNAVAILABLE

    def share(self, *, in_network: bool) -> Share | None:
        """Return the share for the supplier's network tier (``in_network``), else the other tier's, else None."""
        first, second = (self.in_network, self.out_of_network) if in_network else (self.out_of_network, None)
        return first or second

    def to_json(self) -> dict[str, Any]:
        """Return the answer as JSON-ready data (Decimals as strings); ``answer_from_json`` reads it back."""
        data = asdict(self)
        for tier in ("in_network", "out_of_network"):
            if data[tier] and data[tier]["coinsurance_percent"] is not None:
                data[tier]["coinsurance_percent"] = str(data[tier]["coinsurance_percent"])
        data["warnings"] = list(self.warnings)
        return data


def answer_from_json(data: dict[str, Any]) -> EligibilityAnswer:
    """Return the ``EligibilityAnswer`` that ``EligibilityAnswer.to_json`` wrote; raises ``KeyError`` or
    ``TypeError`` on data it did not write."""

    def tier(raw: dict[str, Any] | None) -> Share | None:
        if raw is None:
            return None
        percent = raw.get("coinsurance_percent")
        return Share(
            deductible_remaining_cents=raw.get("deductible_remaining_cents"),
            out_of_pocket_remaining_cents=raw.get("out_of_pocket_remaining_cents"),
            coinsurance_percent=None if percent is None else Decimal(percent),
            copay_cents=raw.get("copay_cents"),
        )

    return EligibilityAnswer(
        outcome=data["outcome"],
        reason_code=data.get("reason_code", ""),
        reason_loop=data.get("reason_loop", ""),
        follow_up=data.get("follow_up", ""),
        plan_name=data.get("plan_name", ""),
        service_type=data.get("service_type", ""),
        in_network=tier(data.get("in_network")),
        out_of_network=tier(data.get("out_of_network")),
        trace=data.get("trace", ""),
        warnings=tuple(data.get("warnings", ())),
    )
