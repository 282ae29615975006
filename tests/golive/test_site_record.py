"""The site record file (issue 10 "The site record, versioned"; docs/adr/0019): ``ehr_site export`` and ``import``
round-trip every fixture site byte for byte, the schema names the path of each problem, secrets never leave the
database, and every change is kept with who made it and when."""

import copy
import io
import json
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import HCPCS, CodeMapping, OrderableRule, Payer, PayerRule, Product
from healthcommerce.ehr.models import AppSigningKey, EHRSite
from healthcommerce.ehr.sitefeatures import site_feature_fields, site_feature_secrets, site_settings_defaults
from healthcommerce.golive.siterecord import secret_env_name, secret_suffixes, site_record_dumps, site_record_schema
from healthcommerce.purchaselinks.models import PatientLinkSite
from tests.fulfillment.test_encryption_at_rest import plaintext_found
from tests.site_settings import settings_form

pytestmark = pytest.mark.django_db
SITES_DIR = Path(settings.BASE_DIR) / "healthcommerce" / "golive" / "sites"
FIXTURES = sorted(SITES_DIR.glob("*.json"))
SECRET = "site-record-secret-4c2e9a"


def new_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def export(name: str) -> str:
    out = io.StringIO()
    call_command("ehr_site", "export", name, stdout=out)
    return out.getvalue()


