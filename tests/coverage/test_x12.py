"""The X279A1 layer (healthcommerce/coverage/x12.py): each 271 fixture in tests/coverage/x12/ (written from the guide,
listed in its README.md) read to the exact answer; 270s built for an inquiry matrix, sound and segment by segment;
the structure check catching broken envelopes and hierarchies; delimiters other than the defaults."""

import datetime
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

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
    EligibilityAnswer,
    EligibilityInquiry,
    Share,
)
from healthcommerce.coverage.x12 import (
    AAA_REASONS,
    reason_text,
    x12_270_build,
    x12_271_parse,
    x12_clean,
    x12_segments,
    x12_structure_check,
)

FIXTURES = Path(__file__).parent / "x12"
CREATED = datetime.datetime(2026, 12, 7, 23, 59, tzinfo=datetime.UTC)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("ascii")  # as sent: CR LF kept


def inquiry(**changes: object) -> EligibilityInquiry:
    """A DME inquiry with fake identifiers (NPI 1234567893 passes the Luhn check with prefix 80840)."""
    base = EligibilityInquiry(
        control_number=17,
        trace="CHK1A2B3C",
        submitter_id="HCSUBMIT01",
        receiver_id="CLEARHOUSE",
        payer_id="60054",
        payer_name="ACME HEALTH",
        provider_npi="1234567893",
        provider_name="NORTH DME SUPPLY",
        member_id="W123456789",
        first_name="JANE",
        last_name="DOE",
        birth_date=datetime.date(1980, 2, 29),
        service_type=SERVICE_TYPE_DME,
        service_date=datetime.date(2026, 12, 7),
        created=CREATED,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# The inquiries every 270 test (and tests/coverage/test_x12_validator.py) builds.
INQUIRY_MATRIX = {
    "dme": inquiry(),
    "lab": inquiry(service_type=SERVICE_TYPE_LAB, control_number=999_999_999, usage="P"),
    "delimiters in names": inquiry(first_name="AN*NE~", last_name="O'BRIEN:SMITH^JR", provider_name="A*B~C:D^E"),
    "accents and long names": inquiry(last_name="Nuñez-Gómez " * 8, first_name="José", member_id="w 1234-5678"),
    "one-digit control number": inquiry(control_number=1, trace="T", submitter_id="X", receiver_id="Y"),
}

IN_AND_OUT = EligibilityAnswer(
    outcome=ACTIVE,
    plan_name="GOLD PPO",
    service_type=SERVICE_TYPE_DME,
    in_network=Share(deductible_remaining_cents=110000, out_of_pocket_remaining_cents=420000),
    out_of_network=Share(deductible_remaining_cents=260000, out_of_pocket_remaining_cents=800000),
    trace="CHK1A2B3C",
)
MET = Share(deductible_remaining_cents=0, out_of_pocket_remaining_cents=215050)

# fixture -> (service type asked, the exact answer)
EXPECTED = {
    "active_deductible_not_met.edi": (SERVICE_TYPE_DME, IN_AND_OUT),
    "deductible_met.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(
            outcome=ACTIVE,
            plan_name="SILVER HMO",
            service_type="30",
            in_network=MET,
            out_of_network=MET,
            trace="CHK1A2B3C",
        ),
    ),
    "coinsurance_20.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(
            outcome=ACTIVE,
            plan_name="BRONZE EPO",
            service_type=SERVICE_TYPE_DME,
            in_network=Share(coinsurance_percent=Decimal("20")),
            out_of_network=Share(coinsurance_percent=Decimal("40")),
            trace="CHK1A2B3C",
        ),
    ),
    "copay_25.edi": (
        SERVICE_TYPE_LAB,
        EligibilityAnswer(
            outcome=ACTIVE,
            plan_name="LAB PLAN PLUS",
            service_type=SERVICE_TYPE_LAB,
            in_network=Share(copay_cents=2500),
            trace="CHK1A2B3C",
        ),
    ),
    "inactive.edi": (SERVICE_TYPE_DME, EligibilityAnswer(outcome=INACTIVE, service_type="30", trace="CHK1A2B3C")),
    "aaa42_payer_unavailable.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(
            outcome=PAYER_UNAVAILABLE, reason_code="42", reason_loop="2100A", follow_up="R", trace="CHK1A2B3C"
        ),
    ),
    "payer_rejected_without_2000b.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(outcome=REJECTED, reason_code="79", reason_loop="2100A", follow_up="C"),
    ),
    "aaa43_provider.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(
            outcome=PROVIDER_REJECTED, reason_code="43", reason_loop="2100B", follow_up="C", trace="CHK1A2B3C"
        ),
    ),
    "aaa72_subscriber.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(outcome=NOT_FOUND, reason_code="72", reason_loop="2100C", follow_up="C", trace="CHK1A2B3C"),
    ),
    "aaa75_subscriber.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(outcome=NOT_FOUND, reason_code="75", reason_loop="2100C", follow_up="N", trace="CHK1A2B3C"),
    ),
    "rejection_999.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(outcome=UNREADABLE, warnings=("not a 271 (ST01 999)",)),
    ),
    "malformed_eb07.edi": (
        SERVICE_TYPE_DME,
        EligibilityAnswer(
            outcome=ACTIVE,
            plan_name="GOLD PPO",
            service_type=SERVICE_TYPE_DME,
            in_network=Share(out_of_pocket_remaining_cents=300000),
            trace="CHK1A2B3C",
            warnings=("EB07 of deductible is not an amount", "EB07 of copay is not an amount"),
        ),
    ),
}


