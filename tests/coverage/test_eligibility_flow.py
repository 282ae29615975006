"""Eligibility after sign-off, through the outbox (issue 21, ADR 0025), against the loopback stand-in clearinghouse
(tests/peers/clearinghouse.py: the app's real adapters, an independent test double on the far side).

A signed order whose payer record has a payer id, at a site with checks on, publishes ``order.eligibility``; the
``orders.eligibility`` subscriber asks the payer and puts the answer on the order's timeline; the patient's quote
follows the answer (confirmed, inactive: self-pay offered) or stays the rules' estimate marked unconfirmed when no
answer came. Failures retry and dead-letter; nothing is lost and the order is never blocked."""

import datetime
import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import HCPCS, Payer, PayerRule, Product
from healthcommerce.coverage import types
from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.services import order_signature_record
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from healthcommerce.purchaselinks.pricing import patient_quote
from tests.peers.clearinghouse import StandIn, eligibility_on

pytestmark = pytest.mark.django_db

ACTIVE_MEMBER = "10A3D58WH22"  # the stand-in: active, $240 deductible left, 20% coinsurance in network
INACTIVE_MEMBER = "10A3D58WH456"
COPAY_MEMBER = "10A3D58WH1600"


@pytest.fixture
def site(clearinghouse: StandIn) -> EHRSite:
    site = EHRSite.objects.create(name="Casco clinic", iss="https://ehr.casco.example/fhir", client_id="hc")
    eligibility_on(site, clearinghouse.x12_url, provider_npi="", timeout_seconds=2)
    return site


@pytest.fixture
def medicare(site: EHRSite) -> Payer:
    payer = Payer.objects.create(site=site, name="Medicare", payer_id="CMS", plan_type="medicare")
    PayerRule.objects.create(
        site=site, priority=1, match="payer", payer=payer, kind="coinsurance", coinsurance_percent=Decimal("20")
    )
    return payer


@pytest.fixture
def make_signed(site: EHRSite, medicare: Payer) -> Callable[..., Order]:
    product = Product.objects.create(
        sku="CPAP-1", name="CPAP", kind=Product.Kind.DEVICE, unit_price_cents=100_000, hcpcs_code="E0601"
    )

    def make(**overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "site": site,
            "patient_fhir_id": "pat013",
            "request_reference": "DeviceRequest/devreq013",
            "request_system": HCPCS,
            "request_code": "E0601",
            "product": product,
            "order_date": datetime.date(2026, 12, 1),
            "patient_name": "John Doe",
            "patient_birth_date": datetime.date(1950, 5, 1),
            "ship_to": {"line": ["1 Main St"], "city": "Portland", "state": "ME", "postal_code": "04101"},
            "contact_email": "john@example.net",
            "payer": medicare,
            "payer_name": "Centers for Medicare and Medicaid Services",
            "coverage_status": "matched",
            "payer_member_id": ACTIVE_MEMBER,
            "practitioner_npi": "1234567893",
            "practitioner_name": "Dr. Strange",
        } | overrides
        order = Order.objects.create(**fields)
        with transaction.atomic():
            locked = Order.objects.select_for_update().get(pk=order.pk)
            order_signature_record(order=locked, signed_by="Practitioner/pra1234", signed_at=timezone.now(), actor="t")
        return Order.objects.get(pk=order.pk)

    return make


def eligibility_row(order: Order) -> OutboxMessage:
    return OutboxMessage.objects.get(subject=f"Order/{order.pk}", topic="order.eligibility")


def deliver_now(message: OutboxMessage) -> OutboxMessage:
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=message.pk)
    return OutboxMessage.objects.get(pk=message.pk)


def kinds(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).exclude(kind="status").values_list("kind", flat=True))


