"""A test run that skips tests says so in one line, naming each group and why (tests/skips.py); issue 18: the
browser tests used to be skipped silently when chromium was missing."""

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

TINY = """
import pytest


@pytest.fixture
def browser():
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def test_one_page(browser): pass
def test_another_page(browser): pass


@pytest.mark.skipif(True, reason="the append-only trigger exists on PostgreSQL only")
def test_a_trigger(): pass


def test_scale_out(): pytest.skip("needs PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL); CI runs it")
def test_medusa(): pytest.skip("Node.js is missing; CI runs it")
def test_hl7_peer(): pytest.skip("the HL7 peer needs Node.js 20.15+ (make hl7-peer-setup); CI runs it")
def test_something_else(): pytest.skip("the moon is full")
def test_that_runs(): pass
"""


def _pytest(*args: str, cwd: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "DATABASE_URL", "CELERY_BROKER_URL")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    return done.stdout


def test_the_run_ends_with_one_line_naming_every_group_of_skipped_tests_and_why(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(TINY)

    out = _pytest("-p", "tests.skips", "-p", "no:django", "-p", "no:cacheprovider", "-q", "test_tiny.py", cwd=tmp_path)

    lines = [line for line in out.splitlines() if line.startswith("skipped:")]
    assert lines == [
        "skipped: 2 browser tests (chromium is not installed: apt-get install chromium), "
        "1 HL7 peer test (the HL7 v2 peer is not set up: make hl7-peer-setup (Node.js 20.15+ and npm)), "
        "1 Medusa test (Medusa is not set up: make medusa-setup (Node.js 20.19+, npm and PostgreSQL)), "
        "2 PostgreSQL/Redis tests (they need PostgreSQL and Redis: set DATABASE_URL and CELERY_BROKER_URL as "
        ".ci/run does), 1 test (the moon is full)"
    ], out
    assert "1 passed, 7 skipped" in out


def test_the_suites_own_conftest_prints_the_line() -> None:
    out = _pytest("-q", "tests/test_ci_services.py", cwd=ROOT)  # outside CI its three tests are skipped

    assert "skipped: 3 PostgreSQL/Redis tests (they need PostgreSQL and Redis" in out, out
