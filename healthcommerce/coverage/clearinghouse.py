"""Clearinghouse adapters for real-time eligibility (ADR 0025): send one ``EligibilityInquiry`` and return what
came back as an ``Exchange`` (the ``EligibilityAnswer`` with the exact text sent and received), or raise
``ClearinghouseError`` saying whether a retry can help.

Two adapters (docs/style.md 4), picked by ``ClearinghouseConfig.kind`` in ``clearinghouse_for``:

- ``X12HttpsClearinghouse`` (``x12_https``): the 270 as the body of an HTTPS POST, the 271 as the answer
  (``coverage.x12``).
- ``StediJsonClearinghouse`` (``stedi_json``): Stedi's real-time eligibility JSON API.

One call, no retries: the outbox retries a temporary error (docs/reliability.md "Retries and dead letters"), at
least ``retry_after`` seconds later. Nothing is recorded to metrics here; the caller records ``Exchange.seconds``
and the outcome under ``ClearinghouseConfig.name``. The API key goes only in the ``Authorization`` header: never
in a log line, an exception, ``repr`` or ``Exchange``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import ResponseTooLarge, cap_response_body, check_url
from healthcommerce.coverage.types import (
    ACTIVE,
    INACTIVE,
    NOT_FOUND,
    PAYER_UNAVAILABLE,
    PROVIDER_REJECTED,
    REJECTED,
    UNREADABLE,
    EligibilityAnswer,
    EligibilityInquiry,
    Share,
)
from healthcommerce.coverage.x12 import x12_270_build, x12_271_parse

KINDS = ("x12_https", "stedi_json")
ERROR_OUTCOMES = ("timeout", "connection", "429", "5xx", "4xx", "unreadable")
_TEMPORARY = {"timeout", "connection", "429", "5xx"}


@dataclass(frozen=True)
class ClearinghouseConfig:
    """How to reach one clearinghouse.

    ``kind``: one of ``KINDS``; ``url``: the full endpoint (https; http only to this machine outside production,
    ``core.http.check_url``); ``api_key``: the secret (left out of ``repr``); ``timeout_seconds``: the connect
    timeout and the read timeout (each, per socket wait; float seconds); ``name``: the metrics label, by default
    ``<kind>:<host>`` (never a path or key; pass ``name`` only to override it).
    """

    kind: str
    url: str
    api_key: str = field(repr=False)
    timeout_seconds: float = 10.0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.kind}:{self.host}")

    @property
    def host(self) -> str:
        """The endpoint's host name (lower case, no port, no path)."""
        try:
            return (urlsplit(self.url).hostname or "").lower()
        except ValueError:
            return ""


@dataclass(frozen=True)
class Exchange:
    """One answered eligibility call: the ``answer`` read from the reply, ``request`` exactly as sent (X12 text or
    JSON text), ``response`` the reply's body as text, its ``http_status`` and the ``seconds`` it took (from just
    before sending to the end of reading the body). ``request`` and ``response`` hold PHI: store them as such."""

    answer: EligibilityAnswer
    request: str
    response: str
    http_status: int
    seconds: float


class ClearinghouseError(HealthcommerceError):
    """The clearinghouse did not answer with something readable.

    ``outcome``: one of ``ERROR_OUTCOMES`` (``timeout``, ``connection``, ``429``, ``5xx``, ``4xx``,
    ``unreadable``); ``code`` is ``clearinghouse_<outcome>``. ``temporary``: True for timeout, connection, 429 and
    5xx (ask again later), False for 4xx and unreadable. ``retry_after`` (seconds): from a 429 or 503
    ``Retry-After`` header (RFC 9110 section 10.2.3), else None. ``request``: the body that was sent (PHI: never
    log it). ``http_status``: 0 when no answer came. ``seconds``: time until the failure. The message names the
    clearinghouse's host and the HTTP status only: never PHI, never the API key.
    """

    code = "clearinghouse_error"
    status = 502
    message = "The clearinghouse did not answer."

    def __init__(
        self,
        message: str,
        *,
        outcome: str,
        request: str = "",
        http_status: int = 0,
        retry_after: float | None = None,
        seconds: float = 0.0,
    ) -> None:
        super().__init__(message, code=f"clearinghouse_{outcome}")
        self.outcome = outcome
        self.temporary = outcome in _TEMPORARY
        self.retry_after = retry_after
        self.request = request
        self.http_status = http_status
        self.seconds = seconds