def test_an_active_answer_confirms_the_coverage_and_the_patient_pays_the_deductible_left_then_coinsurance(
    make_signed: Callable[..., Order], clearinghouse: StandIn
) -> None:
    order = make_signed()
    row = deliver_now(eligibility_row(order))

    assert row.status == OutboxMessage.Status.DONE
    check = EligibilityCheck.objects.get(subject=f"Order/{order.pk}")
    assert (check.outcome, check.trigger, check.clearinghouse_payer_id, check.service_type) == (
        "active",
        "signed",
        "CMS",
        "12",
    )
    assert "coverage_confirmed" in kinds(order)
    quote = patient_quote(order=order)
    # $1,000: $240 deductible left, then 20% of $760 = $152: the patient pays $392, the plan $608.
    assert (quote.basis, quote.patient_pays_cents, quote.payer_pays_cents) == ("confirmed", 39_200, 60_800)
    assert "Medicare Part B" in quote.basis_note
    # What the clearinghouse got: one 270, with the member, not the chart's text.
    (sent,) = clearinghouse.requests_seen
    assert "ST*270*" in sent and ACTIVE_MEMBER in sent and "NM1*PR*2*Medicare" in sent and "EQ*12" in sent


def test_an_inactive_answer_offers_self_pay_and_tells_the_clinic(make_signed: Callable[..., Order]) -> None:
    order = make_signed(payer_member_id=INACTIVE_MEMBER)
    deliver_now(eligibility_row(order))

    assert EligibilityCheck.objects.get(subject=f"Order/{order.pk}").outcome == types.INACTIVE
    assert "coverage_inactive" in kinds(order)
    event = OrderEvent.objects.get(order=order, kind="coverage_inactive")
    assert "NOT active" in event.label
    quote = patient_quote(order=order)
    assert (quote.basis, quote.kind, quote.patient_pays_cents, quote.payer_pays_cents) == (
        "inactive",
        "self_pay",
        100_000,
        0,
    )
    assert "not active" in quote.reason


def test_a_copay_answer(make_signed: Callable[..., Order]) -> None:
    order = make_signed(payer_member_id=COPAY_MEMBER)
    deliver_now(eligibility_row(order))
    quote = patient_quote(order=order)
    assert (quote.basis, quote.kind, quote.patient_pays_cents) == ("confirmed", "copay", 2_500)


def test_a_member_the_payer_does_not_know_keeps_the_estimate_and_asks_the_clinic_to_check_the_id(
    make_signed: Callable[..., Order],
) -> None:
    order = make_signed(payer_member_id="NOTFOUND")
    deliver_now(eligibility_row(order))
    check = EligibilityCheck.objects.get(subject=f"Order/{order.pk}")
    assert (check.outcome, check.reason_code) == ("not_found", "72")
    assert "coverage_not_found" in kinds(order)
    quote = patient_quote(order=order)
    assert (quote.basis, quote.patient_pays_cents) == ("unconfirmed", 20_000)  # the site's 20% rule
    assert quote.basis_note == "Estimate: not yet confirmed with your plan."


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"status": 503}, "eligibility_5xx"),
        ({"delay": 3.0}, "eligibility_timeout"),
        ({"status": 429}, "eligibility_429"),
    ],
)
def test_a_clearinghouse_that_fails_retries_and_the_order_goes_on(
    make_signed: Callable[..., Order], clearinghouse: StandIn, fault: dict[str, Any], code: str
) -> None:
    order = make_signed()
    for name, value in fault.items():
        setattr(clearinghouse, name, value)
    row = deliver_now(eligibility_row(order))

    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, code)
    assert row.available_at > timezone.now()
    assert EligibilityCheck.objects.get(subject=f"Order/{order.pk}").outcome == "failed"
    if fault.get("status") == 429:
        assert row.available_at >= timezone.now() + timedelta(seconds=6)  # Retry-After: 7 honoured
    # The order went on to fulfillment regardless; the patient sees the estimate.
    assert OutboxMessage.objects.filter(subject=f"Order/{order.pk}", topic="order.signed").exists()
    assert patient_quote(order=order).basis == "unconfirmed"
    # The clearinghouse answers again: the retry confirms it.
    clearinghouse.status, clearinghouse.delay = None, 0.0
    assert deliver_now(row).status == OutboxMessage.Status.DONE
    assert patient_quote(order=order).basis == "confirmed"


