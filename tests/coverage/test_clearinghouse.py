"""The clearinghouse adapters against the loopback stand-in clearinghouse (tests/peers/clearinghouse.py), which
answers with the sandbox's own X12 and JSON writers: what each answer maps to, each way a call can fail, and what
is sent (only the inquiry's data; never the API key where it does not belong)."""

import datetime
import json
import socket
from decimal import Decimal

import pytest

from healthcommerce.coverage.clearinghouse import (
    ClearinghouseConfig,
    ClearinghouseError,
    Exchange,
    StediJsonClearinghouse,
    X12HttpsClearinghouse,
    clearinghouse_for,
    stedi_answer,
)
from healthcommerce.coverage.types import (
    ACTIVE,
    INACTIVE,
    NOT_FOUND,
    PAYER_UNAVAILABLE,
    PROVIDER_REJECTED,
    REJECTED,
    SERVICE_TYPE_DME,
    SERVICE_TYPE_LAB,
    UNREADABLE,
    EligibilityInquiry,
)
from tests.peers.clearinghouse import StandIn

KEY = "sandbox-clearinghouse"
SECRET = "sk_live_DO-NOT-LEAK-4242"
KINDS = ["x12_https", "stedi_json"]


def inquiry(member_id: str = "10A3D58WH22", service_type: str = SERVICE_TYPE_DME) -> EligibilityInquiry:
    return EligibilityInquiry(
        control_number=4711,
        trace="chk-0001",
        submitter_id="HEALTHCOMM",
        receiver_id="CLEARHOUSE",
        payer_id="CMS",
        payer_name="MEDICARE",
        provider_npi="1234567893",
        provider_name="ACME DME SUPPLY",
        member_id=member_id,
        first_name="JOHN",
        last_name="DOE",
        birth_date=datetime.date(1950, 3, 14),
        service_type=service_type,
        service_date=datetime.date(2026, 12, 7),
        created=datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.UTC),
    )


def adapter(stand_in: StandIn, kind: str, *, api_key: str = KEY, timeout: float = 3.0, url: str = ""):
    target = url or (stand_in.x12_url if kind == "x12_https" else stand_in.json_url)
    return clearinghouse_for(ClearinghouseConfig(kind=kind, url=target, api_key=api_key, timeout_seconds=timeout))


def failure(stand_in: StandIn, kind: str, **kwargs) -> ClearinghouseError:
    with pytest.raises(ClearinghouseError) as caught:
        adapter(stand_in, kind, **kwargs).eligibility(inquiry())
    return caught.value


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Answers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_active_member_gets_the_in_network_share_and_the_out_of_network_coinsurance(kind, clearinghouse):
    exchange = adapter(clearinghouse, kind).eligibility(inquiry("10A3D58WH22"))
    answer = exchange.answer
    assert answer.outcome == ACTIVE
    assert answer.plan_name == "Medicare Part B"
    assert answer.service_type == SERVICE_TYPE_DME
    assert answer.in_network is not None
    assert answer.in_network.deductible_remaining_cents == 24000
    assert answer.in_network.coinsurance_percent == Decimal("20")
    assert answer.in_network.out_of_pocket_remaining_cents == 150000
    assert answer.out_of_network is not None
    assert answer.out_of_network.coinsurance_percent == Decimal("40")
    assert answer.warnings == ()
    if kind == "x12_https":
        assert answer.trace == "chk-0001"  # TRN02 echoed in the 271


@pytest.mark.parametrize("kind", KINDS)
def test_lab_kits_are_asked_about_as_service_type_5_and_answered_for_it(kind, clearinghouse):
    answer = adapter(clearinghouse, kind).eligibility(inquiry("10A3D58WH22", SERVICE_TYPE_LAB)).answer
    assert answer.outcome == ACTIVE
    assert answer.service_type == SERVICE_TYPE_LAB
    assert answer.in_network.coinsurance_percent == Decimal("20")