class Clearinghouse:
    """Base class of the clearinghouse adapters: ``eligibility`` sends one inquiry; subclasses implement ``_send``
    (what to post) and ``_answer`` (how to read a 2xx body)."""

    content_type = "application/octet-stream"

    def __init__(self, config: ClearinghouseConfig) -> None:
        self.config = config

    def eligibility(self, inquiry: EligibilityInquiry) -> Exchange:
        """Ask whether ``inquiry``'s subscriber is covered for its service type; one HTTP POST, no retry.

        Returns an ``Exchange`` for a 2xx answer (an answer the adapter cannot read comes back with outcome
        ``UNREADABLE`` where the adapter says so). Raises ``ClearinghouseError`` (timeout, connection, 429, 5xx,
        4xx, unreadable) and ``core.errors.OutboundRefused`` (permanent) for a URL the outbound rules refuse,
        before any byte is sent. Idempotent at the payer (an inquiry changes nothing).
        """
        body = self._body(inquiry)
        check_url(self.config.url)
        started = time.perf_counter()
        response = self._post(body, started=started)
        seconds = time.perf_counter() - started
        text = response.content.decode(response.encoding or "utf-8", "replace")
        answer = self._answer(text, inquiry=inquiry, request=body, seconds=seconds)
        return Exchange(answer=answer, request=body, response=text, http_status=response.status_code, seconds=seconds)

    def _body(self, inquiry: EligibilityInquiry) -> str:
        """Return the request body for ``inquiry``."""
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        """Return the request headers, the ``Authorization`` one included."""
        raise NotImplementedError

    def _answer(self, text: str, *, inquiry: EligibilityInquiry, request: str, seconds: float) -> EligibilityAnswer:
        """Return the answer in a 2xx body ``text``; may raise ``ClearinghouseError`` (unreadable)."""
        raise NotImplementedError

    def _post(self, body: str, *, started: float) -> requests.Response:
        """POST ``body`` to the endpoint with the (connect, read) timeout and a capped body
        (``core.http.cap_response_body``), no redirects; return a 2xx response or raise ``ClearinghouseError``."""
        headers = {"Content-Type": self.content_type, "User-Agent": "healthcommerce/1.0", **self._headers()}
        timeout = (self.config.timeout_seconds, self.config.timeout_seconds)
        try:
            with requests.Session() as session:
                session.hooks["response"].append(cap_response_body)
                response = session.post(
                    self.config.url, data=body.encode("utf-8"), headers=headers, timeout=timeout, allow_redirects=False
                )
        except requests.Timeout:
            raise self._error("did not answer in time", "timeout", body, started=started) from None
        except ResponseTooLarge:
            raise self._error("answered with a body too large to read", "unreadable", body, started=started) from None
        except requests.RequestException:
            raise self._error("could not be reached", "connection", body, started=started) from None
        if 200 <= response.status_code < 300:
            return response
        raise self._status_error(response, body, started=started)

    def _status_error(self, response: requests.Response, body: str, *, started: float) -> ClearinghouseError:
        """Return the error for a non-2xx ``response``: 429, 5xx (both temporary; ``Retry-After`` read on 429 and
        503) or 4xx (any other status, redirects included: permanent)."""
        status = response.status_code
        outcome = "429" if status == 429 else "5xx" if status >= 500 else "4xx"
        retry_after = None
        if status in (429, 503):
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        return self._error(
            f"answered HTTP {status}", outcome, body, started=started, http_status=status, retry_after=retry_after
        )

    def _error(
        self,
        what: str,
        outcome: str,
        body: str,
        *,
        started: float,
        http_status: int = 0,
        retry_after: float | None = None,
    ) -> ClearinghouseError:
        """Return a ``ClearinghouseError`` whose message names only the host and ``what`` happened."""
        return ClearinghouseError(
            f"Clearinghouse {self.config.host or 'host'} {what}.",
            outcome=outcome,
            request=body,
            http_status=http_status,
            retry_after=retry_after,
            seconds=time.perf_counter() - started,
        )


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delay seconds, or an HTTP-date) into seconds from now, >= 0; None when absent or
    unreadable (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class X12HttpsClearinghouse(Clearinghouse):
    """X12 over HTTPS: POST the 270 (``coverage.x12.x12_270_build``) as the body with
    ``Content-Type: application/EDI-X12`` and ``Authorization: Bearer <api_key>``; the 2xx body is the 271, read by
    ``coverage.x12.x12_271_parse`` (which never raises: a body that is not a 271 gives an answer with outcome
    ``UNREADABLE``, returned, not raised). Source: ASC X12N 005010X279A1; CAQH CORE Connectivity (HTTP POST of a
    real-time X12 payload)."""

    content_type = "application/EDI-X12"

    def _body(self, inquiry: EligibilityInquiry) -> str:
        return x12_270_build(inquiry)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _answer(self, text: str, *, inquiry: EligibilityInquiry, request: str, seconds: float) -> EligibilityAnswer:
        return x12_271_parse(text)


class StediJsonClearinghouse(Clearinghouse):
    """Stedi's real-time eligibility JSON API: POST ``config.url`` (the full endpoint, for example
    ``https://healthcare.us.stedi.com/2024-04-01/change/medicalnetwork/eligibility/v3``) with
    ``Authorization: <api_key>`` (no scheme) and the body ``stedi_request``; the 2xx body is read by
    ``stedi_answer`` to the same rules as the 271 parser.

    Verified (search tool, corpora docs and pages) against: the API reference page of that endpoint
    (stedi.com docs "post-healthcare-eligibility", mirrored at stediinc.mintlify.app): the request fields
    ``controlNumber``, ``tradingPartnerServiceId``, ``provider.organizationName``/``npi``,
    ``subscriber.memberId``/``firstName``/``lastName``/``dateOfBirth`` (``YYYYMMDD``) and
    ``encounter.serviceTypeCodes`` (a list), the ``Authorization: <api-key>`` header; Stedi's generated Python SDK
    types (``EligibilityResponse``): ``benefitsInformation[]`` with ``code`` (EB01), ``coverageLevelCode``,
    ``serviceTypeCodes`` (list), ``timeQualifierCode``, ``benefitAmount`` and ``benefitPercent`` (strings),
    ``inPlanNetworkIndicatorCode`` (Y/N/U/W), ``planCoverage``; ``planStatus[]`` with ``statusCode``, ``status``,
    ``planDetails``, ``serviceTypeCodes``; ``errors[]`` with ``code``, ``description``, ``followupAction`` (the
    AAA04 *text*, "Please Correct and Resubmit", though one troubleshooting example shows the letter ``C``: both
    are read) and ``location`` ("Loop 2100B" in Stedi's AAA blog post, "2100A" in a polling example: the loop is
    found in either); the same errors nested as ``payer``/``provider``/``subscriber``.``aaaErrors`` and
    ``dependents[].aaaErrors`` (stedi.com blog "AAA eligibility errors in plain English"); HTTP 429 for Stedi's
    concurrency limit and 400 for an unknown payer id (stedi.com docs "eligibility-troubleshooting").
    Not confirmed there: the name ``encounter.dateOfService`` (docs name "service dates" on ``encounter``; the
    brief's name is used). Stedi now calls this endpoint "legacy" and recommends a redesigned one with another
    shape (stedi.com blog "new-benefits-table", Nov 2025); this adapter speaks the v3 one.
    """

    content_type = "application/json"

    def _body(self, inquiry: EligibilityInquiry) -> str:
        return json.dumps(stedi_request(inquiry), separators=(",", ":"))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.config.api_key, "Accept": "application/json"}

    def _answer(self, text: str, *, inquiry: EligibilityInquiry, request: str, seconds: float) -> EligibilityAnswer:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ClearinghouseError(
                f"Clearinghouse {self.config.host or 'host'} answered HTTP 200 with a body that is not JSON.",
                outcome="unreadable",
                request=request,
                http_status=200,
                seconds=seconds,
            )
        return stedi_answer(data, service_type=inquiry.service_type)


