"""What the patient pays, and why: the catalog price split by the site's payer rules for the order's payer record
(catalog/pricing.py, through purchaselinks/pricing.py patient_quote for an order); coverage that matched no payer
record says so and that the clinic will confirm."""

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.utils import translation

from healthcommerce.catalog.models import Payer, PayerRule, PlanType, Product
from healthcommerce.catalog.pricing import money_format, share_cents
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.pricing import QuoteUnavailable, patient_quote

K = PayerRule.Kind


@pytest.fixture
def cpap(db: None) -> Product:
    return Product.objects.create(sku="CPAP-T", name="CPAP", kind=Product.Kind.DEVICE, unit_price_cents=69900)


@pytest.fixture
def priced(make_order: Callable[..., Order], cpap: Product) -> Callable[..., Order]:
    def make(**overrides: object) -> Order:
        cpap.refresh_from_db()  # a test may have changed its price
        return make_order(product=cpap, **overrides)

    return make


def payer(site: EHRSite, name: str, **values: object) -> Payer:
    return Payer.objects.create(site=site, name=name, plan_type=values.pop("plan_type", PlanType.COMMERCIAL), **values)


def rule(**fields: object) -> PayerRule:
    made = PayerRule(**fields)
    made.full_clean()
    made.save()
    return made


def test_no_payer_on_file_pays_the_full_price_by_the_seeded_rule(priced) -> None:
    quote = patient_quote(order=priced(payer_name="", quantity=2))
    assert (quote.unit_price_cents, quote.quantity, quote.subtotal_cents) == (69900, 2, 139800)
    assert (quote.patient_pays_cents, quote.payer_pays_cents, quote.kind) == (139800, 0, K.SELF_PAY)
    assert quote.currency == "USD" and quote.needs_payment
    assert quote.reason == "No insurance on file: you pay the full price."


def test_the_seeded_medicaid_example_covers_the_item(priced) -> None:
    quote = patient_quote(order=priced(payer_name="Casco Bay Medicaid"))
    assert (quote.patient_pays_cents, quote.payer_pays_cents, quote.kind) == (0, 69900, K.COVERED)
    assert not quote.needs_payment
    assert quote.reason == "Your plan Casco Bay Medicaid covers this item."


def test_a_copay_is_per_order_and_never_more_than_the_price(priced, cpap) -> None:
    site = priced().site
    harbor = payer(site, "Harbor Health", aliases="HARBOR Health Plan")
    rule(site=site, match="payer", payer=harbor, kind=K.COPAY, copay_cents=2500, priority=1)
    quote = patient_quote(order=priced(payer_name="harbor health plan", quantity=3))
    assert (quote.patient_pays_cents, quote.payer_pays_cents, quote.kind) == (2500, 3 * 69900 - 2500, K.COPAY)
    assert quote.reason == "Copay set by your plan: $25.00."
    Product.objects.filter(pk=cpap.pk).update(unit_price_cents=1000)
    assert patient_quote(order=priced(payer_name="Harbor Health", quantity=1)).patient_pays_cents == 1000


def test_coinsurance_rounds_half_up_to_the_cent(priced, cpap) -> None:
    site = priced().site
    acme = payer(site, "Acme Choice", aliases="Acme Choice PPO")
    rule(site=site, match="payer", payer=acme, kind=K.COINSURANCE, coinsurance_percent=Decimal("12.5"), priority=1)
    Product.objects.filter(pk=cpap.pk).update(unit_price_cents=100)  # 12.5% of $1.00 = 12.5 cents -> 13
    quote = patient_quote(order=priced(payer_name="Acme Choice PPO"))
    assert (quote.patient_pays_cents, quote.payer_pays_cents, quote.kind) == (13, 87, K.COINSURANCE)
    assert quote.reason == "Your share under your plan is 12.5% of the price: $0.13."
    Product.objects.filter(pk=cpap.pk).update(unit_price_cents=103)  # 12.875 cents -> 13
    assert patient_quote(order=priced(payer_name="acme choice")).patient_pays_cents == 13
    Product.objects.filter(pk=cpap.pk).update(unit_price_cents=99)  # 12.375 cents -> 12
    assert patient_quote(order=priced(payer_name="acme choice")).patient_pays_cents == 12