@pytest.mark.parametrize("kind", KINDS)
def test_a_met_deductible_reads_as_zero_remaining_and_a_copay_in_cents(kind, clearinghouse):
    answer = adapter(clearinghouse, kind).eligibility(inquiry("10A3D58WH1600")).answer
    assert answer.outcome == ACTIVE
    assert answer.in_network.deductible_remaining_cents == 0
    assert answer.in_network.copay_cents == 2500


@pytest.mark.parametrize("kind", KINDS)
def test_an_inactive_member_answers_inactive(kind, clearinghouse):
    answer = adapter(clearinghouse, kind).eligibility(inquiry("10A3D58WH456")).answer
    assert answer.outcome == INACTIVE
    assert not answer.temporary


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("member", "reason"), [("NOTFOUND", "72"), ("SOMEONE-ELSE", "75")])
def test_a_subscriber_rejection_at_2100c_is_not_found_with_its_reason(kind, member, reason, clearinghouse):
    answer = adapter(clearinghouse, kind).eligibility(inquiry(member)).answer
    assert (answer.outcome, answer.reason_code, answer.reason_loop, answer.follow_up) == (
        NOT_FOUND,
        reason,
        "2100C",
        "C",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_aaa_42_at_the_payer_is_payer_unavailable_and_temporary(kind, clearinghouse):
    answer = adapter(clearinghouse, kind).eligibility(inquiry("UNAVAILABLE")).answer
    assert (answer.outcome, answer.reason_code, answer.reason_loop, answer.follow_up) == (
        PAYER_UNAVAILABLE,
        "42",
        "2100A",
        "R",
    )
    assert answer.temporary


@pytest.mark.parametrize("kind", KINDS)
def test_the_exchange_keeps_exactly_what_was_sent_and_received(kind, clearinghouse):
    exchange = adapter(clearinghouse, kind).eligibility(inquiry())
    assert isinstance(exchange, Exchange)
    assert exchange.http_status == 200
    assert exchange.request == clearinghouse.requests_seen[0]
    assert exchange.response
    assert 0 < exchange.seconds < 3


# --- Failures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_clearinghouse_is_a_temporary_timeout(kind, clearinghouse):
    clearinghouse.delay = 1.0
    error = failure(clearinghouse, kind, timeout=0.3)
    assert (error.outcome, error.temporary, error.http_status) == ("timeout", True, 0)
    assert error.code == "clearinghouse_timeout"
    assert 0.25 < error.seconds < 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_connection_is_temporary(kind, clearinghouse):
    url = f"http://127.0.0.1:{closed_port()}/{'x12' if kind == 'x12_https' else 'eligibility/v3'}"
    error = failure(clearinghouse, kind, url=url)
    assert (error.outcome, error.temporary) == ("connection", True)
    assert "127.0.0.1" in error.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_connection_is_temporary(kind, clearinghouse):
    clearinghouse.drop = True
    error = failure(clearinghouse, kind)
    assert (error.outcome, error.temporary) == ("connection", True)


@pytest.mark.parametrize("kind", KINDS)
def test_429_is_temporary_with_its_retry_after(kind, clearinghouse):
    clearinghouse.status = 429
    error = failure(clearinghouse, kind)
    assert (error.outcome, error.temporary, error.retry_after, error.http_status) == ("429", True, 7.0, 429)
    assert "HTTP 429" in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (502, None), (503, 7.0)])
def test_server_errors_are_temporary_5xx(kind, status, retry_after, clearinghouse):
    clearinghouse.status = status
    error = failure(clearinghouse, kind)
    assert (error.outcome, error.temporary, error.retry_after, error.http_status) == ("5xx", True, retry_after, status)
    assert f"HTTP {status}" in error.message and "127.0.0.1" in error.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_api_key_is_a_permanent_4xx(kind, clearinghouse):
    error = failure(clearinghouse, kind, api_key=SECRET)
    assert (error.outcome, error.temporary, error.http_status) == ("4xx", False, 401)


def test_a_200_that_is_not_a_271_is_an_unreadable_answer_not_an_error(clearinghouse):
    clearinghouse.garbage = True
    exchange = adapter(clearinghouse, "x12_https").eligibility(inquiry())
    assert exchange.answer.outcome == UNREADABLE
    assert exchange.http_status == 200
    assert "<html>" in exchange.response


