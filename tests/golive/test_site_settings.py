"""Each stage owns its site settings (issue 19): site record files exported before the change still import, with
every value landing in the stage's own row, and a setting added the way docs/extending.md "Add a site setting"
says appears by itself in the site record and its schema, the admin page, ``ehr_site add``'s flags and the
readiness check."""

import datetime
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor

from healthcommerce.cdshooks.models import CdsHooksSite
from healthcommerce.ehr.models import EHRSite, SiteSettings
from healthcommerce.ehr.sitefeatures import (
    FAIL,
    PASS,
    Check,
    site_feature_fields,
    site_feature_register,
    site_feature_unregister,
    site_settings_values,
)
from healthcommerce.fulfillment.models import FulfillmentSite
from healthcommerce.golive import apps as golive_apps
from healthcommerce.golive.readiness import site_readiness
from healthcommerce.golive.siterecord import site_record_export, site_record_import, site_record_schema
from healthcommerce.orders.models import OrderSite
from healthcommerce.purchaselinks.models import PatientLinkSite
from tests.golive.test_site_record import set_secrets
from tests.site_settings import settings_form

BEFORE = Path(__file__).with_name("site_records_before_19")
OLD_FILES = sorted(BEFORE.glob("*.json"))
# The stage settings the files of before issue 19 carry, and the row each now lives in.
MOVED = {
    "cds_hooks_enabled": CdsHooksSite,
    "cds_issuers": CdsHooksSite,
    "cds_jku_allowlist": CdsHooksSite,
    "shipto_reread": FulfillmentSite,
    "writeback": OrderSite,
    "sms_enabled": PatientLinkSite,
    "patient_support_phone": PatientLinkSite,
}


