"""Payer records and payer rules: which record a chart's coverage names (key over name, site over global, exact names
only, inactive ignored), what a rule matches, what the admin refuses, and the seeded examples (catalog/models.py
Payer, PayerRule; catalog/selectors.py payer_for_coverage)."""

from decimal import Decimal

import pytest
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from healthcommerce.catalog.checks import retired_payer_rules_check
from healthcommerce.catalog.models import Payer, PayerRule, PlanType
from healthcommerce.catalog.selectors import payer_for_coverage, payer_rule_for, site_payers
from healthcommerce.ehr.models import EHRSite

K, M = PayerRule.Kind, PayerRule.Match
pytestmark = pytest.mark.django_db


@pytest.fixture
def site() -> EHRSite:
    return EHRSite.objects.create(name="Casco", iss="https://ehr.casco.example/fhir", client_id="c")


def payer(name: str, site: EHRSite | None = None, **values: object) -> Payer:
    return Payer.objects.create(site=site, name=name, plan_type=values.pop("plan_type", PlanType.COMMERCIAL), **values)


def test_a_payor_key_beats_an_exact_name(site: EHRSite) -> None:
    by_name = payer("Harbor Health", site, aliases="CMS plan")
    by_key = payer("Medicare", site, identifiers="Organization/org1234\nhttp://payers.example|CMS")

    assert payer_for_coverage(site=site, keys=["Organization/org1234"], name="Harbor Health") == by_key
    assert payer_for_coverage(site=site, keys=["http://payers.example|CMS"], name="") == by_key
    assert payer_for_coverage(site=site, keys=["Organization/other"], name="harbor  HEALTH ") == by_name


def test_a_sites_own_record_wins_over_one_for_every_site(site: EHRSite) -> None:
    everywhere = payer("MaineCare", plan_type=PlanType.MEDICAID, identifiers="SKCO0")
    own = payer("MaineCare", site, plan_type=PlanType.MEDICAID, identifiers="SKCO0")
    other = EHRSite.objects.create(name="Other", iss="https://ehr.other.example/fhir", client_id="c")

    assert payer_for_coverage(site=site, keys=["SKCO0"], name="") == own
    assert payer_for_coverage(site=site, keys=[], name="mainecare") == own
    assert payer_for_coverage(site=other, keys=["SKCO0"], name="") == everywhere
    offered = site_payers(site)
    assert own in offered and everywhere not in offered  # the site's record hides the global one of the same name


def test_a_typo_or_a_longer_name_is_not_recognised(site: EHRSite) -> None:
    payer("Medicare", site, plan_type=PlanType.MEDICARE, aliases="Centers for Medicare and Medicaid Services")

    assert payer_for_coverage(site=site, keys=[], name="Medicar") is None
    assert payer_for_coverage(site=site, keys=[], name="Medicare Part A") is None  # never "contains"
    assert payer_for_coverage(site=site, keys=[], name="centers for medicare and  medicaid services") is not None


def test_an_inactive_payer_never_matches_nor_is_offered(site: EHRSite) -> None:
    payer("Harbor", site, identifiers="HRB", is_active=False)

    assert payer_for_coverage(site=site, keys=["HRB"], name="Harbor") is None
    assert [p.name for p in site_payers(site)] == ["Medicaid", "Medicare"]  # the seeded global ones only


def test_rules_match_no_payer_any_payer_a_payer_or_a_plan_type(site: EHRSite) -> None:
    medicare = payer("Medicare", site, plan_type=PlanType.MEDICARE)
    harbor = payer("Harbor", site)

    assert PayerRule(match=M.NO_PAYER).matches(None) and not PayerRule(match=M.NO_PAYER).matches(medicare)
    assert PayerRule(match=M.ANY_PAYER).matches(harbor) and not PayerRule(match=M.ANY_PAYER).matches(None)
    assert PayerRule(match=M.PAYER, payer=medicare).matches(medicare)
    assert not PayerRule(match=M.PAYER, payer=medicare).matches(harbor)
    assert PayerRule(match=M.PLAN_TYPE, plan_type="medicare").matches(medicare)
    assert not PayerRule(match=M.PLAN_TYPE, plan_type="medicare").matches(harbor)
    assert not PayerRule(match=M.REGEX, pattern="medicare", is_active=False).matches(medicare)


