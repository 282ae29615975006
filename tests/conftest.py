"""Shared fixtures.

The sandbox EHR runs as its own server process with its own database (like a real EHR, reached only over
HTTP); the app under test uses the test database. Outside CI a missing browser skips the browser test; with
``CI`` set it fails (so does a missing PostgreSQL or Redis, see tests/test_ci_services.py). Every run that skipped
tests ends with one line naming each group and why (tests/skips.py).
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from tests.servers import ROOT, base_env, free_port, gunicorn_command, running, web_env
from tests.skips import pytest_terminal_summary  # noqa: F401  (the hook: one line naming every skipped group)
from tests.staff import staff_login

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture
def admin_client(db: None, admin_user):  # type: ignore[no-untyped-def]
    """pytest-django's ``admin_client`` with a second factor: the superuser's session is verified by a TOTP
    device, as the admin requires (healthcommerce/core/adminsite.py)."""
    from django.test import Client

    return staff_login(Client(), admin_user)


@dataclass
class SandboxEHR:
    """A running sandbox EHR process: ``base`` is ``http://127.0.0.1:<port>``, ``env`` its environment."""

    base: str
    env: dict[str, str]
    proc: subprocess.Popen

    @property
    def fhir_base(self) -> str:
        return f"{self.base}/sandbox/fhir"

    def manage(self, *args: str) -> str:
        """Run a management command against the sandbox's own database; return its stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def fault(self, resource_type: str, kind: str) -> None:
        """Make the sandbox's FHIR API fail for ``resource_type`` (``*`` for all) with ``kind``."""
        self.manage("sandbox_fault", "set", "--type", resource_type, "--kind", kind)

    def clear_faults(self) -> None:
        self.manage("sandbox_fault", "clear")


def _sandbox_db() -> Path:
    """A SQLite file per fixture/migration content, so a warm run skips loading (it only reads it)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "healthcommerce").rglob("*")):
        if path.suffix in (".json", ".py") and ("migrations" in path.parts or "sandbox" in path.parts):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return settings.VAR_DIR / f"sandbox-ehr-{digest.hexdigest()[:16]}.sqlite3"


def _sandbox_env(db: Path, port: int) -> dict[str, str]:
    return base_env(
        SANDBOX_ENABLED="true",
        DATABASE_URL=f"sqlite:///{db}",
        APP_BASE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        SANDBOX_TIMEOUT_SLEEP="3",
    )


def _sandbox_database() -> Path:
    """Return the sandbox's SQLite file, migrated and loaded with the fixtures the first time."""
    db = _sandbox_db()
    if not db.exists():
        tmp = db.with_suffix(".loading")
        tmp.unlink(missing_ok=True)
        loader = SandboxEHR(base="", env=_sandbox_env(tmp, 0), proc=None)  # type: ignore[arg-type]
        loader.manage("migrate", "--noinput", "-v0")
        loader.manage("sandbox_load")
        tmp.rename(db)
    return db


@contextmanager
def sandbox_server(*, database: Path | None = None, **extra_env: str) -> Iterator[SandboxEHR]:
    """Run the sandbox EHR (gunicorn, like production) on a free port over its own SQLite database
    (``database``, default the shared loaded one) until the block ends."""
    port = free_port()
    env = _sandbox_env(database or _sandbox_database(), port) | extra_env
    base = f"http://127.0.0.1:{port}"
    ready = f"{base}/sandbox/fhir/metadata"
    with running(gunicorn_command(), web_env(env, port=port, threads=16), ready_url=ready) as proc:
        yield SandboxEHR(base=base, env=env, proc=proc)


def sandbox_database_copy(target: Path, *extra_dirs: Path) -> Path:
    """Copy the loaded sandbox database to ``target`` and load the FHIR files in ``extra_dirs`` into the copy."""
    shutil.copyfile(_sandbox_database(), target)
    loader = SandboxEHR(base="", env=_sandbox_env(target, 0), proc=None)  # type: ignore[arg-type]
    for folder in extra_dirs:
        loader.manage("sandbox_load", "--dir", str(folder), "--no-client")
    return target


