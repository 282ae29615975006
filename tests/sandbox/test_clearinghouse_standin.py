"""The stand-in clearinghouse's own reader and writer (healthcommerce/sandbox/clearinghouse.py) and its two
endpoints: its scenarios cover the Da Vinci members, it answers a 270 with a 271 echoing the trace, and it answers
Stedi-shaped JSON for the same scenarios."""

import json
from pathlib import Path

import pytest

from healthcommerce.sandbox.clearinghouse import SCENARIOS, answer_json, answer_x12, read_270

BLANK = " " * 10
FIXTURES = Path(__file__).resolve().parents[2] / "healthcommerce" / "sandbox" / "fixtures" / "davinci"


def a_270(member_id: str = "10A3D58WH22", *, element: str = "*", terminator: str = "~", service: str = "12") -> str:
    segments = [
        f"ISA*00*{BLANK}*00*{BLANK}*ZZ*{'HEALTHCOMM':<15}*ZZ*{'CLEARHOUSE':<15}*261207*0930*^*00501*000004711*0*T*:",
        "GS*HS*HEALTHCOMM*CLEARHOUSE*20261207*0930*4711*X*005010X279A1",
        "ST*270*0001*005010X279A1",
        "BHT*0022*13*chk-0001*20261207*0930",
        "HL*1**20*1",
        "NM1*PR*2*MEDICARE*****PI*CMS",
        "HL*2*1*21*1",
        "NM1*1P*2*ACME DME SUPPLY*****XX*1234567893",
        "HL*3*2*22*0",
        "TRN*1*chk-0001*9HEALTHCOM",
        f"NM1*IL*1*DOE*JOHN****MI*{member_id}",
        "DMG*D8*19500314",
        "DTP*291*D8*20261207",
        f"EQ*{service}",
        "SE*13*0001",
        "GE*1*4711",
        "IEA*1*000004711",
    ]
    return "".join(segment.replace("*", element) + terminator for segment in segments)


def segments(text: str) -> list[list[str]]:
    element, terminator = text[3], text[105]
    return [raw.strip().split(element) for raw in text.split(terminator) if raw.strip()]


def test_every_davinci_coverage_subscriber_has_a_scenario():
    members = set()
    for path in FIXTURES.glob("*coverage*.json"):
        members.add(json.loads(path.read_text())["subscriberId"])
    assert members == {"10A3D58WH22", "10A3D58WH456", "10A3D58WH1600", "10C6D58ZH25"}
    assert members <= set(SCENARIOS)


def test_a_270_is_answered_with_a_271_that_swaps_the_ids_and_echoes_the_trace():
    status, text = answer_x12(a_270())
    assert status == 200
    assert len(text.split("~")[0]) == 105  # ISA is fixed width
    parsed = segments(text)
    by_id = {parts[0]: parts for parts in parsed}
    assert by_id["ISA"][6].strip() == "CLEARHOUSE" and by_id["ISA"][8].strip() == "HEALTHCOMM"
    assert by_id["ISA"][13] == "000004711" and by_id["ISA"][15] == "T"
    assert by_id["GS"][1:4] == ["HB", "CLEARHOUSE", "HEALTHCOMM"]
    assert by_id["ST"][1] == "271"
    assert by_id["TRN"][1:3] == ["2", "chk-0001"]
    se_at = next(i for i, parts in enumerate(parsed) if parts[0] == "SE")
    st_at = next(i for i, parts in enumerate(parsed) if parts[0] == "ST")
    assert int(by_id["SE"][1]) == se_at - st_at + 1
    ebs = [parts for parts in parsed if parts[0] == "EB"]
    assert ebs[0][:6] == ["EB", "1", "IND", "12", "", "Medicare Part B"]
    assert ["EB", "C", "IND", "12", "MB", "", "29", "240", "", "", "", "", "Y"] in ebs
    assert ["EB", "A", "IND", "12", "MB", "", "", "", "0.4", "", "", "", "N"] in ebs


def test_the_delimiters_come_from_the_isa():
    status, text = answer_x12(a_270("10A3D58WH456", element="|", terminator="\n"))
    assert status == 200
    assert text.startswith("ISA|") and text[105] == "\n"
    assert ["EB", "6", "IND", "12", "", "Medicare Part B"] in segments(text)


def test_the_rejections_sit_in_their_loops():
    _, not_found = answer_x12(a_270("NOTFOUND"))
    ids = [parts[0] for parts in segments(not_found)]
    assert ["AAA", "N", "", "72", "C"] in segments(not_found)
    assert ids.index("AAA") == ids.index("NM1", ids.index("TRN")) + 1  # right after NM1*IL (2100C)
    _, unavailable = answer_x12(a_270("UNAVAILABLE"))
    parsed = segments(unavailable)
    assert ["AAA", "Y", "", "42", "R"] in parsed
    assert "TRN" not in [parts[0] for parts in parsed]  # the payer loop (2100A) only
    _, unknown = answer_x12(a_270("NOBODY"))
    assert ["AAA", "N", "", "75", "C"] in segments(unknown)


@pytest.mark.parametrize("body", ["", "hello", "ISA" + "*" * 200, a_270().replace("ST*270", "ST*271")])
def test_a_body_that_is_not_a_270_is_a_400(body):
    assert answer_x12(body)[0] == 400
    assert read_270(body) is None


def test_json_answers_the_same_scenarios_in_stedis_shape():
    request = {
        "controlNumber": "000004711",
        "tradingPartnerServiceId": "CMS",
        "provider": {"organizationName": "ACME", "npi": "1234567893"},
        "subscriber": {"memberId": "10A3D58WH1600", "firstName": "Teddy", "lastName": "Bear"},
        "encounter": {"serviceTypeCodes": ["5"]},
    }
    status, answer = answer_json(request)
    assert status == 200
    assert answer["planStatus"][0]["statusCode"] == "1"
    rows = answer["benefitsInformation"]
    assert {"code": "B", "benefitAmount": "25", "inPlanNetworkIndicatorCode": "Y"}.items() <= rows[-1].items()
    request["subscriber"]["memberId"] = "UNAVAILABLE"
    _, rejected = answer_json(request)
    assert rejected["errors"][0]["code"] == "42" and rejected["payer"]["aaaErrors"]
    assert answer_json({"subscriber": {}})[0] == 400


@pytest.mark.django_db
def test_the_endpoints_want_the_sandbox_key(client):
    url = "/sandbox/clearinghouse/x12"
    assert client.post(url, a_270(), content_type="application/EDI-X12").status_code == 401
    answered = client.post(
        url, a_270(), content_type="application/EDI-X12", HTTP_AUTHORIZATION="Bearer sandbox-clearinghouse"
    )
    assert answered.status_code == 200 and answered.content.startswith(b"ISA*")
    assert client.get(url).status_code == 405
    url = "/sandbox/clearinghouse/eligibility/v3"
    body = {"tradingPartnerServiceId": "CMS", "provider": {"npi": "1"}, "subscriber": {"memberId": "NOTFOUND"}}
    assert client.post(url, body, content_type="application/json").status_code == 401
    answered = client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION="sandbox-clearinghouse")
    assert answered.status_code == 200 and answered.json()["errors"][0]["code"] == "72"
    bad = client.post(url, "not json", content_type="application/json", HTTP_AUTHORIZATION="sandbox-clearinghouse")
    assert bad.status_code == 400