@pytest.mark.django_db
@pytest.mark.parametrize("path", OLD_FILES, ids=[p.stem for p in OLD_FILES])
def test_a_site_record_exported_before_issue_19_imports_unchanged_into_each_stages_row(path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    record = json.loads(path.read_text())
    assert set(MOVED) <= set(record)  # the file is as it was exported then
    set_secrets(monkeypatch, record)

    result = site_record_import(record=record, source=path.name)

    site = EHRSite.objects.get(pk=result.site.pk)
    for name, model in MOVED.items():
        assert getattr(model.objects.get(site=site), name) == record[name], name
    exported = site_record_export(site=site)
    kept = ("client_secret", "private_key_pem", "payer_rules")  # the payer rules are upgraded (issue 21), below
    assert {k: v for k, v in exported.items() if k in record and k not in kept} == {
        k: v for k, v in record.items() if k not in kept
    }
    _assert_payer_rules_upgraded(record["payer_rules"], exported, result.warnings)


def _assert_payer_rules_upgraded(old: list[dict], exported: dict, warnings: list[str]) -> None:
    """A ``contains`` rule became a rule for a payer record of the site (name: the pattern title-cased, alias: the
    pattern), as catalog migration 0011 does; a ``regex`` rule is inactive with its pattern; the rest is as it was."""
    assert len(exported["payer_rules"]) == len(old)
    payers = {payer["name"]: payer for payer in exported["payers"]}
    for before, after in zip(old, exported["payer_rules"], strict=True):
        same = ("priority", "product_kind", "kind", "copay_cents", "coinsurance_percent", "patient_message")
        assert {k: after[k] for k in same} == {k: before[k] for k in same}
        if before["match"] == "contains":
            name = before["pattern"].title()
            assert (after["match"], after["payer"], payers[name]["aliases"]) == ("payer", name, [before["pattern"]])
            assert any(f"contains {before['pattern']!r} became a rule for the payer" in w for w in warnings)
        elif before["match"] == "regex":
            assert (after["match"], after["pattern"], after["is_active"]) == ("regex", before["pattern"], False)
            assert any("cannot match payer records: imported inactive" in w for w in warnings)
        else:
            assert (after["match"], after["is_active"]) == (before["match"], before["is_active"])


@pytest.mark.django_db
def test_a_record_without_a_newer_setting_imports_with_its_default() -> None:
    record = json.loads((BEFORE / "sandbox.json").read_text())
    older = {key: value for key, value in record.items() if key not in ("patient_support_phone", "cds_issuers")}

    site = site_record_import(record=older, source="older.json").site

    links, cds = PatientLinkSite.objects.get(site=site), CdsHooksSite.objects.get(site=site)
    assert (links.patient_support_phone, links.sms_enabled) == ("", True)
    assert cds.cds_issuers == [] and cds.cds_hooks_enabled is True


@pytest.mark.django_db
def test_a_site_made_anywhere_has_every_stages_row_and_a_missing_row_reads_as_the_defaults() -> None:
    site = EHRSite.objects.create(name="Rows", iss="https://rows.example/fhir", client_id="c")
    assert all(model.objects.filter(site=site).exists() for model in set(MOVED.values()))

    OrderSite.objects.filter(site=site).delete()
    fresh = EHRSite.objects.get(pk=site.pk)
    assert OrderSite.of(fresh).writeback == "off"  # created with the defaults, no DoesNotExist
    assert site_settings_values(fresh)["writeback"] == "off"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_moves_every_sites_values_into_each_stages_row() -> None:
    before = [("ehr", "0011_admin_labels"), ("cdshooks", None), ("orders", "0009_admin_labels")]
    before += [("fulfillment", "0011_admin_labels"), ("purchaselinks", "0008_admin_labels")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state([node for node in before if node[1]]).apps.get_model("ehr", "EHRSite")
    values = {
        "cds_hooks_enabled": True,
        "cds_issuers": ["https://old.example/fhir"],
        "cds_jku_allowlist": ["https://old.example/jwks"],
        "shipto_reread": True,
        "writeback": "document_reference",
        "sms_enabled": True,
        "patient_support_phone": "(207) 555-0199",
    }
    site = old.objects.create(name="Old", iss="https://old.example/fhir", client_id="c", **values)
    plain = old.objects.create(name="Plain", iss="https://plain.example/fhir", client_id="p")
    # two earlier versions of the site, as simple-history keeps them (ADR 0019): who changed which setting, when
    versions = executor.loader.project_state([node for node in before if node[1]]).apps
    versions = versions.get_model("ehr", "HistoricalEHRSite")
    then = datetime.datetime(2026, 3, 1, 9, 30, tzinfo=datetime.UTC)
    common = {"id": site.pk, "name": "Old", "iss": site.iss, "client_id": "c", "created_at": then}
    versions.objects.create(**common, updated_at=then, history_date=then, history_type="+", writeback="off")
    versions.objects.create(
        **common,
        updated_at=then + datetime.timedelta(days=1),
        history_date=then + datetime.timedelta(days=1),
        history_type="~",
        history_change_reason="write-back on for go-live",
        **values,
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    for name, model in MOVED.items():
        assert getattr(model.objects.get(site_id=site.pk), name) == values[name], name
        assert getattr(model.objects.get(site_id=plain.pk), name) == model._meta.get_field(name).get_default()
    kept = OrderSite.history.filter(site_id=site.pk).order_by("history_date")
    row = OrderSite.objects.get(site_id=site.pk)
    assert [(v.history_date, v.writeback, v.history_change_reason) for v in kept] == [
        (then, "off", None),
        (then + datetime.timedelta(days=1), "document_reference", "write-back on for go-live"),
    ]
    assert {v.id for v in kept} == {row.id}  # the versions belong to the site's row: its History lists them


# --- the recipe: a new site setting -----------------------------------------------------------------------------


def _courier_checks(site: EHRSite) -> Iterator[Check]:
    account = site_settings_values(site)["courier_account"]
    yield (
        Check("courier", PASS, "Courier account set.")
        if account
        else Check("courier", FAIL, "No courier account.", "Set the courier account on the site.")
    )


@pytest.fixture
def courier_setting() -> Iterator[type[SiteSettings]]:
    """The recipe, done in a test: a stage's ``SiteSettings`` model with one field (here a temporary model of the
    ``golive`` app, its table made for the test instead of a migration) registered with a title and a readiness
    check. Removed again afterwards."""

    class CourierSite(SiteSettings):
        __module__ = "healthcommerce.golive.apps"  # a module of the app, for its history model too
        courier_account = models.CharField(
            verbose_name="courier account",
            max_length=20,
            blank=True,
            default="",
            help_text="The health system's account number with the courier.",
        )

        class Meta:
            app_label = "golive"

    historical = CourierSite.history.model
    with connection.schema_editor() as editor:
        editor.create_model(CourierSite)
        editor.create_model(historical)
    site_feature_register(name="courier", title="Courier", model=CourierSite, checks=_courier_checks)
    try:
        yield CourierSite
    finally:
        site_feature_unregister("courier")
        with connection.schema_editor() as editor:
            editor.delete_model(historical)
            editor.delete_model(CourierSite)
        for model in (CourierSite, historical):
            apps.all_models["golive"].pop(model._meta.model_name, None)
        apps.clear_cache()
        vars(golive_apps).pop(historical.__name__, None)  # simple_history put the history model there


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_new_setting_appears_in_the_record_the_schema_the_admin_the_flags_and_the_readiness_check(
    courier_setting, admin_client
) -> None:
    assert "courier_account" in site_feature_fields()
    # the site record's schema: optional, typed from the field, described from its label and help text
    schema = site_record_schema()
    assert schema["properties"]["courier_account"]["maxLength"] == 20
    assert schema["properties"]["courier_account"]["description"].startswith("Courier: Courier account. The health")
    assert "courier_account" not in schema["required"]
    # ehr_site add: a flag derived from the field
    out = io.StringIO()
    iss = "http://127.0.0.1:9/fhir"  # nothing listens: the readiness check fails fast
    call_command("ehr_site", "add", "--name", "Courier", "--iss", iss, "--client-id", "c", stdout=out)
    site = EHRSite.objects.get(iss=iss)
    assert courier_setting.objects.get(site=site).courier_account == ""
    call_command("ehr_site", "add", "--name", "Courier", "--iss", iss, "--client-id", "c", "--courier-account", "AC-1")
    assert courier_setting.objects.get(site=site).courier_account == "AC-1"
    # the site record: exported, and imported back
    record = site_record_export(site=site)
    assert record["courier_account"] == "AC-1"
    site_record_import(record=record | {"courier_account": "AC-2"}, source="courier.json")
    assert courier_setting.objects.get(site=site).courier_account == "AC-2"
    # the admin: a "Courier" section with the field's label, which saves
    page = admin_client.get(f"/admin/ehr/ehrsite/{site.pk}/change/").content.decode()
    assert "Courier" in page and 'name="couriersite-0-courier_account"' in page and "Courier account" in page
    data = {
        "name": site.name,
        "iss": site.iss,
        "client_id": site.client_id,
        "auth_method": site.auth_method,
        "signing_alg": site.signing_alg,
        "scopes": site.scopes,
        "other_quirks": "{}",
        "is_active": "on",
        "vendor": site.vendor,
    } | settings_form(site, courier_account="AC-3")
    response = admin_client.post(f"/admin/ehr/ehrsite/{site.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert courier_setting.objects.get(site=site).courier_account == "AC-3"
    # the readiness check runs the feature's own check
    assert [(c.name, c.status) for c in site_readiness(site).checks if c.name == "courier"] == [("courier", PASS)]
    courier_setting.objects.filter(site=site).update(courier_account="")
    again = EHRSite.objects.get(pk=site.pk)
    assert [(c.name, c.status) for c in site_readiness(again).checks if c.name == "courier"] == [("courier", FAIL)]