def clearinghouse_for(config: ClearinghouseConfig) -> Clearinghouse:
    """Return the adapter for ``config.kind`` (``KINDS``); raises ``ValueError`` for another kind."""
    adapters: dict[str, type[Clearinghouse]] = {
        "x12_https": X12HttpsClearinghouse,
        "stedi_json": StediJsonClearinghouse,
    }
    if config.kind not in adapters:
        raise ValueError(f"Unknown clearinghouse kind {config.kind!r}; expected one of {', '.join(KINDS)}.")
    return adapters[config.kind](config)


# --- Stedi JSON: request and answer ------------------------------------------------------------------------------


def stedi_request(inquiry: EligibilityInquiry) -> dict[str, Any]:
    """Return Stedi's eligibility request for ``inquiry``: only the inquiry's own data (data minimization, ADR
    0025): ``controlNumber`` (9 digits), ``tradingPartnerServiceId`` (payer id), ``provider`` (organization name,
    NPI), ``subscriber`` (member id, names, ``dateOfBirth`` YYYYMMDD), ``encounter`` (service type, date)."""
    return {
        "controlNumber": f"{inquiry.control_number:09d}",
        "tradingPartnerServiceId": inquiry.payer_id,
        "provider": {"organizationName": inquiry.provider_name, "npi": inquiry.provider_npi},
        "subscriber": {
            "memberId": inquiry.member_id,
            "firstName": inquiry.first_name,
            "lastName": inquiry.last_name,
            "dateOfBirth": inquiry.birth_date.strftime("%Y%m%d"),
        },
        "encounter": {
            "serviceTypeCodes": [inquiry.service_type],
            "dateOfService": inquiry.service_date.strftime("%Y%m%d"),
        },
    }