def test_every_fixture_has_an_expected_answer_and_a_readme_line() -> None:
    names = sorted(path.name for path in FIXTURES.glob("*.edi"))
    readme = (FIXTURES / "README.md").read_text()
    assert names == sorted(EXPECTED)
    assert [name for name in names if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_271_fixture_reads_to_its_exact_answer(name: str) -> None:
    asked, expected = EXPECTED[name]
    assert x12_271_parse(fixture(name), service_type=asked) == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_is_structurally_sound(name: str) -> None:
    assert x12_structure_check(fixture(name)) == []


def test_without_the_asked_service_type_the_reader_takes_the_one_the_ebs_name() -> None:
    assert x12_271_parse(fixture("active_deductible_not_met.edi")) == IN_AND_OUT
    assert x12_271_parse(fixture("copay_25.edi")).service_type == SERVICE_TYPE_LAB


def test_general_rows_answer_for_money_but_only_a_status_for_the_service_makes_it_active() -> None:
    answer = x12_271_parse(fixture("copay_25.edi"), service_type=SERVICE_TYPE_DME)
    assert (answer.outcome, answer.service_type, answer.in_network) == (INACTIVE, "30", Share(copay_cents=4000))
    assert answer.warnings == ("no EB01 1/6 for service type 12: read as inactive",)


def test_a_total_deductible_without_the_remaining_amount_is_left_unknown_with_a_warning() -> None:
    text = fixture("deductible_met.edi").replace("EB*C*IND*30***29*0*****W~\r\n", "")
    answer = x12_271_parse(text, service_type=SERVICE_TYPE_DME)
    assert answer.in_network == Share(out_of_pocket_remaining_cents=215050)
    assert answer.warnings == ("EB06 of deductible: only a total is given, not what remains (time period 29)",)


def test_an_unreadable_coinsurance_fraction_costs_only_that_element() -> None:
    text = fixture("coinsurance_20.edi").replace("EB*A*IND*12*****.2****Y", "EB*A*IND*12*****20****Y")
    answer = x12_271_parse(text, service_type=SERVICE_TYPE_DME)
    assert (answer.outcome, answer.in_network, answer.out_of_network) == (
        ACTIVE,
        None,  # the row for 12 was the one to read; the general .1 row does not stand in for it
        Share(coinsurance_percent=Decimal("40")),
    )
    assert answer.warnings == ("EB08 of coinsurance is not a fraction 0-1",)


def test_an_aaa_80_anywhere_makes_the_payer_unavailable() -> None:
    text = fixture("aaa72_subscriber.edi").replace("AAA*Y**72*C", "AAA*Y**72*C~AAA*Y**80*R").replace("SE*12*", "SE*13*")
    assert x12_structure_check(text) == []
    answer = x12_271_parse(text)
    assert (answer.outcome, answer.reason_code, answer.reason_loop, answer.temporary) == (
        PAYER_UNAVAILABLE,
        "80",
        "2100C",
        True,
    )


def test_a_provider_reason_at_2100c_rejects_the_provider() -> None:
    answer = x12_271_parse(fixture("aaa72_subscriber.edi").replace("AAA*Y**72*C", "AAA*N**43*C"))
    assert (answer.outcome, answer.reason_code, answer.reason_loop) == (PROVIDER_REJECTED, "43", "2100C")


def test_a_dependent_not_found_at_2100d_is_not_found() -> None:
    text = fixture("aaa75_subscriber.edi").replace(
        "DMG*D8*19800229~", "DMG*D8*19800229~\nHL*4*3*23*0~\nNM1*03*1*DOE*JIM~\nAAA*N**67*C~"
    )
    answer = x12_271_parse(text)
    assert (answer.outcome, answer.reason_code, answer.reason_loop) == (NOT_FOUND, "75", "2100C")
    answer = x12_271_parse(text.replace("AAA*Y**75*N~\n", ""))
    assert (answer.outcome, answer.reason_code, answer.reason_loop) == (NOT_FOUND, "67", "2100D")


def test_an_nm1_inside_ls_le_does_not_open_a_loop_and_its_aaa_is_not_a_rejection() -> None:
    text = fixture("coinsurance_20.edi").replace("LE*2120", "AAA*N**43*C~LE*2120")
    assert x12_271_parse(text).outcome == ACTIVE


@pytest.mark.parametrize(
    "text, warning",
    [
        ("", "not an X12 interchange: no ISA declaring delimiters"),
        ("garbage", "not an X12 interchange: no ISA declaring delimiters"),
        ("ISA*00*nothing after", "not an X12 interchange: no ISA declaring delimiters"),
        (fixture("inactive.edi").split("ST*")[0], "not a 271 (no ST segment)"),
        (fixture("inactive.edi").replace("ST*271*", "ST*270*"), "not a 271 (ST01 270)"),
    ],
)
def test_anything_but_a_271_is_unreadable_with_a_warning(text: str, warning: str) -> None:
    assert x12_271_parse(text) == EligibilityAnswer(outcome=UNREADABLE, warnings=(warning,))


def test_a_bom_leading_whitespace_and_crlf_are_tolerated() -> None:
    text = "\ufeff \r\n" + fixture("active_deductible_not_met.edi").replace("~\n", "~\r\n")
    assert x12_271_parse(text, service_type=SERVICE_TYPE_DME) == IN_AND_OUT
    assert x12_structure_check(text) == []


def translate(text: str, element: str, repetition: str, component: str, terminator: str) -> str:
    """Return ``text`` (written with * ^ : ~) with other delimiters."""
    table = str.maketrans({"*": element, "^": repetition, ":": component, "~": terminator})
    return text.translate(table)


def test_delimiters_other_than_the_defaults_are_read_from_the_isa() -> None:
    text = translate(fixture("active_deductible_not_met.edi"), "|", "}", ">", "!")
    assert text.startswith("ISA|00|") and "EB|1|IND|30}12||GOLD PPO!" in text
    assert x12_271_parse(text, service_type=SERVICE_TYPE_DME) == IN_AND_OUT
    assert x12_structure_check(text) == []


def test_a_terminator_of_newline_is_read() -> None:
    text = fixture("coinsurance_20.edi").replace("~\n", "\n")
    assert x12_271_parse(text, service_type=SERVICE_TYPE_DME) == EXPECTED["coinsurance_20.edi"][1]


# --- 270 ---


def segments_of(text: str) -> list[str]:
    return [segment for segment in text.split("~") if segment]


def test_a_dme_270_is_exactly_the_guide_s_segments() -> None:
    text = x12_270_build(inquiry())
    assert "\n" not in text and text.endswith("~")
    assert segments_of(text) == [
        "ISA*00*          *00*          *ZZ*HCSUBMIT01     *ZZ*CLEARHOUSE     *261207*2359*^*00501*000000017*0*T*:",
        "GS*HS*HCSUBMIT01*CLEARHOUSE*20261207*2359*17*X*005010X279A1",
        "ST*270*0017*005010X279A1",
        "BHT*0022*13*CHK1A2B3C*20261207*2359",
        "HL*1**20*1",
        "NM1*PR*2*ACME HEALTH*****PI*60054",
        "HL*2*1*21*1",
        "NM1*1P*2*NORTH DME SUPPLY*****XX*1234567893",
        "HL*3*2*22*0",
        "TRN*1*CHK1A2B3C*9HCSUBMIT0",
        "NM1*IL*1*DOE*JANE****MI*W123456789",
        "DMG*D8*19800229",
        "DTP*291*D8*20261207",
        "EQ*12",
        "SE*13*0017",
        "GE*1*17",
        "IEA*1*000000017",
    ]


@pytest.mark.parametrize("name", sorted(INQUIRY_MATRIX))
def test_every_270_of_the_matrix_is_structurally_sound(name: str) -> None:
    text = x12_270_build(INQUIRY_MATRIX[name])
    assert x12_structure_check(text) == []
    assert len(text.split("~")[0]) + 1 == 106


def test_a_lab_270_asks_for_service_type_5_in_production_with_a_nine_digit_control_number() -> None:
    text = x12_270_build(INQUIRY_MATRIX["lab"])
    assert text.startswith("ISA*00*") and "*999999999*0*P*:~GS*HS*" in text
    assert "~ST*270*999999999*005010X279A1~" in text and "~EQ*5~SE*13*999999999~GE*1*999999999~" in text
    assert "~NM1*1P*2*NORTH DME SUPPLY*****XX*1234567893~" in text


def test_delimiter_characters_in_data_become_spaces() -> None:
    segments = segments_of(x12_270_build(INQUIRY_MATRIX["delimiters in names"]))
    assert "NM1*IL*1*O'BRIEN SMITH JR*AN NE****MI*W123456789" in segments
    assert "NM1*1P*2*A B C D E*****XX*1234567893" in segments
    assert len(segments) == 17


def test_accents_fold_and_elements_are_cut_to_their_maximum_length() -> None:
    segments = segments_of(x12_270_build(INQUIRY_MATRIX["accents and long names"]))
    name = next(s for s in segments if s.startswith("NM1*IL"))
    last = name.split("*")[3]
    assert len(last) == 59 and last.startswith("Nunez-Gomez Nunez-Gomez") and not last.endswith(" ")
    assert name.endswith("*Jose****MI*w 1234-5678")


def test_short_ids_pad_the_isa_and_the_originating_company_id() -> None:
    text = x12_270_build(INQUIRY_MATRIX["one-digit control number"])
    assert "*ZZ*X              *ZZ*Y              *" in text
    assert "~TRN*1*T*9X00000000~" in text and "~ST*270*0001*" in text and "~IEA*1*000000001~" in text


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"provider_npi": "123456789"}, "provider_npi"),
        ({"provider_npi": "12345678ab"}, "provider_npi"),
        ({"control_number": 0}, "control_number"),
        ({"control_number": 1_000_000_000}, "control_number"),
        ({"service_type": "12*"}, "service_type"),
        ({"usage": "X"}, "usage"),
        ({"last_name": "*~:^"}, "last_name"),
        ({"member_id": " "}, "member_id"),
        ({"trace": ""}, "trace"),
    ],
)
def test_an_inquiry_no_270_can_carry_raises_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        x12_270_build(inquiry(**changes))