def test_a_200_that_is_not_json_is_an_unreadable_error(clearinghouse):
    clearinghouse.garbage = True
    error = failure(clearinghouse, "stedi_json")
    assert (error.outcome, error.temporary, error.http_status) == ("unreadable", False, 200)
    assert error.request == clearinghouse.requests_seen[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["status", "delay", "key"])
def test_the_api_key_is_never_in_an_error_or_its_request(kind, fault, clearinghouse):
    if fault == "status":
        clearinghouse.status = 503
    elif fault == "delay":
        clearinghouse.delay = 1.0
    error = failure(clearinghouse, kind, api_key=SECRET, timeout=0.3)
    assert SECRET not in str(error)
    assert SECRET not in error.request
    assert SECRET not in repr(error)
    assert "DOE" not in str(error) and "10A3D58WH22" not in str(error)  # no PHI in the message


def test_the_api_key_is_not_in_the_config_repr_and_the_name_is_kind_and_host():
    config = ClearinghouseConfig(kind="x12_https", url="https://ch.example.com:8443/rt/270?x=1", api_key=SECRET)
    assert SECRET not in repr(config)
    assert config.name == "x12_https:ch.example.com"
    assert config.timeout_seconds == 10.0


def test_clearinghouse_for_picks_the_adapter_by_kind_and_refuses_others():
    base = {"url": "https://ch.example.com/", "api_key": "k"}
    assert isinstance(clearinghouse_for(ClearinghouseConfig(kind="x12_https", **base)), X12HttpsClearinghouse)
    assert isinstance(clearinghouse_for(ClearinghouseConfig(kind="stedi_json", **base)), StediJsonClearinghouse)
    with pytest.raises(ValueError, match="kind"):
        clearinghouse_for(ClearinghouseConfig(kind="soap", **base))


# --- What is sent --------------------------------------------------------------------------------------------


def test_the_json_request_holds_only_the_inquiry_and_stedis_headers(clearinghouse):
    adapter(clearinghouse, "stedi_json").eligibility(inquiry())
    sent = json.loads(clearinghouse.requests_seen[0])
    assert sent == {
        "controlNumber": "000004711",
        "tradingPartnerServiceId": "CMS",
        "provider": {"organizationName": "ACME DME SUPPLY", "npi": "1234567893"},
        "subscriber": {"memberId": "10A3D58WH22", "firstName": "JOHN", "lastName": "DOE", "dateOfBirth": "19500314"},
        "encounter": {"serviceTypeCodes": ["12"], "dateOfService": "20261207"},
    }
    headers = clearinghouse.headers_seen[0]
    assert headers["Authorization"] == KEY
    assert headers["Content-Type"] == "application/json"


