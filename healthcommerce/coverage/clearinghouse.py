"""Clearinghouse adapters for real-time eligibility (ADR 0026; the X12 it speaks: ADR 0025): send one
``EligibilityInquiry`` and return what came back as an ``Exchange`` (the ``EligibilityAnswer`` with the exact text
sent and received), or raise ``ClearinghouseError`` saying whether a retry can help.

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
    SERVICE_TYPE_PLAN,
    UNREADABLE,
    EligibilityAnswer,
    EligibilityInquiry,
    Share,
)
from healthcommerce.coverage.x12 import (
    PROVIDER_REASONS,
    SUBSCRIBER_REASONS,
    UNAVAILABLE_REASONS,
    x12_270_build,
    x12_271_parse,
)

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
        4xx, unreadable); before any byte is sent, ``core.errors.OutboundRefused`` (permanent) for a URL the
        outbound rules refuse and ``ValueError`` (naming the field, from ``x12_270_build``) for an inquiry no 270
        can carry. Idempotent at the payer (an inquiry changes nothing).
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
        return x12_271_parse(text, service_type=inquiry.service_type)


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
_STATUS_CODES = ("1", "6", "7", "8")
_SHARE_FIELDS = {
    "C": "deductible_remaining_cents",
    "G": "out_of_pocket_remaining_cents",
    "A": "coinsurance_percent",
    "B": "copay_cents",
}


def stedi_answer(data: dict[str, Any], *, service_type: str) -> EligibilityAnswer:
    """Read Stedi's eligibility response ``data`` for the inquiry's ``service_type`` to the rules of the 271 parser
    (``coverage.x12.x12_271_parse``; its reason code sets are reused).

    Errors (``errors``, else the ``aaaErrors`` nested under payer 2100A, provider 2100B, subscriber 2100C,
    dependents 2100D): AAA03 42 or 80 anywhere -> ``PAYER_UNAVAILABLE``; else the first decides: 2100B, or
    2100C/2100D with a provider reason -> ``PROVIDER_REJECTED``; 2100C/2100D with a subscriber reason ->
    ``NOT_FOUND``; any other -> ``REJECTED``. Without errors, ``benefitsInformation`` rows naming the service type
    win over those that apply generally (``serviceTypeCodes`` empty or 30): ``code`` 1 -> ``ACTIVE``, else
    ``INACTIVE`` (6, 7, 8 or none; with no status row at all an active ``planStatus`` entry counts). Shares:
    ``inPlanNetworkIndicatorCode`` Y and N give the tiers (W, U or none counts for both), individual before family;
    deductible (C) and out-of-pocket (G) only with ``timeQualifierCode`` 29, ``benefitAmount`` dollars -> cents;
    coinsurance (A) ``benefitPercent`` fraction -> 0-100; copay (B). A response with no errors, benefits or plan
    status is ``UNREADABLE``. Never raises: one bad element costs only that element, with a warning naming it.
    """
    warnings: list[str] = []
    errors = _stedi_errors(data, warnings)
    if errors:
        return _rejected(errors, trace=_trace(data), warnings=warnings)
    rows = _rows(data, warnings)
    statuses = _list(data, "planStatus", warnings)
    if not rows and not statuses:
        warnings.append("response: no benefitsInformation, planStatus or errors")
        return EligibilityAnswer(outcome=UNREADABLE, warnings=tuple(warnings))
    status_rows = _for_service([item for item in rows if item[1].get("code") in _STATUS_CODES], service_type)
    outcome, plan = _coverage(status_rows, statuses, service_type, warnings)
    money = _for_service([item for item in rows if item[1].get("code") in _SHARE_FIELDS], service_type)
    return EligibilityAnswer(
        outcome=outcome,
        plan_name=plan,
        service_type=_answered_service(rows, service_type),
        in_network=_share(money, "Y", warnings),
        out_of_network=_share(money, "N", warnings),
        trace=_trace(data),
        warnings=tuple(dict.fromkeys(warnings)),  # a row read for both tiers warns once
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


def _rows(data: dict[str, Any], warnings: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(index, row)`` for each ``benefitsInformation`` item that is an object (others warned)."""
    rows = []
    for index, row in enumerate(_list(data, "benefitsInformation", warnings)):
        if isinstance(row, dict):
            rows.append((index, row))
        else:
            warnings.append(f"benefitsInformation[{index}]: not an object")
    return rows


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


def _rejected(errors: list[tuple[str, str, str]], *, trace: str, warnings: list[str]) -> EligibilityAnswer:
    """Return the answer for a rejection, decided as ``coverage.x12`` decides an AAA (see ``stedi_answer``)."""
    chosen = next((error for error in errors if error[0] in UNAVAILABLE_REASONS), None)
    if chosen is not None:
        outcome = PAYER_UNAVAILABLE
    else:
        chosen = errors[0]
        code, loop, _ = chosen
        person = loop in ("2100C", "2100D")
        if loop == "2100B" or (person and code in PROVIDER_REASONS):
            outcome = PROVIDER_REJECTED
        elif person and code in SUBSCRIBER_REASONS:
            outcome = NOT_FOUND
        else:
            outcome = REJECTED
    code, loop, follow_up = chosen
    return EligibilityAnswer(
        outcome=outcome,
        reason_code=code,
        reason_loop=loop,
        follow_up=follow_up,
        trace=trace,
        warnings=tuple(warnings),
    )