def test_the_clean_rule_keeps_printable_ascii_and_drops_delimiters() -> None:
    assert x12_clean("  a*b~c:d^e\tf\ng  ", 80) == "a b c d e f g"
    assert x12_clean("Zoë", 80) == "Zoe"
    assert x12_clean("abcdef", 3) == "abc"


# --- structure check ---


def test_the_structure_check_catches_a_wrong_se01() -> None:
    text = x12_270_build(inquiry()).replace("SE*13*", "SE*12*")
    assert x12_structure_check(text) == ["SE01 is '12' but there are 13 segments in ST..SE"]


def test_the_structure_check_catches_a_wrong_hl_parent() -> None:
    text = x12_270_build(inquiry()).replace("HL*3*2*22*0", "HL*3*1*22*0")
    assert x12_structure_check(text) == [
        "HL 3: level 22 cannot sit under level 20",
        "HL 2: HL04 says it has children but none follows",
    ]
    text = x12_270_build(inquiry()).replace("HL*3*2*22*0", "HL*3*4*22*0")
    assert "HL 3: parent 4 is not an earlier HL" in x12_structure_check(text)


def test_the_structure_check_catches_an_iea_mismatch() -> None:
    text = x12_270_build(inquiry()).replace("IEA*1*000000017", "IEA*2*000000018")
    assert x12_structure_check(text) == [
        "IEA01 is '2' but there are 1 groups in the interchange",
        "IEA02 does not match ISA13",
    ]


