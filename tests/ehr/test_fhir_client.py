"""One FHIR client (ehr/fhir.py ``FHIRClient``) for a launch's user token and a backend-services token, over HTTP
against a private sandbox EHR whose tokens the tests revoke in its own database (as an EHR does when it restarts
or an administrator revokes a grant): one retry after a 401 for each token kind, never two; and the readiness
check reads its test patient through the workers' client and token."""

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.backend import backend_client, backend_read, backend_token, backend_tokens_forget
from healthcommerce.ehr.errors import BackendFHIRError
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.golive.readiness import PASS, site_readiness
from healthcommerce.orders.services import launch_prefill
from tests.backend_site import backend_site_enable
from tests.conftest import SandboxEHR, complete_launch, sandbox_database_copy, sandbox_server

pytestmark = pytest.mark.django_db
CLIENT_ID = "one-client-app"
BACKEND_ID = f"{CLIENT_ID}-backend"
REDIRECT = "http://testserver/smart/callback"
SCOPES = "system/Patient.rs system/Coverage.rs system/DeviceRequest.rs system/ServiceRequest.rs"


@pytest.fixture(scope="module")
def private_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the loaded sandbox database, so its tokens can be revoked and counted."""
    return sandbox_database_copy(tmp_path_factory.mktemp("oneclient") / "sandbox.sqlite3")


@pytest.fixture(scope="module")
def private_sandbox(private_db: Path) -> Iterator[SandboxEHR]:
    """A sandbox EHR process on ``private_db`` with the launch client ``one-client-app``."""
    with sandbox_server(database=private_db) as sandbox:
        sandbox.manage("sandbox_client", "add", "--client-id", CLIENT_ID, "--redirect-uri", REDIRECT)
        yield sandbox


@pytest.fixture(autouse=True)
def no_cached_tokens() -> Iterator[None]:
    backend_tokens_forget()
    yield
    backend_tokens_forget()


@pytest.fixture
def site(private_sandbox: SandboxEHR, settings: Any) -> EHRSite:
    """The private sandbox as an EHR site with ``online_access`` (a refresh token) and backend services."""
    settings.APP_BASE_URL = "http://testserver"
    site = EHRSite.objects.create(
        name="Sandbox", iss=private_sandbox.fhir_base, client_id=CLIENT_ID, scopes=f"{default_scopes()} online_access"
    )
    return backend_site_enable(site, private_sandbox, scopes=SCOPES, shipto_reread=True)


def sandbox_revoke(db: Path, client_id: str) -> int:
    """Revoke every access token the sandbox issued to ``client_id`` (its refresh tokens stay usable)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "UPDATE sandbox_sandboxtoken SET expires_at = '2000-01-01 00:00:00' "
            "WHERE client_id IN (SELECT id FROM sandbox_sandboxclient WHERE client_id = ?)",
            (client_id,),
        ).rowcount


def sandbox_issued(db: Path, client_id: str) -> int:
    """Return how many access tokens the sandbox issued to ``client_id``."""
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM sandbox_sandboxtoken "
                "WHERE client_id IN (SELECT id FROM sandbox_sandboxclient WHERE client_id = ?)",
                (client_id,),
            ).fetchone()[0]
        )


def faults_left(sandbox: SandboxEHR) -> str:
    return sandbox.manage("sandbox_fault", "list")


def test_a_revoked_backend_token_is_replaced_once_and_the_read_goes_through(
    site: EHRSite, private_sandbox: SandboxEHR, private_db: Path
) -> None:
    cached = backend_token(site)
    assert sandbox_revoke(private_db, BACKEND_ID) >= 1
    issued = sandbox_issued(private_db, BACKEND_ID)

    patient = backend_read(site, "Patient", "pat014", elements=["address"])

    assert patient["id"] == "pat014"
    assert sandbox_issued(private_db, BACKEND_ID) == issued + 1  # one fresh token, one retry
    assert backend_token(site).access_token != cached.access_token
    row = AuditEvent.objects.get(action="fhir.read")
    assert (row.target, row.outcome, row.actor) == ("Patient/pat014", "success", f"backend:{BACKEND_ID}")