def test_share_cents_rounds_half_up_not_to_even() -> None:
    assert [share_cents(n, Decimal(50)) for n in (1, 3, 5, 7)] == [1, 2, 3, 4]
    assert share_cents(69900, Decimal(20)) == 13980
    assert share_cents(0, Decimal(20)) == 0


def test_the_seeded_medicare_example_is_twenty_percent(priced) -> None:
    quote = patient_quote(order=priced(payer_name="Medicare"))  # the global Medicare record, plan type medicare
    assert (quote.patient_pays_cents, quote.kind) == (13980, K.COINSURANCE)


def test_a_payer_no_rule_matches_pays_nothing_and_the_patient_pays_the_price(priced) -> None:
    payer(priced().site, "Pine Tree Mutual")
    quote = patient_quote(order=priced(payer_name="Pine Tree Mutual"))
    assert (quote.patient_pays_cents, quote.kind, quote.rule_id) == (69900, K.SELF_PAY, None)
    assert quote.reason == "Your plan Pine Tree Mutual does not pay for this item here: you pay the full price."


def test_coverage_that_matched_no_payer_says_so_and_that_the_clinic_will_confirm(priced) -> None:
    order = priced(payer_name="Medicar")  # a typo: no record has this name

    quote = patient_quote(order=order)

    assert (order.payer, order.coverage_status) == (None, "not_recognised")
    assert (quote.patient_pays_cents, quote.kind, quote.rule_id) == (69900, K.SELF_PAY, None)
    assert quote.reason == (
        "We could not match your insurance to a plan we know, so the full price is shown for now. "
        "Your clinic will confirm your coverage and what you pay."
    )
    with translation.override("es"):
        assert "Su clínica confirmará su cobertura" in patient_quote(order=order).reason


def test_self_pay_chosen_by_the_clinician_pays_the_full_price_as_no_insurance(priced) -> None:
    quote = patient_quote(order=priced(payer_name="Medicar", payer=None, coverage_status="self_pay"))
    assert (quote.kind, quote.reason) == (K.SELF_PAY, "No insurance on file: you pay the full price.")


def test_a_site_rule_wins_over_a_global_one_whatever_the_priority(priced) -> None:
    order = priced(payer_name="Casco Bay Medicaid")
    rule(site=order.site, match="plan_type", plan_type="medicaid", kind=K.COPAY, copay_cents=300, priority=999)
    assert patient_quote(order=order).kind == K.COPAY
    other = EHRSite.objects.create(name="Elsewhere", iss="https://ehr.else.example/fhir", client_id="x")
    assert patient_quote(order=priced(site=other, payer_name="Medicaid")).kind == K.COVERED


def test_within_a_site_the_lower_priority_wins_and_inactive_rules_are_skipped(priced) -> None:
    order = priced(payer_name="Casco Bay Medicaid")
    rule(site=order.site, match="any_payer", kind=K.SELF_PAY, priority=50)
    first = rule(site=order.site, match="payer", payer=order.payer, kind=K.COPAY, copay_cents=100, priority=10)
    assert patient_quote(order=order).rule_id == first.pk
    PayerRule.objects.filter(pk=first.pk).update(is_active=False)
    assert patient_quote(order=order).kind == K.SELF_PAY


def test_a_rule_for_one_product_kind_leaves_the_others(priced, make_order) -> None:
    kit = Product.objects.create(sku="KIT-T", name="Kit", kind=Product.Kind.KIT, unit_price_cents=2500)
    rule(match="plan_type", plan_type="medicaid", product_kind="kit", kind=K.SELF_PAY, priority=1)
    assert patient_quote(order=make_order(product=kit)).kind == K.SELF_PAY
    assert patient_quote(order=priced()).kind == K.COVERED


def test_the_rule_message_replaces_the_standard_sentence(priced) -> None:
    rule(match="any_payer", kind=K.COVERED, priority=1, patient_message="Covered by the clinic's program.")
    assert patient_quote(order=priced(payer_name="Casco Bay Medicaid")).reason == "Covered by the clinic's program."


def test_an_order_without_a_product_has_no_quote(make_order) -> None:
    with pytest.raises(QuoteUnavailable):
        patient_quote(order=make_order(product=None))


def test_money_is_formatted_with_the_dollar_sign_or_the_code() -> None:
    assert money_format(2500, "USD") == "$25.00"
    assert money_format(123456789, "usd") == "$1,234,567.89"
    assert money_format(5, "EUR") == "0.05 EUR"
