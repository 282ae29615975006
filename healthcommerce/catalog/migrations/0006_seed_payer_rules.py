"""Seed example global payer rules (catalog.PayerRule); each health system replaces them with its own contracts.

These are examples, not billing advice:
- no payer on the order: the patient pays the full price (self-pay);
- a payer name containing "Medicaid": covered, as state Medicaid programs commonly cover prescribed DME with no
  patient share (states differ, some charge a nominal copay);
- a payer name containing "Medicare": 20% coinsurance, after Medicare Part B, which pays 80% of the
  Medicare-approved amount once the yearly deductible is met (here applied to our price, and no deductible).
A payer that no rule matches pays nothing and the patient pays the full price (purchaselinks.pricing).
"""

from decimal import Decimal

from django.db import migrations

RULES = [
    # priority, match, pattern, kind, copay cents, coinsurance percent
    (10, "no_payer", "", "self_pay", None, None),
    (20, "contains", "medicaid", "covered", None, None),
    (30, "contains", "medicare", "coinsurance", None, Decimal("20.00")),
]


def seed(apps, schema_editor):
    rule = apps.get_model("catalog", "PayerRule")
    for priority, match, pattern, kind, copay, percent in RULES:
        rule.objects.update_or_create(
            site=None,
            match=match,
            pattern=pattern,
            product_kind="",
            defaults={"priority": priority, "kind": kind, "copay_cents": copay, "coinsurance_percent": percent},
        )


def unseed(apps, schema_editor):
    rule = apps.get_model("catalog", "PayerRule")
    for _, match, pattern, *_ in RULES:
        rule.objects.filter(site=None, match=match, pattern=pattern, product_kind="").delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_product_price_currency_payer_rule")]
    operations = [migrations.RunPython(seed, unseed)]
