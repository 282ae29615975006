"""A real Medusa 2 server per test module, on a free loopback port, over a fresh copy of the template database
that ``make medusa-setup`` builds (``CREATE DATABASE ... TEMPLATE hc_medusa_template``; docs/adr/0007).

Needs Node.js, PostgreSQL (``MEDUSA_PG_URL``, default ``postgres://postgres@127.0.0.1:5432``) and the installed
Medusa with its seed (``$HC_VAR_DIR/medusa/seed.json``): skipped without them outside CI, a failure in CI.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings

from tests.conftest import IN_CI
from tests.fulfillment.conftest import backend_options_set
from tests.servers import ROOT, free_port, wait_http

MEDUSA_DIR = ROOT / "commerce" / "medusa"
MEDUSA_BIN = MEDUSA_DIR / "node_modules" / ".bin" / "medusa"
PG_URL = os.environ.get("MEDUSA_PG_URL", "postgres://postgres@127.0.0.1:5432")
TEMPLATE = os.environ.get("MEDUSA_TEMPLATE_DB", "hc_medusa_template")


def seed_path() -> Path:
    return Path(settings.VAR_DIR) / "medusa" / "seed.json"


def _missing() -> str | None:
    """Why a Medusa server cannot start here, or ``None``."""
    if not shutil.which("node"):
        return "Node.js is missing"
    if not MEDUSA_BIN.exists():
        return "Medusa is not installed (make medusa-setup)"
    if not seed_path().exists():
        return f"{seed_path()} is missing (make medusa-setup)"
    try:
        with psycopg.connect(f"{PG_URL}/postgres", connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [TEMPLATE]
            ).fetchone()
    except psycopg.Error:
        return f"PostgreSQL is not reachable at {PG_URL}"
    if row is None:
        return f"the template database {TEMPLATE} is missing (make medusa-setup)"
    build_id = str(row[0] or "").partition(":")[2]
    if json.loads(seed_path().read_text()).get("build_id") != build_id:
        return f"{seed_path()} does not belong to {TEMPLATE} (make medusa-setup)"
    return None


def require_medusa() -> None:
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason + "; CI runs it")


@dataclass
class MedusaServer:
    """A running Medusa: ``url`` is ``http://127.0.0.1:<port>``, ``seed`` the ids and key of the template."""

    url: str
    seed: dict[str, str]
    proc: subprocess.Popen
    database: str

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the Admin API directly with the secret key (Basic auth), as the merchant's tools would."""
        return requests.request(method, f"{self.url}{path}", auth=(self.seed["api_key"], ""), timeout=30, **kwargs)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but never answers."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)


def _admin_sql(sql: str) -> None:
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def medusa_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[MedusaServer]:
    """Start Medusa over a new copy of the template database; stop it and drop the copy after the module.

    A test module may add environment variables for Medusa in ``MEDUSA_EXTRA_ENV`` (a dict)."""
    require_medusa()
    seed = json.loads(seed_path().read_text())
    database = f"hc_medusa_test_{secrets.token_hex(4)}"
    _admin_sql(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"')
    port = free_port()
    log = tmp_path_factory.mktemp("medusa") / "medusa.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": f"{PG_URL}/{database}",
        "JWT_SECRET": secrets.token_hex(32),
        "COOKIE_SECRET": secrets.token_hex(32),
        "MEDUSA_DISABLE_TELEMETRY": "true",
        "NODE_ENV": "production",
        **getattr(request.module, "MEDUSA_EXTRA_ENV", {}),
    }
    cmd = [str(MEDUSA_BIN), "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=MEDUSA_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = MedusaServer(url=f"http://127.0.0.1:{port}", seed=seed, proc=proc, database=database)
    try:
        wait_http(f"{server.url}/health", proc, seconds=90, log=log)
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def medusa(medusa_server: MedusaServer, settings: Any) -> MedusaServer:
    """The module's Medusa, with the ``medusa`` backend's options pointing at it."""
    backend_options_set(
        settings,
        "medusa",
        URL=medusa_server.url,
        API_KEY=medusa_server.seed["api_key"],
        REGION_ID=medusa_server.seed["region_id"],
        SALES_CHANNEL_ID=medusa_server.seed["sales_channel_id"],
        SHIPPING_OPTION_ID=medusa_server.seed["shipping_option_id"],
    )
    return medusa_server