_LOOP = re.compile(r"2100[A-D]")
_NESTED_LOOPS = (("payer", "2100A"), ("provider", "2100B"), ("subscriber", "2100C"))
# AAA04 follow-up action codes by the text Stedi gives for them (005010X279A1 AAA04 code list).
_FOLLOW_UP = {
    "please correct and resubmit": "C",
    "resubmission not allowed": "N",
    "please resubmit original transaction": "P",
    "resubmission allowed": "R",
    "do not resubmit; inquiry initiated to a third party": "S",
    "please wait 30 days and resubmit": "W",
    "please wait 10 days and resubmit": "X",
    "do not resubmit; we will hold your request and respond again shortly": "Y",
}
_UNAVAILABLE_REASONS = {"42", "80"}


def stedi_answer(data: dict[str, Any], *, service_type: str) -> EligibilityAnswer:
    """Read Stedi's eligibility response ``data`` to the rules of the 271 parser (``coverage.x12``), for the
    inquiry's ``service_type``.

    Errors first: AAA 42 or 80 anywhere -> ``PAYER_UNAVAILABLE``; else the first error's loop decides: 2100C or
    2100D -> ``NOT_FOUND``, 2100B -> ``PROVIDER_REJECTED``, any other -> ``REJECTED`` (``reason_code``,
    ``reason_loop``, ``follow_up`` from it). Otherwise ``benefitsInformation`` for the service type (rows naming
    it, or 30, or none): ``code`` 1 -> ``ACTIVE``, else 6/7/8 (or no 1 at all) -> ``INACTIVE``, with ``planStatus``
    as a fallback; the shares per network tier (``Share``). A response with none of ``errors``,
    ``benefitsInformation`` and ``planStatus`` is ``UNREADABLE``. Never raises: one bad element costs only that
    element, with a warning naming it.
    """
    warnings: list[str] = []
    errors = _stedi_errors(data, warnings)
    if errors:
        return _rejected(errors, service_type=service_type, warnings=warnings)
    rows = _list(data, "benefitsInformation", warnings)
    statuses = _list(data, "planStatus", warnings)
    if not rows and not statuses:
        warnings.append("response: no benefitsInformation, planStatus or errors")
        return EligibilityAnswer(outcome=UNREADABLE, service_type=service_type, warnings=tuple(warnings))
    relevant = _relevant_rows(rows, service_type, warnings)
    outcome, plan = _coverage(relevant, statuses, service_type, warnings)
    in_network, out_of_network = _shares(relevant, warnings)
    return EligibilityAnswer(
        outcome=outcome,
        plan_name=plan,
        service_type=service_type,
        in_network=in_network,
        out_of_network=out_of_network,
        trace=_trace(data),
        warnings=tuple(warnings),
    )