def import_file(path: Path | str, *args: str) -> str:
    out = io.StringIO()
    call_command("ehr_site", "import", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def set_secrets(monkeypatch, record: dict) -> None:  # type: ignore[no-untyped-def]
    """Put a fresh value in each secret variable the record references (a stage's secret settings too)."""
    values = {"client_secret": SECRET, "private_key_pem": new_pem()}
    for name in secret_suffixes():
        if record.get(name):
            monkeypatch.setenv(record[name]["secret_ref"].removeprefix("env:"), values.get(name, f"{SECRET}-{name}"))


def write(tmp_path: Path, record: dict, name: str = "site.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def epic() -> dict:
    return json.loads((SITES_DIR / "epic-example.json").read_text())


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_each_fixture_site_round_trips_byte_for_byte(path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    record = json.loads(path.read_text())
    set_secrets(monkeypatch, record)
    assert EHRSite.objects.count() == 0 and Product.objects.exists()  # an empty database, the catalog migrated

    import_file(path)

    # byte for byte; a stage setting added after the file was written exports as its default
    assert export(record["name"]) == site_record_dumps(site_settings_defaults() | record)
    assert set(site_settings_defaults()) - set(record) or export(record["name"]).encode() == path.read_bytes()


def test_the_fixtures_are_the_sandbox_an_epic_and_an_oracle_health_site() -> None:
    records = [json.loads(p.read_text()) for p in FIXTURES]
    assert {r["vendor"] for r in records} >= {"sandbox", "epic", "oracle"}
    epic = next(r for r in records if r["vendor"] == "epic")
    assert (epic["auth_method"], epic["signing_alg"]) == ("private_key_jwt", "RS384")
    assert epic["quirks"] == {"authorize_post": True, "epic_client_id_header": True}
    assert epic["iss"].startswith("https://fhir.epic.com/")
    assert any(m["system"].startswith("urn:oid:1.2.840.114350.") for m in epic["code_mappings"])  # site-local


def test_the_sandbox_fixture_is_what_demo_setup_registers(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR, settings.APP_BASE_URL = tmp_path, "http://127.0.0.1:8000"
    call_command("demo_setup", stdout=io.StringIO())
    fixture = json.loads((SITES_DIR / "sandbox.json").read_text())

    registered = json.loads(export("Sandbox EHR"))

    set_by_demo_setup = ["name", "iss", "client_id", "auth_method", "private_key_pem", "key_id", "signing_alg"]
    set_by_demo_setup += ["scopes", "frame_origins", "sms_enabled", "vendor", "backend_services", "backend_scopes"]
    set_by_demo_setup += ["cds_hooks_enabled", "cds_issuers", "cds_jku_allowlist", "writeback", "shipto_reread"]
    set_by_demo_setup += ["fhir_notify_enabled", "fhir_notify_token", "payers"]
    set_by_demo_setup += ["eligibility_enabled", "clearinghouse_url", "clearinghouse_api_key", "submitter_id"]
    set_by_demo_setup += ["receiver_id", "provider_npi", "provider_name"]
    assert {k: registered[k] for k in set_by_demo_setup} == {k: fixture[k] for k in set_by_demo_setup}
    # the sandbox EHR is subscribed to the app's notification endpoint with the site's token (its "Send notification")
    from healthcommerce.ehr.sitefeatures import site_settings_secret
    from healthcommerce.sandbox.models import FhirResource

    site = EHRSite.objects.get(name="Sandbox EHR")
    channel = FhirResource.objects.get(resource_type="Subscription").data["channel"]
    assert channel["endpoint"] == f"http://127.0.0.1:8000/intake/fhir/{site.pk}/notify"
    assert channel["header"] == [f"Authorization: Bearer {site_settings_secret(site, 'fhir_notify_token')}"]
    call_command("demo_setup", stdout=io.StringIO())  # again: the same token (idempotent)
    assert FhirResource.objects.get(resource_type="Subscription").data["channel"] == channel


def test_export_import_export_is_identical_for_a_site_edited_in_the_admin(admin_client, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(
        "/admin/ehr/ehrsite/add/",
        {
            "name": "Harbor Health",
            "iss": "https://ehr.harbor.example/fhir/r4",
            "client_id": "hc-harbor",
            "auth_method": "client_secret_basic",
            "new_client_secret": SECRET,
            "key_id": "",
            "signing_alg": "RS384",
            "scopes": "launch openid fhirUser patient/Patient.rs",
            "quirks": "epic_client_id_header",  # the admin's checkboxes
            "frame_origins": "https://epic.harbor.example",  # one per line
            "is_active": "on",
            "vendor": "epic",
            "vendor_version": "February 2026",
            "backend_services": "on",
            "backend_client_id": "hc-harbor-backend",
            "backend_scopes": "system/Patient.rs system/Communication.c",
        }
        | settings_form(  # each stage's section of the page
            shipto_reread=True,
            writeback="communication",
            cds_hooks_enabled=True,
            cds_issuers="https://ehr.harbor.example/fhir/r4",
            cds_jku_allowlist="https://ehr.harbor.example/jwks",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    site = EHRSite.objects.get(name="Harbor Health")
    cpap = Product.objects.get(sku="DME-CPAP-STD")
    for url, data in [
        (
            "/admin/catalog/codemapping/add/",
            {"site": site.pk, "system": "urn:oid:9.9", "code": "X1", "product": cpap.pk},
        ),
        ("/admin/catalog/codemapping/add/", {"site": site.pk, "system": HCPCS, "code": "E0601", "product": cpap.pk}),
        ("/admin/catalog/orderablerule/add/", {"site": site.pk, "system": HCPCS, "code_prefix": "K", "reason": "no"}),
        (
            "/admin/catalog/payer/add/",
            {"site": site.pk, "name": "Harbor", "plan_type": "commercial", "identifiers": "Organization/h1\nHRB"},
        ),
        (
            "/admin/catalog/payerrule/add/",
            {"site": site.pk, "priority": 7, "match": "payer", "payer": "Harbor", "kind": "covered"},
        ),
        (
            "/admin/catalog/payerrule/add/",
            {
                "site": site.pk,
                "priority": 7,
                "match": "any_payer",
                "kind": "coinsurance",
                "coinsurance_percent": "12.5",
            },
        ),
    ]:
        data = {"default_quantity": 1, "is_active": "on", **data}
        if data.get("payer"):
            data["payer"] = Payer.objects.get(site=site, name=data["payer"]).pk
        assert admin_client.post(url, data).status_code == 302, admin_client.post(url, data).content.decode()[:3000]
    first = export("Harbor Health")
    exported = tmp_path / "harbor.json"
    exported.write_text(first, encoding="utf-8")

    # Into the same database: nothing changes.
    assert "No changes." in import_file(exported)
    assert export("Harbor Health") == first
    # Into a database without the site: the same bytes again (the secret from its variable).
    site.delete()
    monkeypatch.setenv(secret_env_name("Harbor Health", "client_secret"), SECRET)
    import_file(exported)
    assert export("Harbor Health") == first
    assert json.loads(first)["payer_rules"][0]["payer"] == "Harbor"  # equal priorities keep the admin's order
    assert json.loads(first)["payers"][0]["identifiers"] == ["Organization/h1", "HRB"]


def test_secrets_never_appear_in_an_export(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pem = new_pem()
    site = EHRSite.objects.create(
        name="Secret clinic",
        iss="https://secret.example/fhir",
        client_id="c",
        auth_method=EHRSite.AuthMethod.PRIVATE_KEY_JWT,
        client_secret=SECRET,
        private_key_pem=pem,
        key_id="secret-1",
    )
    AppSigningKey.objects.create(
        site=site,
        environment="test",
        kid="secret-clinic-rs384-1",
        alg="RS384",
        status="active",
        private_jwk=json.dumps({"kty": "RSA", "d": "private-exponent-never-exported", "kid": "secret-clinic-rs384-1"}),
        public_jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "secret-clinic-rs384-1"},
    )

    text = export("Secret clinic")

    pem_lines = [line for line in pem.splitlines() if "-----" not in line]
    for secret in [SECRET, "private-exponent-never-exported", "BEGIN PRIVATE KEY", *pem_lines]:
        assert secret not in text
    record = json.loads(text)
    assert record["client_secret"] == {"secret_ref": "env:HC_SITE_SECRET_CLINIC_CLIENT_SECRET"}
    assert record["private_key_pem"] == {"secret_ref": "env:HC_SITE_SECRET_CLINIC_PRIVATE_KEY"}
    assert record["signing_keys"] == [
        {"kid": "secret-clinic-rs384-1", "alg": "RS384", "environment": "test", "status": "active"}
    ]


def test_import_takes_a_secret_from_its_variable_else_keeps_the_stored_one_else_fails(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, epic
) -> None:
    variable = epic["private_key_pem"]["secret_ref"].removeprefix("env:")
    path = write(tmp_path, epic)
    secret_ref = {"secret_ref": f"env:{secret_env_name(epic['name'], 'client_secret')}"}
    basic = dict(epic, auth_method="client_secret_basic", client_secret=secret_ref)
    with pytest.raises(CommandError, match=r"\$\.client_secret: client_secret_basic needs a client secret: set"):
        import_file(write(tmp_path, basic, "basic.json"))
    assert not EHRSite.objects.exists()

    pem = new_pem()
    monkeypatch.setenv(variable, pem)
    assert f"private_key_pem: set from {variable}" in import_file(path)
    monkeypatch.delenv(variable)
    assert "No changes." in import_file(path)  # the stored key is kept
    assert EHRSite.objects.get().private_key_pem == pem.strip()

    monkeypatch.setenv(variable, "not a key")
    with pytest.raises(CommandError, match=f"{variable} does not hold an unencrypted PEM private key"):
        import_file(path)

    public = dict(epic, auth_method="none", private_key_pem=None)
    assert "private_key_pem: removed" in import_file(write(tmp_path, public))
    assert EHRSite.objects.get().private_key_pem == ""


def mutate(record: dict, path: str, value: object) -> dict:
    """Return a copy of ``record`` with the item at ``path`` (dots and [i]) set to ``value`` (``...``: removed)."""
    changed = copy.deepcopy(record)
    parts = [int(p) if p.isdigit() else p for p in path.replace("[", ".").replace("]", "").split(".")]
    target = changed
    for part in parts[:-1]:
        target = target[part]
    if value is ...:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("format", "healthcommerce-site-record/0", "$.format: 'healthcommerce-site-record/1' was expected"),
        ("vendor", ..., "$: 'vendor' is a required property"),
        ("vendor", "meditech", "$.vendor: 'meditech' is not one of"),
        ("extra", 1, "Additional properties are not allowed ('extra' was unexpected)"),
        ("code_mappings[1].default_quantity", 0, "$.code_mappings[1].default_quantity: 0 is less than the minimum"),
        ("code_mappings[2].product", "NO-SUCH-SKU", "$.code_mappings[2].product: no product with SKU 'NO-SUCH-SKU'"),
        ("code_mappings[2].code", "DME1010", "$.code_mappings[2]: duplicate of $.code_mappings[1] (urn:oid:"),
        (
            "orderable_rules[1].code_prefix",
            "LAB",
            "$.orderable_rules[1]: duplicate of $.orderable_rules[0] (ServiceRequest|urn:oid:",
        ),
        ("payer_rules[0].copay_cents", None, "$.payer_rules[0].copay_cents: A copay rule needs the amount."),
        ("payer_rules[0].payer", "No Such Plan", "$.payer_rules[0].payer: no payer named 'No Such Plan' in $.payers"),
        ("payer_rules[1].plan_type", "", "$.payer_rules[1].plan_type: Pick the plan type this rule is for."),
        ("payers[0].plan_type", "hmo", "$.payers[0].plan_type: 'hmo' is not one of"),
        ("iss", "http://fhir.example.org/r4", "$.iss: 'http://fhir.example.org/r4' must be https"),
        ("iss", "https://fhir.example.org/r4/", "$.iss: drop the trailing slash"),
        (
            "frame_origins[0]",
            "https://epic.example.org/page",
            "$.frame_origins[0]: 'https://epic.example.org/page' must",
        ),
        ("cds_jku_allowlist[0]", "not a url at all", "$.cds_jku_allowlist[0]: 'not a url at all' is not an http(s)"),
        ("scopes[0]", "two words", "$.scopes[0]: 'two words' does not match"),
        ("discovered_at", "yesterday", "$.discovered_at: 'yesterday' does not match"),
        ("client_secret", {"secret_ref": "SECRET"}, "$.client_secret: {'secret_ref': 'SECRET'} is not valid"),
        ("client_secret", {"value": "s3cr3t"}, "$.client_secret:"),
        ("private_key_pem", {"secret_ref": "env:HC_SITE_OTHER_PRIVATE_KEY"}, "$.private_key_pem.secret_ref: for the"),
    ],
)
def test_import_rejects_a_bad_file_naming_the_path(tmp_path, monkeypatch, epic, path, value, error) -> None:  # type: ignore[no-untyped-def]
    set_secrets(monkeypatch, epic)
    with pytest.raises(CommandError) as raised:
        import_file(write(tmp_path, mutate(epic, path, value)))
    assert error in str(raised.value)
    assert not EHRSite.objects.exists() and not AuditEvent.objects.filter(action="site.import").exists()


def test_a_file_that_is_not_json_or_missing_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    with pytest.raises(CommandError, match=r"broken\.json is not JSON: line 1 column 12"):
        import_file(broken)
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.json"):
        import_file(tmp_path / "missing.json")


def test_an_unknown_site_on_export_exits_non_zero_without_a_traceback(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "ehr_site", "export", "No Such Health"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "No EHR site named 'No Such Health'" in err and "Traceback" not in err


def test_import_replaces_the_sites_mappings_and_rules_and_prints_what_changed(tmp_path, monkeypatch, epic) -> None:  # type: ignore[no-untyped-def]
    set_secrets(monkeypatch, epic)
    import_file(write(tmp_path, epic))
    site = EHRSite.objects.get()
    global_mappings = CodeMapping.objects.filter(site=None).count()
    edited = mutate(epic, "code_mappings[0].default_quantity", 2)
    del edited["code_mappings"][3]
    edited["code_mappings"].append({"system": HCPCS, "code": "E0424", "product": "DME-O2-STAT", "default_quantity": 1})
    edited["orderable_rules"] = edited["orderable_rules"][:1]
    edited["payer_rules"][0]["copay_cents"] = 2000
    edited["scopes"] = [*edited["scopes"], "online_access"]
    edited["vendor_version"] = "Epic May 2026"

    out = import_file(write(tmp_path, edited))

    for line in [
        'vendor_version: "Epic February 2026" -> "Epic May 2026"',
        "scopes: +online_access",
        f"code_mappings: ~ {HCPCS}|E0601 -> DME-CPAP-STD x2 (was DME-CPAP-STD x1)",
        f"code_mappings: + {HCPCS}|E0424 -> DME-O2-STAT x1",
        "code_mappings: - urn:oid:1.2.840.114350.1.13.0.1.7.2.696580|LAB8830 -> KIT-FIT",
        "orderable_rules: - ServiceRequest urn:oid:1.2.840.114350.1.13.0.1.7.2.696580|NUR* not orderable",
        "payer_rules: - priority 5: payer 'Example Health Plan' -> copay 1500 cents",
        "payer_rules: + priority 5: payer 'Example Health Plan' -> copay 2000 cents",
    ]:
        assert line in out
    assert CodeMapping.objects.filter(site=site).count() == 4
    assert CodeMapping.objects.filter(site=None).count() == global_mappings  # global rows untouched
    assert OrderableRule.objects.filter(site=site).count() == 1
    assert list(PayerRule.objects.filter(site=site).order_by("priority").values_list("copay_cents", flat=True)) == [
        2000,
        None,
    ]
    assert json.loads(export(epic["name"])) == json.loads(json.dumps(edited)) | {
        "code_mappings": sorted(edited["code_mappings"], key=lambda m: (m["system"], m["code"]))
    }


def test_dry_run_prints_the_changes_and_saves_nothing(tmp_path, monkeypatch, epic) -> None:  # type: ignore[no-untyped-def]
    set_secrets(monkeypatch, epic)

    out = import_file(write(tmp_path, epic), "--dry-run")

    assert f"Would create {epic['name']}" in out and "code_mappings: + " in out and "Dry run: nothing was saved." in out
    assert not EHRSite.objects.exists() and not CodeMapping.objects.filter(site__isnull=False).exists()
    assert not EHRSite.history.exists() and not AuditEvent.objects.filter(action="site.import").exists()


def test_import_reads_standard_input(monkeypatch, epic) -> None:  # type: ignore[no-untyped-def]
    set_secrets(monkeypatch, epic)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(epic)))

    import_file("-")

    assert EHRSite.objects.get().history.get().history_change_reason == "import from stdin"


def test_import_keeps_history_with_the_user_and_the_file_and_no_secret(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, epic, django_user_model
) -> None:
    staff = django_user_model.objects.create_user(username="golive", is_staff=True)
    pem = new_pem()
    monkeypatch.setenv(epic["private_key_pem"]["secret_ref"].removeprefix("env:"), pem)
    with pytest.raises(CommandError, match="No staff user named 'nobody'"):
        import_file(write(tmp_path, epic, "epic-example.json"), "--user", "nobody")

    import_file(write(tmp_path, epic, "epic-example.json"), "--user", "golive")

    site = EHRSite.objects.get()
    row = site.history.get()
    assert (row.history_user, row.history_change_reason, row.history_type) == (
        staff,
        "import from epic-example.json",
        "+",
    )
    mapping_rows = CodeMapping.history.filter(site_id=site.pk)
    assert mapping_rows.count() == 4 and {r.history_user for r in mapping_rows} == {staff}
    assert PayerRule.history.filter(site_id=site.pk, history_change_reason="import from epic-example.json").count() == 2
    names = {f.name for f in EHRSite.history.model._meta.fields}
    assert "client_secret" not in names and "private_key_pem" not in names
    body = [line for line in pem.splitlines() if "-----" not in line][2]
    assert plaintext_found([body]) == []
    audit = AuditEvent.objects.get(action="site.import")
    assert (audit.actor, audit.target, audit.site) == ("admin:golive", f"EHRSite/{site.pk}", epic["iss"])


def test_the_admin_history_shows_each_change_with_who_and_when(  # type: ignore[no-untyped-def]
    admin_client, admin_user, tmp_path, monkeypatch, epic, django_user_model
) -> None:
    django_user_model.objects.create_user(username="golive", is_staff=True)
    set_secrets(monkeypatch, epic)
    import_file(write(tmp_path, epic, "epic-example.json"), "--user", "golive")
    site = EHRSite.objects.get()
    data = {
        "name": site.name,
        "iss": site.iss,
        "client_id": site.client_id,
        "auth_method": site.auth_method,
        "key_id": site.key_id,
        "signing_alg": site.signing_alg,
        "scopes": site.scopes,
        "quirks": [key for key, on in site.quirks.items() if on is True],  # the admin's checkboxes
        "other_quirks": "{}",
        "frame_origins": "\n".join(site.frame_origins),  # one per line
        "is_active": "on",
        "vendor": site.vendor,
        "vendor_version": site.vendor_version,
        "backend_client_id": site.backend_client_id,
        "backend_scopes": site.backend_scopes,
    } | {flag: "on" for flag in ("send_jku", "backend_services") if getattr(site, flag)}
    data |= settings_form(site, sms_enabled=True)
    assert admin_client.post(f"/admin/ehr/ehrsite/{site.pk}/change/", data).status_code == 302

    page = admin_client.get(f"/admin/ehr/ehrsite/{site.pk}/history/").content.decode()

    assert "import from epic-example.json" in page
    assert ">golive</a>" in page and f">{admin_user.username}</a>" in page  # the "Changed by" column
    # each stage's settings keep their own history: the admin's edit of SMS names its user, the import its own
    links = PatientLinkSite.of(site).history.order_by("-history_date")
    assert links.first().history_user == admin_user and links.first().sms_enabled is True
    assert links.filter(history_change_reason="import from epic-example.json").exists()
    assert site.history.count() == 2  # the import, the admin's save
    assert AuditEvent.objects.filter(action="admin.view", target=f"EHRSite/{site.pk}", detail__view="history").exists()
    mapping = CodeMapping.objects.filter(site=site).first()
    assert (
        "import from epic-example.json"
        in admin_client.get(f"/admin/catalog/codemapping/{mapping.pk}/history/").content.decode()
    )
    version = site.history.last().history_id
    assert admin_client.get(f"/admin/ehr/ehrsite/{site.pk}/history/{version}/").status_code == 200
    assert admin_client.post(f"/admin/ehr/ehrsite/{site.pk}/history/{version}/", data).status_code == 403  # no restore


def test_a_discovery_refresh_is_not_a_change_in_the_history() -> None:
    site = EHRSite.objects.create(name="Refreshing", iss="https://refresh.example/fhir", client_id="c")
    site.discovery = {
        "authorization_endpoint": "https://refresh.example/a",
        "token_endpoint": "https://refresh.example/t",
    }
    site.save(update_fields=["discovery", "discovered_at", "updated_at"])
    site.name = "Refreshed"
    site.save(update_fields=["name", "updated_at"])

    assert [row.history_type for row in site.history.order_by("history_date")] == ["+", "~"]


def test_the_schema_is_draft_2020_12_and_describes_every_field() -> None:
    out = io.StringIO()
    call_command("ehr_site", "schema", stdout=out)
    schema = json.loads(out.getvalue())
    assert schema == site_record_schema()
    jsonschema.Draft202012Validator.check_schema(schema)

    def undescribed(node: dict, path: str) -> list[str]:
        missing = []
        for name, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{path}.{name}")
            missing += undescribed(sub.get("items", sub), f"{path}.{name}")
        return missing

    assert undescribed(schema, "$") == []
    # every field is required but what export observed at the EHR (a hand-written file leaves it out), each
    # stage's settings (a file from before a setting existed imports with its default) and the payers (a file from
    # before payer records, issue 21, has none)
    stage_settings = set(site_feature_fields()) | set(site_feature_secrets())
    assert {"cds_issuers", "shipto_reread", "writeback", "sms_enabled"} <= stage_settings
    optional = {"discovery", "discovered_at", "payers"}
    assert set(schema["properties"]) - set(schema["required"]) == optional | stage_settings
    for path in FIXTURES:
        jsonschema.validate(json.loads(path.read_text()), schema, cls=jsonschema.Draft202012Validator)


def test_payer_rules_of_equal_priority_keep_the_files_order(tmp_path, monkeypatch, epic) -> None:  # type: ignore[no-untyped-def]
    set_secrets(monkeypatch, epic)
    for rule in epic["payer_rules"]:
        rule["priority"] = 5
    import_file(write(tmp_path, epic))
    swapped = dict(epic, payer_rules=epic["payer_rules"][::-1])

    out = import_file(write(tmp_path, swapped))

    assert out.splitlines()[1:] == ["  payer_rules: reordered among equal priorities as in the file"]
    assert json.loads(export(epic["name"]))["payer_rules"] == swapped["payer_rules"]


def test_a_hand_written_file_without_discovery_imports_and_discovers_at_first_use(tmp_path, monkeypatch, epic) -> None:  # type: ignore[no-untyped-def]
    """``discovery`` and ``discovered_at`` are what export observed at the EHR: a file written by hand leaves
    them out; a new site then has none (discovered at first use), an existing one keeps what it discovered."""
    set_secrets(monkeypatch, epic)
    minimal = {key: value for key, value in epic.items() if key not in ("discovery", "discovered_at")}
    path = write(tmp_path, minimal, "hand-written.json")

    assert "Created" in import_file(path)

    site = EHRSite.objects.get()
    assert (site.discovery, site.discovered_at) == ({}, None)
    site.discovery = {"token_endpoint": "https://epic.example.org/oauth2/token"}
    site.save()
    assert "No changes." in import_file(path)
    site.refresh_from_db()
    assert site.discovery == {"token_endpoint": "https://epic.example.org/oauth2/token"}


def test_a_new_private_key_jwt_site_without_a_key_imports_with_a_warning_naming_ehr_keys(tmp_path, epic) -> None:  # type: ignore[no-untyped-def]
    """README "Register a real Epic site": import the file, then `ehr_keys new --site` (which needs the site)."""
    variable = epic["private_key_pem"]["secret_ref"].removeprefix("env:")
    err = io.StringIO()

    call_command("ehr_site", "import", str(write(tmp_path, epic)), stdout=io.StringIO(), stderr=err)

    site = EHRSite.objects.get()
    assert site.auth_method == "private_key_jwt" and not site.private_key_pem
    warning = err.getvalue()
    assert f"ehr_keys new --site '{site.name}' --alg RS384" in warning and variable in warning
    call_command("ehr_keys", "new", "--site", site.name, stdout=io.StringIO())
    err = io.StringIO()
    call_command("ehr_site", "import", str(write(tmp_path, epic)), stdout=io.StringIO(), stderr=err)
    assert "ehr_keys new" not in err.getvalue()


def test_in_production_a_private_iss_is_refused_at_import_but_a_private_frame_origin_is_not_fetched(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, epic, settings
) -> None:
    settings.PRODUCTION = True
    set_secrets(monkeypatch, epic)
    intranet = dict(epic, frame_origins=["https://10.1.2.3"], cds_issuers=["https://10.1.2.3/fhir"])
    import_file(write(tmp_path, intranet))  # origins and issuers are compared, never contacted

    with pytest.raises(CommandError, match=r"\$\.iss: 'https://10\.1\.2\.3/fhir' is refused: .*OUTBOUND_PRIVATE_HOSTS"):
        import_file(write(tmp_path, dict(intranet, iss="https://10.1.2.3/fhir")))
    settings.OUTBOUND_PRIVATE_HOSTS = ["10.1.2.3"]
    assert "Created" in import_file(write(tmp_path, dict(intranet, iss="https://10.1.2.3/fhir")))
