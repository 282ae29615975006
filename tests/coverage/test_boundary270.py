"""The 270 boundary check (tests/coverage/boundary270.py) catches what it must: a clinical value, a segment or an NM1
entity outside the allowlist; and lets the member's own identifying values through."""

import datetime

from healthcommerce.catalog.models import Payer
from healthcommerce.coverage.types import EligibilityInquiry
from healthcommerce.coverage.x12 import x12_270_build
from healthcommerce.orders.models import Order
from tests.coverage.boundary270 import problems
from tests.fulfillment.boundary import Sent

INQUIRY = EligibilityInquiry(
    control_number=7,
    trace="abc123",
    submitter_id="HEALTHCOMMERCE",
    receiver_id="STANDIN",
    payer_id="CMS",
    payer_name="Medicare",
    provider_npi="1234567893",
    provider_name="CASCO SUPPLY",
    member_id="CLIN-cov-0000abcd",
    first_name="John",
    last_name="Doe",
    birth_date=datetime.date(1950, 5, 1),
    service_type="12",
    service_date=datetime.date(2026, 12, 6),
)


def _order() -> Order:
    payer = Payer(name="Medicare", payer_id="CMS")
    return Order(
        patient_name="John Doe",
        patient_birth_date=datetime.date(1950, 5, 1),
        payer_member_id="CLIN-cov-0000abcd",
        practitioner_npi="1234567893",
        payer=payer,
    )


def _sent(body: str) -> list[Sent]:
    return [Sent("POST", "http://127.0.0.1:9/x12", {"Content-Type": "application/EDI-X12"}, body.encode())]


def test_a_270_as_built_passes_with_the_member_id_a_sentinel() -> None:
    body = x12_270_build(INQUIRY)
    assert problems(_order(), _sent(body), ["CLIN-req-00000001", "E11.9", "CLIN-cov-0000abcd"]) == []


def test_a_diagnosis_a_note_an_extra_segment_or_entity_is_caught() -> None:
    body = x12_270_build(INQUIRY)
    terminator = body[105]
    planted = body.replace(f"EQ*12{terminator}", f"EQ*12{terminator}MSG*CLIN-req-00000001 E11.9{terminator}")
    planted = planted.replace("NM1*1P*2*", "NM1*DN*1*")
    found = problems(_order(), _sent(planted), ["CLIN-req-00000001", "E11.9"])
    assert found == [
        "clearinghouse POST x12: segments outside the allowlist: ['MSG']",
        "clearinghouse POST x12: NM1 entities outside the allowlist: ['DN']",
        "clearinghouse POST x12 carries 'CLIN-req-00000001'",
        "clearinghouse POST x12 carries 'E11.9'",
    ]
    assert problems(_order(), _sent('{"note": "x"}'), []) == ["clearinghouse POST x12: not an X12 interchange"]