def _types(row: dict[str, Any]) -> list[str]:
    """Return a row's ``serviceTypeCodes`` (``[]`` when it names none)."""
    value = row.get("serviceTypeCodes")
    return [str(code) for code in value] if isinstance(value, list) else []


def _general(row: dict[str, Any]) -> bool:
    """Whether a row applies to every service type (names none, or 30)."""
    types = _types(row)
    return not types or SERVICE_TYPE_PLAN in types


def _for_service(rows: list[tuple[int, dict[str, Any]]], service_type: str) -> list[tuple[int, dict[str, Any]]]:
    """Return the rows naming ``service_type`` when there are any, else the general ones (``_general``)."""
    specific = [item for item in rows if service_type and service_type in _types(item[1])]
    return specific or [item for item in rows if _general(item[1])]


def _answered_service(rows: list[tuple[int, dict[str, Any]]], service_type: str) -> str:
    """Return ``service_type`` when a row names it, else 30 when a row applies generally, else ``""``."""
    if any(service_type and service_type in _types(row) for _, row in rows):
        return service_type
    return SERVICE_TYPE_PLAN if any(_general(row) for _, row in rows) else ""


def _level_rank(row: dict[str, Any]) -> int:
    """``coverageLevelCode``: individual first, then unstated, then other levels, family last."""
    return {"IND": 0, "": 1, "FAM": 3}.get(str(row.get("coverageLevelCode") or ""), 2)


def _coverage(
    rows: list[tuple[int, dict[str, Any]]], statuses: list[Any], service_type: str, warnings: list[str]
) -> tuple[str, str]:
    """Return ``(outcome, plan name)`` from the status rows for the service: ``ACTIVE`` with a code 1 (its
    ``planCoverage``, individual first), else ``INACTIVE``; with no status row, an active ``planStatus`` entry."""
    active = sorted((row for _, row in rows if row.get("code") == "1"), key=_level_rank)
    if active:
        plan = next((str(row["planCoverage"]) for row in active if row.get("planCoverage")), "")
        return ACTIVE, plan or _active_status_plan(statuses, service_type, warnings) or ""
    if rows:
        return INACTIVE, ""
    active_plan = _active_status_plan(statuses, service_type, warnings)
    if active_plan is None:
        warnings.append(f"no status (code 1/6) for service type {service_type or SERVICE_TYPE_PLAN}: read as inactive")
        return INACTIVE, ""
    return ACTIVE, active_plan


def _active_status_plan(statuses: list[Any], service_type: str, warnings: list[str]) -> str | None:
    """Return the ``planDetails`` of the first active (``statusCode`` 1) ``planStatus`` entry for ``service_type``
    (or 30, or none named); None when no entry is active."""
    for index, status in enumerate(statuses):
        if not isinstance(status, dict):
            warnings.append(f"planStatus[{index}]: not an object")
            continue
        if (service_type in _types(status) or _general(status)) and str(status.get("statusCode") or "") == "1":
            return str(status.get("planDetails") or "")
    return None


def _share(rows: list[tuple[int, dict[str, Any]]], tier: str, warnings: list[str]) -> Share | None:
    """Return the share in network tier ``tier`` (Y or N): rows naming the tier first, then those for both (W, U or
    no indicator), each individual before family; the first readable value of each kind wins. None when the
    answer gives no value for the tier."""
    exact = [item for item in rows if item[1].get("inPlanNetworkIndicatorCode") == tier]
    both = [item for item in rows if item[1].get("inPlanNetworkIndicatorCode") not in ("Y", "N")]
    ordered = sorted(exact, key=lambda item: _level_rank(item[1])) + sorted(both, key=lambda item: _level_rank(item[1]))
    values: dict[str, Any] = {}
    for index, row in ordered:
        code = str(row.get("code") or "")
        if code in ("C", "G") and str(row.get("timeQualifierCode") or "") != "29":
            continue  # a total, not what remains
        if _SHARE_FIELDS[code] not in values:
            value = _row_value(index, row, warnings)
            if value is not None:
                values[_SHARE_FIELDS[code]] = value
    return Share(**values) if values else None


def _row_value(index: int, row: dict[str, Any], warnings: list[str]) -> int | Decimal | None:
    """Return the value one money row gives: cents of ``benefitAmount`` (C, G, B) or the percent of
    ``benefitPercent`` (A); None when absent or unreadable (warned, naming the element)."""
    where = f"benefitsInformation[{index}]"
    if row.get("code") == "A":
        return _percent(row.get("benefitPercent"), f"{where}.benefitPercent", warnings)
    return _cents(row.get("benefitAmount"), f"{where}.benefitAmount", warnings)


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
    if number < 0:
        warnings.append(f"{where}: a negative amount")
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