def test_a_payer_that_cannot_answer_now_is_asked_again_and_dead_letters_into_an_unconfirmed_estimate(
    make_signed: Callable[..., Order], settings: Any
) -> None:
    order = make_signed(payer_member_id="UNAVAILABLE")
    row = deliver_now(eligibility_row(order))
    assert (row.status, row.last_error) == (OutboxMessage.Status.PENDING, "eligibility_payer_unavailable")
    while row.status == OutboxMessage.Status.PENDING:
        row = deliver_now(row)
    assert row.status == OutboxMessage.Status.DEAD
    assert "coverage_unconfirmed" in kinds(order)
    assert patient_quote(order=order).basis == "unconfirmed"


@pytest.mark.parametrize(
    ("settings_change", "order_change"),
    [
        ({"eligibility_enabled": False}, {}),
        ({}, {"coverage_status": "self_pay"}),
        ({}, {"payer_member_id": ""}),
    ],
)
def test_no_check_is_asked_when_the_site_has_them_off_self_pay_was_chosen_or_there_is_no_member_id(
    site: EHRSite, make_signed: Callable[..., Order], settings_change: dict[str, Any], order_change: dict[str, Any]
) -> None:
    site_settings_update(site, settings_change)
    order = make_signed(**order_change)
    assert not OutboxMessage.objects.filter(subject=f"Order/{order.pk}", topic="order.eligibility").exists()


def test_a_payer_record_without_a_payer_id_is_not_checked(make_signed: Callable[..., Order], medicare: Payer) -> None:
    medicare.payer_id = ""
    medicare.save()
    order = make_signed()
    assert not OutboxMessage.objects.filter(subject=f"Order/{order.pk}", topic="order.eligibility").exists()


def test_an_npi_the_270_cannot_carry_is_skipped_not_retried(make_signed: Callable[..., Order], site: EHRSite) -> None:
    order = make_signed(practitioner_npi="12345")
    row = deliver_now(eligibility_row(order))
    assert row.status == OutboxMessage.Status.DONE and row.result.startswith("skipped:")
    assert not EligibilityCheck.objects.exists()