def test_the_structure_check_catches_st_se_and_gs_ge_mismatches_and_a_short_isa() -> None:
    text = x12_270_build(inquiry()).replace("SE*13*0017", "SE*13*0018").replace("GE*1*17", "GE*2*17")
    assert x12_structure_check(text) == [
        "SE02 does not match ST02",
        "GE01 is '2' but there are 1 transaction sets in the group",
    ]
    short = x12_270_build(inquiry()).replace("HCSUBMIT01     ", "HCSUBMIT01", 1)
    assert x12_structure_check(short) == ["the ISA is 101 characters, not 106"]
    assert x12_structure_check("garbage") == ["not an X12 interchange: no ISA declaring the delimiters"]


def test_a_child_code_that_denies_children_that_follow_is_caught() -> None:
    text = x12_270_build(inquiry()).replace("HL*2*1*21*1", "HL*2*1*21*0")
    assert x12_structure_check(text) == ["HL 2: HL04 says it has no children but some follow"]


# --- AAA reasons ---


def test_every_reason_has_a_short_description_and_unknown_codes_say_so() -> None:
    assert all(re.fullmatch(r"[0-9A-Z]{2}", code) and 0 < len(text) <= 80 for code, text in AAA_REASONS.items())
    assert reason_text("72") == "Invalid or missing subscriber/insured ID"
    assert reason_text("42") == "Unable to respond at current time"
    assert reason_text("ZZ") == "Unknown reason ZZ"