@pytest.fixture(scope="session")
def sandbox_ehr() -> Iterator[SandboxEHR]:
    """The sandbox EHR for the whole session, with no faults injected at the start."""
    with sandbox_server() as sandbox:
        sandbox.clear_faults()
        yield sandbox


@pytest.fixture
def sandbox_faults(sandbox_ehr: SandboxEHR) -> Iterator[SandboxEHR]:
    """The sandbox, with every injected fault cleared after the test."""
    yield sandbox_ehr
    sandbox_ehr.clear_faults()


@pytest.fixture
def ehr_site(db: None, sandbox_ehr: SandboxEHR, settings) -> EHRSite:  # type: ignore[no-untyped-def]
    """An EHR site for the sandbox, registered on both sides as the public client ``test-app``, with the sandbox's
    payer records (``demo_setup.SANDBOX_PAYERS``)."""
    settings.APP_BASE_URL = "http://testserver"
    sandbox_ehr.manage(
        "sandbox_client", "add", "--client-id", "test-app", "--redirect-uri", "http://testserver/smart/callback"
    )
    site = EHRSite.objects.create(name="Sandbox", iss=sandbox_ehr.fhir_base, client_id="test-app")
    sandbox_payers_add(site.name, stdout=io.StringIO())  # Medicare, Medicaid, Private, as the demo
    return site


@dataclass
class LaunchResult:
    """Where a test-client launch ended: the last response and the launch id (when it got that far)."""

    response: object
    launch_id: str | None


def sandbox_launch(
    sandbox: SandboxEHR, *, patient: str, practitioner: str = "pra1234", request: str = ""
) -> dict[str, str]:
    """Ask the sandbox EHR for a launch; return the ``iss`` and ``launch`` it sends to the app."""
    params = {"patient": patient, "practitioner": practitioner} | ({"request": request} if request else {})
    response = requests.get(f"{sandbox.base}/sandbox/launch", params=params, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return {"iss": query["iss"][0], "launch": query["launch"][0]}


def complete_launch(client, sandbox: SandboxEHR, **kwargs: str) -> LaunchResult:  # type: ignore[no-untyped-def]
    """Run a whole EHR launch with Django's test client as the browser and the real sandbox as the EHR."""
    response = client.get("/smart/launch", sandbox_launch(sandbox, **kwargs))
    if response.status_code != 302:
        return LaunchResult(response, None)
    authorize = requests.get(response["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302, authorize.text[:500]
    callback = urlsplit(authorize.headers["Location"])
    response = client.get("/smart/callback?" + callback.query)
    if response.status_code != 302:
        return LaunchResult(response, None)
    launch_id = response["Location"].strip("/").split("/")[-1]
    return LaunchResult(response, launch_id)


STRIPE_WEBHOOK_SECRET = "whsec_healthcommerce_tests"


@pytest.fixture(scope="session")
def localstripe_base() -> Iterator[str]:
    """localstripe on loopback for the session (tests/stripe_server.py); its base URL. Outside CI a missing
    localstripe skips the test; with ``CI`` set it fails."""
    import importlib.util

    from tests.stripe_server import localstripe_server

    if importlib.util.find_spec("localstripe") is None:
        if IN_CI:
            pytest.fail("localstripe is not installed (requirements-dev.txt): the payment tests cannot run")
        pytest.skip("localstripe is not installed (pip install -r requirements-dev.txt)")
    with localstripe_server() as base:
        yield base


@pytest.fixture
def stripe_settings(settings, localstripe_base: str):  # type: ignore[no-untyped-def]
    """Settings that send the app's Stripe calls to localstripe, with test keys and a webhook secret."""
    settings.STRIPE_SECRET_KEY = "sk_test_healthcommerce"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_healthcommerce"
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe_base
    settings.STRIPE_JS_URL = f"{localstripe_base}/js.stripe.com/v3/"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    return settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a transactional test without ``serialized_rollback``: its flush re-creates content types and
    permissions (post_migrate), and every serialized test after it then fails on PostgreSQL restoring them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker and marker.kwargs.get("transaction") and not marker.kwargs.get("serialized_rollback"):
            raise pytest.UsageError(f"{item.nodeid}: use django_db(transaction=True, serialized_rollback=True)")