def test_every_check_writes_an_audit_row_and_logs_no_member_data(
    make_signed: Callable[..., Order], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    order = make_signed()
    deliver_now(eligibility_row(order))
    audit = AuditEvent.objects.get(action="coverage.eligibility")
    assert (audit.target, audit.outcome) == (f"Order/{order.pk}", "success")
    text = caplog.text + str(audit.detail)
    for value in (ACTIVE_MEMBER, "John", "Doe", "1950"):
        assert value not in text


def test_the_exchange_is_stored_encrypted(make_signed: Callable[..., Order]) -> None:
    from django.db import connection

    order = make_signed()
    deliver_now(eligibility_row(order))
    check = EligibilityCheck.objects.get(subject=f"Order/{order.pk}")
    assert ACTIVE_MEMBER in check.request and "ST*271*" in check.response
    with connection.cursor() as cursor:
        cursor.execute("SELECT request, response, answer FROM coverage_eligibilitycheck")
        raw = " ".join(str(value) for value in cursor.fetchone())
    assert ACTIVE_MEMBER not in raw and "ST*271" not in raw and "Medicare" not in raw


def test_at_checkout_an_old_answer_is_asked_again_and_a_clearinghouse_that_is_down_leaves_the_estimate(
    make_signed: Callable[..., Order], clearinghouse: StandIn
) -> None:
    order = make_signed()
    deliver_now(eligibility_row(order))
    EligibilityCheck.objects.update(created_at=timezone.now() - timedelta(hours=25))  # older than 24 h
    clearinghouse.status = 502
    quote = patient_quote(order=order, refresh=True)
    assert quote.basis == "unconfirmed"  # an answer too old is not shown as confirmed; the estimate stands
    assert EligibilityCheck.objects.filter(trigger="checkout", outcome="failed").count() == 1

    clearinghouse.status = None
    quote = patient_quote(order=order, refresh=True)
    assert quote.basis == "confirmed"
    assert EligibilityCheck.objects.filter(trigger="checkout", outcome="active").count() == 1
    # Fresh now: a second page view asks nothing more.
    patient_quote(order=order, refresh=True)
    assert EligibilityCheck.objects.filter(trigger="checkout").count() == 2


# --- integration health: counted per site, clearinghouse and payer; the alert says what broke where -----------------


def test_a_clearinghouse_that_stops_answering_opens_an_alert_naming_the_site_clearinghouse_and_payer(
    make_signed: Callable[..., Order], clearinghouse: StandIn, settings: Any
) -> None:
    from healthcommerce.core import metrics
    from healthcommerce.monitoring.models import Alert, IntegrationMinute
    from healthcommerce.monitoring.services import alerts_evaluate

    metrics.flush(force=True)  # what earlier tests of this process counted is not this test's
    IntegrationMinute.objects.all().delete()
    settings.ALERT_RULES = ["eligibility"]
    settings.ALERT_EMAILS = ["oncall@example-health.org"]
    clearinghouse.status = 503
    for _ in range(6):
        deliver_now(eligibility_row(make_signed()))
    assert metrics.flush(force=True) >= 1
    label = "Casco clinic: x12_https:127.0.0.1 CMS"
    assert IntegrationMinute.objects.get(site=label, endpoint="eligibility", outcome="5xx").count == 6

    assert alerts_evaluate() == []  # the first breach is pending (hysteresis)
    (opened,) = alerts_evaluate()
    assert (opened.rule, opened.site, opened.status) == ("eligibility", label, Alert.Status.OPEN)
    assert opened.text.startswith(f"{label}: eligibility checks not answered: 6 of 6 over the last")
    assert "(5xx 6;" in opened.text


def test_answers_that_reject_the_member_are_answers_not_errors(
    make_signed: Callable[..., Order], settings: Any
) -> None:
    from healthcommerce.core import metrics
    from healthcommerce.monitoring.models import IntegrationMinute
    from healthcommerce.monitoring.services import alerts_evaluate

    metrics.flush(force=True)
    IntegrationMinute.objects.all().delete()
    settings.ALERT_RULES = ["eligibility"]
    for member in (ACTIVE_MEMBER, INACTIVE_MEMBER, "NOTFOUND", "NOBODY", COPAY_MEMBER, ACTIVE_MEMBER):
        deliver_now(eligibility_row(make_signed(payer_member_id=member)))
    metrics.flush(force=True)
    assert alerts_evaluate() == [] and alerts_evaluate() == []


def test_a_site_on_the_json_clearinghouse_gets_the_same_answer(
    site: EHRSite, make_signed: Callable[..., Order], clearinghouse: StandIn
) -> None:
    """The other adapter (Stedi's JSON eligibility API) through the same outbox path: the same confirmed split."""
    site_settings_update(site, {"clearinghouse": "stedi_json", "clearinghouse_url": clearinghouse.json_url})
    order = make_signed()
    deliver_now(eligibility_row(order))

    check = EligibilityCheck.objects.get(subject=f"Order/{order.pk}")
    assert (check.outcome, check.clearinghouse) == ("active", "stedi_json:127.0.0.1")
    (sent,) = clearinghouse.requests_seen
    assert '"memberId": "10A3D58WH22"' in sent or '"memberId":"10A3D58WH22"' in sent
    quote = patient_quote(order=order)
    assert (quote.basis, quote.patient_pays_cents) == ("confirmed", 39_200)