# --- property: any printable inquiry ---

try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in requirements-dev.txt
    given = None


if given is not None:
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=90)

    @settings(max_examples=200, deadline=None)
    @given(
        last=printable,
        first=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=50),
        member=printable,
        provider=printable,
        born=st.dates(datetime.date(1900, 1, 1), datetime.date(2026, 12, 31)),
        control=st.integers(1, 999_999_999),
    )
    def test_any_printable_inquiry_gives_a_sound_270_whose_subscriber_round_trips(  # type: ignore[no-untyped-def]
        last, first, member, provider, born, control
    ):
        assume(x12_clean(last, 60) and x12_clean(member, 80) and x12_clean(provider, 60))
        asked = inquiry(
            last_name=last,
            first_name=first,
            member_id=member,
            provider_name=provider,
            birth_date=born,
            control_number=control,
        )
        text = x12_270_build(asked)
        assert x12_structure_check(text) == []
        _, segments = x12_segments(text)
        name = next(s for s in segments if s[0] == "NM1" and s[1] == "IL")
        dmg = next(s for s in segments if s[0] == "DMG")
        assert name[3:5] == [x12_clean(last, 60), x12_clean(first, 35)]
        assert name[8:] == ["MI", x12_clean(member, 80)]
        assert dmg == ["DMG", "D8", born.strftime("%Y%m%d")]
