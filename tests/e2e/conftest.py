"""Browser end-to-end fixtures: Debian's chromium through Playwright. The app runs as production runs it
(gunicorn, a Celery worker and beat: ``tests.servers.app_cluster``) on the test database, and the sandbox EHR
as its own process."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import IN_CI

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


@pytest.fixture
def browser(transactional_db) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A headless Debian chromium; skipped outside CI when it is not installed, a failure in CI.

    Started after the test database is ready (it depends on ``transactional_db``) and stopped before it is
    flushed: while Playwright's event loop runs on this thread, Django keeps database connections per asyncio
    context, so a restore before it or a connection left open after it would go astray.
    """
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
        connections.close_all()  # the connections the test opened inside Playwright's context
        instance.close()


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Save ``page`` as ``<HC_SCREENSHOTS>/<name>.png`` when ``HC_SCREENSHOTS`` names a folder (the pictures in
    docs/screenshots/ are made this way); otherwise do nothing."""
    folder = os.environ.get("HC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def wait_for(predicate, seconds: float = 60, interval: float = 0.25):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value or ``seconds`` pass; return the value or fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {seconds} s")
