"""Browser end-to-end fixtures: Debian's chromium through Playwright, the app on pytest-django's live server,
the sandbox EHR as its own process, and a real Celery worker process on the test database."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import IN_CI, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Debian chromium; skipped outside CI when it is not installed, a failure in CI."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django's ORM (test code only) is still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _test_database_url() -> str:
    info = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{info['NAME']}"
    user = info.get("USER") or "postgres"
    password = f":{info['PASSWORD']}" if info.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{info.get('HOST') or '127.0.0.1'}:{info.get('PORT') or 5432}/{info['NAME']}"


@pytest.fixture
def celery_worker_process(live_server, tmp_path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """Start a real worker (with beat, for the outbox relay) on the test database; yield the mail folder."""
    mail_dir = tmp_path / "mail"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {
        "DJANGO_SETTINGS_MODULE": "healthcommerce.settings",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_DIR": str(settings.FILESYSTEM_BROKER_DIR),
        "APP_BASE_URL": live_server.url,
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        "HC_VAR_DIR": str(tmp_path / "worker-var"),
    }
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "healthcommerce",
        "worker",
        "--beat",
        "--loglevel=INFO",
        "--concurrency=1",
        "--schedule",
        str(tmp_path / "beat-schedule"),
    ]
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield mail_dir
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if os.environ.get("E2E_SHOW_WORKER_LOG"):
            sys.stderr.write((tmp_path / "worker.log").read_text())


def wait_for(predicate, seconds: float = 60, interval: float = 0.25):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value or ``seconds`` pass; return the value or fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {seconds} s")
