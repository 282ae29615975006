"""The go-live readiness check (``ehr_site check NAME --patient ID`` and the admin button), over HTTP against the
sandbox EHR: a good site passes; a broken one names each problem (a missing scope, an unmapped code, a patient
without an address) with its fix and exits 1."""

import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from joserfc.jwk import RSAKey

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import Payer
from healthcommerce.ehr.backend import backend_tokens_forget
from healthcommerce.ehr.keys import signing_key_activate, signing_key_create
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.golive.readiness import FAIL, PASS, WARN, site_readiness
from tests.conftest import SandboxEHR, complete_launch, sandbox_database_copy, sandbox_server
from tests.staff import staff_login

pytestmark = pytest.mark.django_db
GOOD_SCOPES = "system/Patient.rs system/Coverage.rs system/DeviceRequest.rs system/ServiceRequest.rs"
GOLDNER = "0b779465-6db2-4931-bc13-5f6ff8e8c4d4"  # Synthea; authored kits HbA1c 4548-4 and unmapped FOBT 2335-8


@pytest.fixture(autouse=True)
def no_cached_tokens() -> Iterator[None]:
    backend_tokens_forget()
    yield
    backend_tokens_forget()


def _backend_site(site: EHRSite, sandbox: SandboxEHR, *, client_id: str, scopes: str, registered: str) -> EHRSite:
    """Give ``site`` an active RS384 key of ours and a backend client registered in ``sandbox`` with that key's
    public JWK and ``registered`` scopes; the site asks for ``scopes``."""
    key = signing_key_create(site=site, alg="RS384", actor="test")
    signing_key_activate(kid=key.kid, actor="test", force=True)
    sandbox.manage("sandbox_client", "add", "--client-id", client_id, "--scope", registered,
                   "--jwks-json", json.dumps({"keys": [key.public_jwk]}))  # fmt: skip
    site.backend_services, site.backend_client_id, site.backend_scopes = True, client_id, scopes
    site.auth_method, site.signing_alg = EHRSite.AuthMethod.PRIVATE_KEY_JWT, "RS384"
    site.save()
    return site


