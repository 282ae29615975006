"""Payer rules: what a rule matches, what the admin refuses, and the seeded examples (catalog/models.py PayerRule)."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from healthcommerce.catalog.models import PayerRule
from healthcommerce.catalog.selectors import payer_rule_for
from healthcommerce.ehr.models import EHRSite

K, M = PayerRule.Kind, PayerRule.Match


def test_no_payer_matches_only_a_blank_payer() -> None:
    rule = PayerRule(match=M.NO_PAYER, kind=K.SELF_PAY)
    assert rule.matches("") and rule.matches("   ")
    assert not rule.matches("Casco Bay Medicaid")


def test_contains_ignores_case_and_any_payer_needs_a_name() -> None:
    assert PayerRule(match=M.CONTAINS, pattern="MedicAID").matches("casco bay medicaid")
    assert not PayerRule(match=M.CONTAINS, pattern="medicaid").matches("Medicare")
    assert PayerRule(match=M.ANY_PAYER).matches("Anyone") and not PayerRule(match=M.ANY_PAYER).matches("")


def test_a_regex_is_searched_in_any_case_and_an_invalid_one_matches_nothing() -> None:
    assert PayerRule(match=M.REGEX, pattern=r"^blue\s+cross").matches("Blue  Cross Maine")
    assert not PayerRule(match=M.REGEX, pattern=r"^blue").matches("True Blue")
    assert not PayerRule(match=M.REGEX, pattern="(unclosed").matches("(unclosed")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"match": M.CONTAINS, "kind": K.COVERED}, "pattern"),
        ({"match": M.REGEX, "pattern": "(", "kind": K.COVERED}, "pattern"),
        ({"match": M.ANY_PAYER, "kind": K.COPAY}, "copay_cents"),
        ({"match": M.ANY_PAYER, "kind": K.COINSURANCE}, "coinsurance_percent"),
        ({"match": M.ANY_PAYER, "kind": K.COINSURANCE, "coinsurance_percent": Decimal(101)}, "coinsurance_percent"),
    ],
)
@pytest.mark.django_db
def test_the_admin_refuses_a_rule_that_cannot_work(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PayerRule(**fields).full_clean()
    assert field in caught.value.message_dict


@pytest.mark.django_db
def test_the_database_refuses_a_copay_without_an_amount() -> None:
    with pytest.raises(IntegrityError):
        PayerRule.objects.create(match=M.ANY_PAYER, kind=K.COPAY)


@pytest.mark.django_db
def test_the_seeded_examples_are_global_and_ordered() -> None:
    seeded = list(PayerRule.objects.filter(site=None).order_by("priority").values_list("match", "pattern", "kind"))
    assert seeded == [
        ("no_payer", "", "self_pay"),
        ("contains", "medicaid", "covered"),
        ("contains", "medicare", "coinsurance"),
    ]
    site = EHRSite.objects.create(name="Any", iss="https://ehr.any.example/fhir", client_id="c")
    assert payer_rule_for(site=site, payer_name="Pine Tree Mutual", product_kind="device") is None


@pytest.mark.django_db
def test_the_payer_rule_admin_lists_and_adds_rules(admin_client) -> None:
    assert admin_client.get("/admin/catalog/payerrule/").status_code == 200
    response = admin_client.post(
        "/admin/catalog/payerrule/add/",
        {
            "priority": 5,
            "match": "contains",
            "pattern": "harbor",
            "kind": "copay",
            "copay_cents": 1500,
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    assert PayerRule.objects.filter(pattern="harbor", copay_cents=1500).exists()