def test_a_rule_for_a_payer_beats_the_seeded_plan_type_rule(site: EHRSite) -> None:
    medicare = payer("Medicare", site, plan_type=PlanType.MEDICARE)
    own = PayerRule.objects.create(site=site, priority=5, match=M.PAYER, payer=medicare, kind=K.COPAY, copay_cents=900)

    assert payer_rule_for(site=site, payer=medicare, product_kind="device") == own
    other = EHRSite.objects.create(name="Other", iss="https://ehr.other.example/fhir", client_id="c")
    seeded = payer_rule_for(site=other, payer=medicare, product_kind="device")
    assert seeded is not None and (seeded.match, seeded.plan_type, seeded.kind) == (
        "plan_type",
        "medicare",
        "coinsurance",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"match": M.PAYER, "kind": K.COVERED}, "payer"),
        ({"match": M.PLAN_TYPE, "kind": K.COVERED}, "plan_type"),
        ({"match": M.REGEX, "pattern": "medicare", "kind": K.COVERED}, "match"),
        ({"match": "contains", "pattern": "medicare", "kind": K.COVERED}, "match"),
        ({"match": M.ANY_PAYER, "kind": K.COPAY}, "copay_cents"),
        ({"match": M.ANY_PAYER, "kind": K.COINSURANCE}, "coinsurance_percent"),
        ({"match": M.ANY_PAYER, "kind": K.COINSURANCE, "coinsurance_percent": Decimal(101)}, "coinsurance_percent"),
    ],
)
def test_the_admin_refuses_a_rule_that_cannot_work(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PayerRule(**fields).full_clean()
    assert field in caught.value.message_dict


def test_a_sites_rule_cannot_name_another_sites_payer(site: EHRSite) -> None:
    other = EHRSite.objects.create(name="Other", iss="https://ehr.other.example/fhir", client_id="c")
    theirs = payer("Theirs", other)
    with pytest.raises(ValidationError) as caught:
        PayerRule(site=site, match=M.PAYER, payer=theirs, kind=K.COVERED).full_clean()
    assert "payer" in caught.value.message_dict


def test_the_database_refuses_a_copay_without_an_amount() -> None:
    with pytest.raises(IntegrityError):
        PayerRule.objects.create(match=M.ANY_PAYER, kind=K.COPAY)


def test_the_seeded_examples_are_global_plan_type_rules_and_records() -> None:
    seeded = list(
        PayerRule.objects.filter(site=None).order_by("priority").values_list("match", "plan_type", "kind", "is_active")
    )
    assert seeded == [
        ("no_payer", "", "self_pay", True),
        ("plan_type", "medicaid", "covered", True),
        ("plan_type", "medicare", "coinsurance", True),
    ]
    records = Payer.objects.filter(site=None).order_by("name").values_list("name", "plan_type", "aliases")
    assert list(records) == [("Medicaid", "medicaid", "medicaid"), ("Medicare", "medicare", "medicare")]


def test_a_retired_regex_rule_is_a_check_warning_until_re_pointed(site: EHRSite) -> None:
    rule = PayerRule.objects.create(site=site, match=M.REGEX, pattern="part c", kind=K.COVERED, is_active=False)

    warnings = retired_payer_rules_check()
    assert [(w.id, w.level) for w in warnings] == [("catalog.W001", checks.WARNING)]
    assert "'part c'" in warnings[0].msg and "Casco" in warnings[0].msg

    rule.match, rule.plan_type, rule.is_active = M.PLAN_TYPE, "medicare_advantage", True
    rule.full_clean()
    rule.save()
    assert retired_payer_rules_check() == []


def test_the_payer_admin_adds_a_payer_and_a_rule_for_it(admin_client, site: EHRSite) -> None:  # type: ignore[no-untyped-def]
    assert admin_client.get("/admin/catalog/payer/").status_code == 200
    response = admin_client.post(
        "/admin/catalog/payer/add/",
        {
            "site": site.pk,
            "name": "Harbor Health",
            "plan_type": "commercial",
            "payer_id": "HRB01",
            "identifiers": "Organization/harbor",
            "aliases": "Harbor Health Plan",
            "supplier_in_network": "on",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    harbor = Payer.objects.get(name="Harbor Health")
    assert admin_client.get("/admin/catalog/payerrule/").status_code == 200
    response = admin_client.post(
        "/admin/catalog/payerrule/add/",
        {"priority": 5, "site": site.pk, "match": "payer", "payer": harbor.pk, "kind": "copay", "copay_cents": 1500,
         "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PayerRule.objects.filter(payer=harbor, copay_cents=1500).exists()