def test_a_backend_token_refused_again_after_the_retry_is_unauthorized(
    site: EHRSite, private_sandbox: SandboxEHR, private_db: Path
) -> None:
    issued = sandbox_issued(private_db, BACKEND_ID)
    private_sandbox.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "401", "--count", "3")
    try:
        with pytest.raises(BackendFHIRError) as caught:
            backend_client(site).read("Patient", "pat014")
        left = faults_left(private_sandbox)
    finally:
        private_sandbox.manage("sandbox_fault", "clear")

    assert caught.value.code == "unauthorized" and not caught.value.transient
    assert "1 left" in left  # two requests: the first and the one retry
    assert sandbox_issued(private_db, BACKEND_ID) == issued + 2  # the first token and one fresh one


def test_a_revoked_launch_token_is_refreshed_once_for_the_whole_prefill_round(
    client: Any, site: EHRSite, private_sandbox: SandboxEHR, private_db: Path
) -> None:
    result = complete_launch(client, private_sandbox, patient="pat014", request="DeviceRequest/devreq021")
    launch = Launch.objects.select_related("site").get(pk=result.launch_id)
    assert launch.refresh_token and launch.token_expires_at > timezone.now() + timedelta(seconds=60)
    assert sandbox_revoke(private_db, CLIENT_ID) >= 1  # the app still thinks its token fresh

    assert launch_prefill(launch=launch)

    launch.refresh_from_db()
    assert set(launch.prefill_outcomes.values()) == {"success"}, launch.prefill_outcomes
    refresh = AuditEvent.objects.get(action="smart.refresh")
    assert (refresh.outcome, refresh.detail["forced"]) == ("success", True)
    reads = AuditEvent.objects.filter(action="fhir.read")
    assert reads.filter(outcome="unauthorized").count() == reads.filter(outcome="success").count() >= 3


def test_a_launch_token_refused_again_after_the_refresh_is_unauthorized(
    client: Any, site: EHRSite, private_sandbox: SandboxEHR
) -> None:
    result = complete_launch(client, private_sandbox, patient="pat014", request="DeviceRequest/devreq021")
    launch = Launch.objects.select_related("site").get(pk=result.launch_id)
    private_sandbox.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "401", "--count", "3")
    try:
        launch_prefill(launch=launch)
        left = faults_left(private_sandbox)
    finally:
        private_sandbox.manage("sandbox_fault", "clear")

    launch.refresh_from_db()
    assert launch.prefill_outcomes["Patient"] == "unauthorized"
    assert "1 left" in left  # the first round and the one retry after the refresh
    assert AuditEvent.objects.filter(action="smart.refresh").count() == 1


def test_the_readiness_check_reads_the_test_patient_with_the_workers_client_and_token(
    site: EHRSite, private_sandbox: SandboxEHR, private_db: Path
) -> None:
    """A backend token cached by this process and since revoked by the EHR: the worker's read fetches a fresh
    one; the readiness check, which used to read with the cached token and no retry, now does the same, so it
    passes where the worker would and fails where the worker would."""
    backend_token(site)  # cached, as a worker's process has it
    sandbox_revoke(private_db, BACKEND_ID)

    report = site_readiness(site, patient_id="pat014")

    patient = next(check for check in report.checks if check.name == "patient")
    assert patient.status == PASS, patient
    assert {c.name for c in report.checks if c.status == PASS} >= {"backend_token", "patient", "patient_address"}
    reads = AuditEvent.objects.filter(action="readiness.read", target="Patient/pat014")
    assert [r.outcome for r in reads] == ["success"]

    sandbox_revoke(private_db, BACKEND_ID)
    private_sandbox.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "401")
    try:
        report = site_readiness(site, patient_id="pat014")
        with pytest.raises(BackendFHIRError) as worker:  # the ship-to re-read's read
            backend_read(site, "Patient", "pat014", elements=["address"])
    finally:
        private_sandbox.manage("sandbox_fault", "clear")

    patient = next(check for check in report.checks if check.name == "patient")
    assert (patient.status, worker.value.code) == ("fail", "unauthorized")
    assert "unauthorized" in patient.detail