def _list(data: dict[str, Any], key: str, warnings: list[str]) -> list[Any]:
    """Return ``data[key]`` when it is a list, ``[]`` when absent; a warning names it when it is something else."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        warnings.append(f"{key}: not a list")
        return []
    return value


def _stedi_errors(data: dict[str, Any], warnings: list[str]) -> list[tuple[str, str, str]]:
    """Return the errors as ``(code, loop, follow-up letter)``: the top-level ``errors`` (the loop read from
    ``location``), else the ``aaaErrors`` nested under payer, provider, subscriber and dependents (the loop from
    where they sit)."""
    found = []
    for index, error in enumerate(_list(data, "errors", warnings)):
        if not isinstance(error, dict) or not str(error.get("code") or "").strip():
            warnings.append(f"errors[{index}]: no code")
            continue
        match = _LOOP.search(str(error.get("location") or ""))
        found.append((str(error["code"]).strip(), match.group(0) if match else "", _follow_up(error)))
    return found or _nested_errors(data, warnings)


def _nested_errors(data: dict[str, Any], warnings: list[str]) -> list[tuple[str, str, str]]:
    """Return the ``aaaErrors`` under ``payer`` (2100A), ``provider`` (2100B), ``subscriber`` (2100C) and each of
    ``dependents`` (2100D) as ``(code, loop, follow-up letter)``."""
    parties = [(data.get(party), loop) for party, loop in _NESTED_LOOPS]
    parties += [(dependent, "2100D") for dependent in _list(data, "dependents", warnings)]
    found = []
    for party, loop in parties:
        errors = party.get("aaaErrors") if isinstance(party, dict) else None
        for error in errors if isinstance(errors, list) else []:
            if isinstance(error, dict) and error.get("code"):
                found.append((str(error["code"]).strip(), loop, _follow_up(error)))
    return found


def _follow_up(error: dict[str, Any]) -> str:
    """Return the AAA04 letter of ``error``'s ``followupAction`` (given as the letter or as its text)."""
    value = str(error.get("followupAction") or "").strip()
    if len(value) == 1:
        return value.upper()
    return _FOLLOW_UP.get(value.lower(), "")


def _rejected(errors: list[tuple[str, str, str]], *, service_type: str, warnings: list[str]) -> EligibilityAnswer:
    """Return the answer for a rejection: payer unavailable (42, 80) wins, else the first error's loop decides."""
    chosen = next((error for error in errors if error[0] in _UNAVAILABLE_REASONS), None)
    if chosen is not None:
        outcome = PAYER_UNAVAILABLE
    else:
        chosen = errors[0]
        loop = chosen[1]
        outcome = NOT_FOUND if loop in ("2100C", "2100D") else PROVIDER_REJECTED if loop == "2100B" else REJECTED
    code, loop, follow_up = chosen
    return EligibilityAnswer(
        outcome=outcome,
        reason_code=code,
        reason_loop=loop,
        follow_up=follow_up,
        service_type=service_type,
        warnings=tuple(warnings),
    )


def _types(row: dict[str, Any]) -> list[str]:
    """Return a benefit row's service type codes (``[]`` when it names none)."""
    value = row.get("serviceTypeCodes")
    return [str(code) for code in value] if isinstance(value, list) else []