def _check(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("ehr_site", "check", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + f"CommandError: {exc}\n"
    return 0, out.getvalue()


def _statuses(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        word = line.split(" ", 1)[0]
        if word in ("PASS", "WARN", "FAIL"):
            found.setdefault(word.lower(), set()).add(line.split()[1])
    return found


def test_a_good_sandbox_site_is_ready(client, ehr_site: EHRSite, sandbox_ehr: SandboxEHR, settings) -> None:
    complete_launch(client, sandbox_ehr, patient="pat015")  # the launch records what the EHR granted
    ehr_site.refresh_from_db()
    assert ehr_site.scopes_granted
    _backend_site(ehr_site, sandbox_ehr, client_id="ready-backend", scopes=GOOD_SCOPES, registered=GOOD_SCOPES)
    jwks = f"{sandbox_ehr.base}/sandbox/oauth/jwks"
    cds = {"cds_hooks_enabled": True, "cds_issuers": [sandbox_ehr.fhir_base], "cds_jku_allowlist": [jwks]}
    site_settings_update(ehr_site, cds)

    code, text = _check("Sandbox", "--patient", "pat015")
    print(text)  # the closing note quotes it

    assert code == 0, text
    statuses = _statuses(text)
    assert FAIL not in statuses
    assert {"signing_key", "discovery", "granted_scopes", "backend_token", "patient", "patient_address"} <= statuses[
        PASS
    ]
    assert {"request_code", "coverage", "cds_hooks", "cds_jwks"} <= statuses[PASS]
    assert "tls" in statuses[WARN]  # plain HTTP to the sandbox on this machine
    assert text.splitlines()[-1].startswith("READY: 0 failed")
    # one audit row per read of the test patient, no PHI in the report
    reads = AuditEvent.objects.filter(action="readiness.read")
    assert {r.target.split("?")[0] for r in reads} >= {"Patient/pat015", "Coverage", "DeviceRequest", "ServiceRequest"}
    assert "Billy" not in text and "Ohio" not in text.lower()
    assert "matched to the payer record Medicare" in text  # payor Organization/org1234

    Payer.objects.filter(site=ehr_site).delete()  # nothing here names the chart's payor any more
    code, text = _check("Sandbox", "--patient", "pat015")
    assert "coverage" in _statuses(text)[WARN] and "matches no payer record here" in text


@pytest.fixture
def broken_sandbox(tmp_path: Path) -> Iterator[SandboxEHR]:
    """A private sandbox whose test patient (Goldner) has no address on file."""
    database = sandbox_database_copy(tmp_path / "sandbox.sqlite3")
    with sqlite3.connect(database) as db:
        (data,) = db.execute(
            "select data from sandbox_fhirresource where resource_type='Patient' and fhir_id=?", (GOLDNER,)
        ).fetchone()
        patient = json.loads(data)
        patient.pop("address")
        db.execute(
            "update sandbox_fhirresource set data=? where resource_type='Patient' and fhir_id=?",
            (json.dumps(patient), GOLDNER),
        )
    with sandbox_server(database=database) as sandbox:
        yield sandbox


def test_a_broken_site_names_each_problem_with_its_fix_and_exits_1(broken_sandbox: SandboxEHR, settings) -> None:
    settings.APP_BASE_URL = "http://testserver"
    site = EHRSite.objects.create(
        name="Broken Health",
        iss=broken_sandbox.fhir_base,
        client_id="broken-app",
        vendor="epic",
    )
    cds = {"cds_hooks_enabled": True, "cds_issuers": [broken_sandbox.fhir_base]}
    site_settings_update(site, cds | {"cds_jku_allowlist": ["http://127.0.0.1:9/jwks"]})  # nothing listens there
    site.scopes_granted = "launch openid fhirUser patient/Patient.rs patient/DeviceRequest.rs"  # not Coverage etc.
    site.save()
    # the backend client was registered without Coverage: the EHR does not grant it
    registered = "system/Patient.rs system/DeviceRequest.rs system/ServiceRequest.rs"
    _backend_site(site, broken_sandbox, client_id="broken-backend", scopes=registered, registered=registered)

    code, text = _check("Broken Health", "--patient", GOLDNER)
    print(text)  # the closing note quotes it

    assert code == 1
    failed = [line for line in text.splitlines() if line.startswith("FAIL")]
    fixes = [line.strip() for line in text.splitlines() if line.strip().startswith("fix:")]
    assert len(fixes) >= len(failed)
    # a missing scope, at launch and for backend services
    assert any("granted_scopes" in line and "patient/Coverage.rs" in line for line in failed)
    assert any("backend_scopes" in line and "system/Coverage.s" in line for line in failed)
    # a patient without an address
    assert any("patient_address" in line and "none on file" in line for line in failed)
    # an unmapped code (the authored guaiac FOBT), while the mapped HbA1c passes
    assert any("request_code" in line and "http://loinc.org|2335-8" in line for line in failed)
    assert any(line.startswith("PASS") and "4548-4" in line for line in text.splitlines())
    assert "framing" in _statuses(text)[WARN]
    assert any("cds_jwks" in line and "could not be read" in line for line in failed)
    assert "NOT READY" in text and "CommandError" in text


def test_without_backend_services_a_test_patient_cannot_be_read_and_that_fails(ehr_site: EHRSite) -> None:
    report = site_readiness(ehr_site, patient_id="pat015")
    failed = {c.name: c for c in report.failures}
    assert "backend_services" in failed and "readiness reads" in failed["backend_services"].detail
    assert failed["backend_services"].fix
    # with no patient and no feature needing it, backend services off is only a warning
    report = site_readiness(ehr_site)
    assert "backend_services" not in {c.name for c in report.failures}


def test_an_unreachable_ehr_and_an_unknown_site_are_reported_not_raised(db) -> None:
    site = EHRSite.objects.create(name="Gone", iss="http://127.0.0.1:9/fhir", client_id="x")
    report = site_readiness(site)
    assert [c.name for c in report.failures] == ["discovery"]
    code, text = _check("No Such Site")
    assert code == 1 and "No site named" in text


def test_the_admin_button_runs_the_check_and_audits_it(ehr_site: EHRSite, sandbox_ehr: SandboxEHR, admin_user) -> None:
    _backend_site(ehr_site, sandbox_ehr, client_id="admin-backend", scopes=GOOD_SCOPES, registered=GOOD_SCOPES)
    staff = staff_login(Client(), admin_user)
    change = staff.get(f"/admin/ehr/ehrsite/{ehr_site.pk}/change/")
    url = f"/admin/golive/sites/{ehr_site.pk}/readiness/"
    assert url in change.content.decode()

    page = staff.post(url, {"patient": "pat015"})

    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="readiness-report"' in body and "backend_token" in body and "patient_address" in body
    run = AuditEvent.objects.get(action="readiness.run")
    assert run.actor == f"staff:{admin_user.username}" and run.target == f"EHRSite/{ehr_site.pk}"
    assert AuditEvent.objects.filter(action="readiness.read", actor=run.actor).count() >= 4
    # a patient id that is not a FHIR id is refused by the form, nothing read
    bad = staff.post(url, {"patient": "../Patient?name=x"})
    assert bad.status_code == 200 and AuditEvent.objects.filter(action="readiness.run").count() == 1
    # anonymous: the admin login, no report
    assert Client().post(url, {"patient": "pat015"}).status_code == 302


def test_every_warning_and_failure_says_how_to_fix_it(ehr_site: EHRSite) -> None:
    ehr_site.auth_method = "client_secret_basic"
    ehr_site.save()
    site_settings_update(ehr_site, {"shipto_reread": True, "writeback": "communication", "cds_hooks_enabled": True})
    reports = [site_readiness(ehr_site), site_readiness(ehr_site, patient_id="pat015")]

    unexplained = [(c.name, c.detail) for r in reports for c in r.checks if c.status != PASS and not c.fix]
    assert unexplained == []
    assert {c.name for c in reports[0].failures} >= {"client_auth", "backend_services", "cds_hooks"}


def test_a_refused_backend_token_shows_the_ehrs_own_error_and_the_key_it_refused(
    ehr_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    _backend_site(ehr_site, sandbox_ehr, client_id="refused-backend", scopes=GOOD_SCOPES, registered=GOOD_SCOPES)
    unknown = signing_key_create(site=ehr_site, alg="RS384", actor="test")  # the EHR never saw this one
    signing_key_activate(kid=unknown.kid, actor="test", force=True)

    code, text = _check("Sandbox")

    assert code == 1
    line = next(line for line in text.splitlines() if line.startswith("FAIL") and "backend_token" in line)
    assert line.endswith(
        f"The EHR refused our backend services credentials: invalid_client, \"No key for kid: '{unknown.kid}'\""
    )
    fix = text.splitlines()[text.splitlines().index(line) + 1]
    assert "refused-backend" in fix and f"RS384 key {unknown.kid}" in fix


def test_failed_request_searches_are_failures_naming_the_search_and_status_never_none_found(
    ehr_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    """pat015 has DeviceRequests and ServiceRequests; a backend client not granted their search gets a 403, and
    the report must not say the patient has none."""
    patient_only = "system/Patient.rs system/Coverage.rs"
    _backend_site(ehr_site, sandbox_ehr, client_id="no-requests", scopes=patient_only, registered=patient_only)

    code, text = _check("Sandbox", "--patient", "pat015")

    assert code == 1
    lines = text.splitlines()
    for kind in ("DeviceRequest", "ServiceRequest"):
        line = next(line for line in lines if f"search {kind}?patient=pat015 failed" in line)
        assert line.startswith("FAIL  requests") and "(HTTP 403, forbidden)" in line, line
        assert lines[lines.index(line) + 1].strip().startswith("fix:")
    assert "has no DeviceRequest or ServiceRequest" not in text and "found none" not in text


def test_the_report_names_the_signing_key_a_stored_key_that_does_not_sign_and_a_key_waiting(
    ehr_site: EHRSite,
) -> None:
    pem = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    ehr_site.auth_method, ehr_site.private_key_pem, ehr_site.key_id = EHRSite.AuthMethod.PRIVATE_KEY_JWT, pem, "k1"
    ehr_site.save()
    own = signing_key_create(site=ehr_site, alg="RS384", actor="test")
    signing_key_activate(kid=own.kid, actor="test", force=True)
    waiting = signing_key_create(site=ehr_site, alg="RS384", actor="test")

    checks = {c.name: c for c in site_readiness(ehr_site).checks}

    assert checks["signing_key"].status == PASS
    assert f"the site's own RS384 key {own.kid} (published in our JWKS)" in checks["signing_key"].detail
    assert checks["stored_key"].status == WARN and "(kid k1, RS384) is not used" in checks["stored_key"].detail
    assert checks["next_key"].status == WARN and waiting.kid in checks["next_key"].detail
    assert f"ehr_keys activate {waiting.kid}" in checks["next_key"].fix