def test_the_x12_request_is_a_270_with_only_its_segments_and_a_bearer_key(clearinghouse):
    adapter(clearinghouse, "x12_https").eligibility(inquiry())
    sent = clearinghouse.requests_seen[0].lstrip()
    element, terminator = sent[3], sent[105]
    ids = {segment.strip().split(element)[0] for segment in sent.split(terminator) if segment.strip()}
    assert ids == {"ISA", "GS", "ST", "BHT", "HL", "NM1", "TRN", "DMG", "DTP", "EQ", "SE", "GE", "IEA"}
    headers = clearinghouse.headers_seen[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/EDI-X12"


# --- Reading Stedi's answer ----------------------------------------------------------------------------------


def test_one_bad_amount_costs_only_that_element_with_a_warning_naming_it():
    data = {
        "benefitsInformation": [
            {"code": "1", "serviceTypeCodes": ["12"], "planCoverage": "PLAN"},
            {"code": "C", "serviceTypeCodes": ["12"], "timeQualifierCode": "29", "benefitAmount": "lots"},
            {"code": "A", "serviceTypeCodes": ["12"], "benefitPercent": "20", "inPlanNetworkIndicatorCode": "Y"},
            {"code": "B", "serviceTypeCodes": ["12"], "benefitAmount": 12.345, "inPlanNetworkIndicatorCode": "Y"},
            "junk",
        ]
    }
    answer = stedi_answer(data, service_type="12")
    assert answer.outcome == ACTIVE and answer.plan_name == "PLAN"
    assert answer.in_network.copay_cents == 1235
    assert answer.in_network.deductible_remaining_cents is None
    assert answer.in_network.coinsurance_percent is None
    assert sorted(answer.warnings) == [
        "benefitsInformation[1].benefitAmount: not a number",
        "benefitsInformation[2].benefitPercent: not a fraction between 0 and 1",
        "benefitsInformation[4]: not an object",
    ]


def test_rows_for_other_service_types_are_ignored_and_the_specific_type_wins_over_30():
    data = {
        "benefitsInformation": [
            {"code": "1", "serviceTypeCodes": ["30"]},
            {"code": "A", "serviceTypeCodes": ["30"], "benefitPercent": "0.5"},
            {"code": "A", "serviceTypeCodes": ["12"], "benefitPercent": "0.25"},
            {"code": "A", "serviceTypeCodes": ["35"], "benefitPercent": "0.9"},
            {
                "code": "C",
                "serviceTypeCodes": ["12"],
                "coverageLevelCode": "FAM",
                "timeQualifierCode": "29",
                "benefitAmount": "900",
            },
            {
                "code": "C",
                "serviceTypeCodes": ["12"],
                "coverageLevelCode": "IND",
                "timeQualifierCode": "29",
                "benefitAmount": "100",
            },
            {"code": "C", "serviceTypeCodes": ["12"], "timeQualifierCode": "23", "benefitAmount": "5000"},
        ]
    }
    answer = stedi_answer(data, service_type="12")
    assert answer.in_network == answer.out_of_network
    assert answer.in_network.coinsurance_percent == Decimal("25")
    assert answer.in_network.deductible_remaining_cents == 10000


def test_plan_status_decides_when_no_benefit_row_says_active_or_inactive():
    data = {"planStatus": [{"statusCode": "1", "planDetails": "GOLD", "serviceTypeCodes": ["30"]}]}
    answer = stedi_answer(data, service_type="5")
    assert (answer.outcome, answer.plan_name) == (ACTIVE, "GOLD")
    assert stedi_answer({"benefitsInformation": []}, service_type="5").outcome == UNREADABLE
    assert stedi_answer({}, service_type="5").outcome == UNREADABLE


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (
            {"errors": [{"code": "43", "location": "Loop 2100B", "followupAction": "C"}]},
            (PROVIDER_REJECTED, "43", "2100B", "C"),
        ),
        ({"provider": {"aaaErrors": [{"code": "79"}]}}, (PROVIDER_REJECTED, "79", "2100B", "")),
        ({"dependents": [{"aaaErrors": [{"code": "67"}]}]}, (NOT_FOUND, "67", "2100D", "")),
        ({"errors": [{"code": "33", "followupAction": "Please Correct and Resubmit"}]}, (REJECTED, "33", "", "C")),
        (
            {
                "errors": [
                    {"code": "75", "location": "2100C"},
                    {"code": "80", "location": "2100A", "followupAction": "Resubmission Allowed"},
                ]
            },
            (PAYER_UNAVAILABLE, "80", "2100A", "R"),
        ),
    ],
)
def test_errors_map_by_reason_and_loop_like_aaa_segments(errors, expected):
    answer = stedi_answer(errors, service_type="12")
    assert (answer.outcome, answer.reason_code, answer.reason_loop, answer.follow_up) == expected


def test_the_trace_number_stedi_echoes_is_kept():
    data = {"subscriberTraceNumbers": [{"referenceIdentification": "chk-0001"}], "planStatus": []}
    data["benefitsInformation"] = [{"code": "6"}]
    answer = stedi_answer(data, service_type="12")
    assert (answer.outcome, answer.trace) == (INACTIVE, "chk-0001")
