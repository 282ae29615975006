"""Migrating to payer records (catalog 0011, orders 0014): the seeded text rules become plan-type rules, a site's
"contains" rule a payer record with a rule for it, a regex rule is deactivated with its pattern kept, and each
existing order gets the payer its payer name named (old semantics) or ``not_recognised``."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("catalog", "0009_admin_labels"), ("orders", "0013_held_order_names")]
AFTER = [("catalog", "0011_payer_records"), ("orders", "0014_order_payer")]


def _apps(executor: MigrationExecutor):  # type: ignore[no-untyped-def]
    return executor.loader.project_state(list(executor.loader.applied_migrations)).apps


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_text_rules_become_payer_records_and_orders_get_their_payer() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = _apps(MigrationExecutor(connection))
    site = old.get_model("ehr", "EHRSite").objects.create(name="S", iss="https://ehr.example.org/fhir", client_id="c")
    rule = old.get_model("catalog", "PayerRule")
    harbor = rule.objects.create(
        site=site, priority=5, match="contains", pattern="harbor", kind="copay", copay_cents=900
    )
    regex = rule.objects.create(
        site=site, priority=6, match="regex", pattern="part c|advantage", kind="coinsurance",
        coinsurance_percent=Decimal("10.00"),
    )  # fmt: skip
    order = old.get_model("orders", "Order")
    names = {"HC-MIG0000001": "Harbor Health Plan", "HC-MIG0000002": "Medicare Part B", "HC-MIG0000003": "Medicar",
             "HC-MIG0000004": ""}  # fmt: skip
    for reference, payer_name in names.items():
        order.objects.create(site=site, reference=reference, patient_fhir_id="p1", payer_name=payer_name,
                             order_date=datetime.date(2026, 12, 1))  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = _apps(MigrationExecutor(connection))
    Payer, Rule, Order = (
        new.get_model(*m) for m in [("catalog", "Payer"), ("catalog", "PayerRule"), ("orders", "Order")]
    )

    seeded = Rule.objects.filter(site=None).order_by("priority").values_list("match", "plan_type", "pattern")
    assert list(seeded) == [
        ("no_payer", "", ""),
        ("plan_type", "medicaid", "medicaid"),
        ("plan_type", "medicare", "medicare"),
    ]
    record = Payer.objects.get(site_id=site.pk)
    assert (record.name, record.aliases, record.plan_type) == ("Harbor", "harbor", "other")
    converted = Rule.objects.get(pk=harbor.pk)
    assert (converted.match, converted.payer_id, converted.pattern, converted.is_active) == (
        "payer",
        record.pk,
        "harbor",
        True,
    )
    retired = Rule.objects.get(pk=regex.pk)
    assert (retired.match, retired.pattern, retired.is_active) == ("regex", "part c|advantage", False)
    medicare = Payer.objects.get(site=None, name="Medicare")
    migrated = {o.reference: (o.payer_id, o.coverage_status) for o in Order.objects.filter(reference__in=names)}
    assert migrated == {
        "HC-MIG0000001": (record.pk, "matched"),  # contains the site's pattern "harbor"
        "HC-MIG0000002": (medicare.pk, "matched"),  # contains the seeded "medicare"
        "HC-MIG0000003": (None, "not_recognised"),  # a typo no longer pays as self-pay silently
        "HC-MIG0000004": (None, ""),
    }

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema for the next tests