def _relevant_rows(rows: list[Any], service_type: str, warnings: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(index, row)`` for the benefit rows about ``service_type``: those naming it first, then those
    naming 30 (health benefit plan coverage) or no type; individual coverage before family within each."""
    picked = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            warnings.append(f"benefitsInformation[{index}]: not an object")
            continue
        types = _types(row)
        if types and service_type not in types and "30" not in types:
            continue
        specific = 0 if service_type in types else 1
        family = 1 if str(row.get("coverageLevelCode") or "IND") not in ("IND", "EMP") else 0
        picked.append(((specific, family, index), row))
    return [(key[2], row) for key, row in sorted(picked, key=lambda item: item[0])]


def _coverage(
    rows: list[tuple[int, dict[str, Any]]], statuses: list[Any], service_type: str, warnings: list[str]
) -> tuple[str, str]:
    """Return ``(outcome, plan name)``: ``ACTIVE`` when a row has code 1, else ``INACTIVE`` (code 6, 7, 8, or no
    1); with no status row at all, ``planStatus`` decides. The plan is the active row's ``planCoverage``."""
    codes = [str(row.get("code") or "") for _, row in rows]
    plan = next((str(row.get("planCoverage") or "") for _, row in rows if row.get("code") == "1"), "")
    active_plan = _active_status_plan(statuses, service_type, warnings)
    if "1" in codes:
        return ACTIVE, plan or active_plan or ""
    if any(code in ("6", "7", "8") for code in codes) or active_plan is None:
        return INACTIVE, plan
    return ACTIVE, active_plan


def _active_status_plan(statuses: list[Any], service_type: str, warnings: list[str]) -> str | None:
    """Return the ``planDetails`` of the first active (``statusCode`` 1) ``planStatus`` entry for ``service_type``
    (or 30, or none named); None when no entry is active."""
    for index, status in enumerate(statuses):
        if not isinstance(status, dict):
            warnings.append(f"planStatus[{index}]: not an object")
            continue
        types = _types(status)
        if types and service_type not in types and "30" not in types:
            continue
        if str(status.get("statusCode") or "") == "1":
            return str(status.get("planDetails") or "")
    return None


_SHARE_FIELDS = {"C": "deductible_remaining_cents", "G": "out_of_pocket_remaining_cents"}


def _shares(rows: list[tuple[int, dict[str, Any]]], warnings: list[str]) -> tuple[Share | None, Share | None]:
    """Return the in-network and out-of-network shares: for each tier (``inPlanNetworkIndicatorCode`` Y, N; W, U or
    none counts for both) the first value of each kind in ``rows``' order: deductible and out-of-pocket remaining
    (code C, G with ``timeQualifierCode`` 29), coinsurance (A, ``benefitPercent`` fraction -> 0-100), copay (B)."""
    tiers: dict[str, dict[str, Any]] = {"Y": {}, "N": {}}
    for index, row in rows:
        values = _row_values(index, row, warnings)
        network = str(row.get("inPlanNetworkIndicatorCode") or "")
        for tier in ("Y", "N") if network not in ("Y", "N") else (network,):
            for key, value in values.items():
                tiers[tier].setdefault(key, value)
    return (Share(**tiers["Y"]) if tiers["Y"] else None, Share(**tiers["N"]) if tiers["N"] else None)


def _row_values(index: int, row: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Return the ``Share`` fields one benefit row gives (``{}`` for a row of another kind or a bad value)."""
    code = str(row.get("code") or "")
    where = f"benefitsInformation[{index}]"
    if code in _SHARE_FIELDS and str(row.get("timeQualifierCode") or "") == "29":
        cents = _cents(row.get("benefitAmount"), f"{where}.benefitAmount", warnings)
        return {} if cents is None else {_SHARE_FIELDS[code]: cents}
    if code == "B":
        cents = _cents(row.get("benefitAmount"), f"{where}.benefitAmount", warnings)
        return {} if cents is None else {"copay_cents": cents}
    if code == "A":
        percent = _percent(row.get("benefitPercent"), f"{where}.benefitPercent", warnings)
        return {} if percent is None else {"coinsurance_percent": percent}
    return {}


def _decimal(value: Any, where: str, warnings: list[str]) -> Decimal | None:
    """Return ``value`` (a string or number) as a finite Decimal; None with a warning naming ``where`` when it is
    not one, None without one when it is absent."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        warnings.append(f"{where}: not a number")
        return None
    return number


def _cents(value: Any, where: str, warnings: list[str]) -> int | None:
    """Return dollars ``value`` in integer cents (half up); None when absent or unreadable (warned)."""
    number = _decimal(value, where, warnings)
    if number is None:
        return None
    return int((number * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _percent(value: Any, where: str, warnings: list[str]) -> Decimal | None:
    """Return a fraction ``value`` (0-1, as EB08) as a percentage 0-100 (``"0.2"`` -> ``Decimal("20")``); None
    when absent, unreadable or outside 0-1 (warned)."""
    number = _decimal(value, where, warnings)
    if number is None:
        return None
    if not Decimal(0) <= number <= Decimal(1):
        warnings.append(f"{where}: not a fraction between 0 and 1")
        return None
    percent = number * 100
    return percent.quantize(Decimal(1)) if percent == percent.to_integral_value() else percent.normalize()


def _trace(data: dict[str, Any]) -> str:
    """Return the echoed trace number (``subscriberTraceNumbers[].referenceIdentification``), "" when none."""
    numbers = data.get("subscriberTraceNumbers")
    if isinstance(numbers, list):
        for number in numbers:
            if isinstance(number, dict) and number.get("referenceIdentification"):
                return str(number["referenceIdentification"])
    return ""
