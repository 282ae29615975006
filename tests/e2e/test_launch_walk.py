"""The clinician's launch path walked in Debian's chromium, on the demo's layout: the sandbox EHR mounted in the
app's own gunicorn over the app's database (``make demo-setup``'s ``sandbox_load`` and ``demo_setup``), with
short-lived access tokens so every read goes through a refresh. Two browsers on one patient, Re-read with its
"reading" feedback, and an EHR outage during pre-fill that a reload recovers from."""

import base64
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.e2e.conftest import screenshot
from tests.servers import app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

NAME = "Theodor Alan Roosevelt"  # pat014


def _screenshot_now(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """As ``screenshot``, but of what the page shows this instant (Playwright's own waits for a navigation in
    flight): through the DevTools protocol."""
    folder = os.environ.get("HC_SCREENSHOTS")
    if folder:
        shot = page.context.new_cdp_session(page).send("Page.captureScreenshot")
        (Path(folder) / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def test_the_clinicians_launch_walk_in_the_demo_layout(browser, tmp_path, settings):
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    settings.APP_BASE_URL = app_url
    call_command("sandbox_load", stdout=StringIO())
    call_command("demo_setup", stdout=StringIO())
    with app_cluster(
        tmp_path,
        ports=[port],
        broker_url=isolated_broker_url(9),
        SANDBOX_TOKEN_TTL="20",  # under the 30 s refresh margin: each read first renews the token
        SANDBOX_LATENCY_MS="700",  # an EHR far away: a Re-read lasts long enough to see its feedback
    ) as app:
        # Two clinicians' browsers; the first lets the test read the page's state while a form is submitting.
        first, second = browser.new_context(bypass_csp=True), browser.new_context()
        a, b = first.new_page(), second.new_page()
        patient_launch = f"{app_url}/sandbox/launch?patient=pat014&practitioner=pra1234"
        try:
            a.goto(patient_launch)
            a.wait_for_selector("h1:has-text('Orders to review')")
            before = a.inner_text("body")
            screenshot(a, "launch-01-browser-a-list")
            b.goto(patient_launch)
            b.wait_for_selector("h1:has-text('Orders to review')")
            screenshot(b, "launch-02-browser-b-list")
            a.reload()
            a.wait_for_selector("h1:has-text('Orders to review')")
        except Exception:
            raise AssertionError(app.log_tail()) from None
        after = a.inner_text("body")
        screenshot(a, "launch-03-browser-a-after-b")
        assert "There is nothing new to order" not in after and NAME in after
        assert "CPAP" in after and "CPAP" in before

        # Re-read from the EHR on the CPAP draft: it says it is reading, then that it read.
        a.click("tr[data-request-ref='DeviceRequest/devreq021'] a.button")
        a.wait_for_selector("button#reread")
        a.click("button#reread", no_wait_after=True)
        busy = a.evaluate(
            "() => new Promise(done => setTimeout(() => { const b = document.getElementById('reread'); "
            "done([b.disabled, b.textContent]); }, 100))"
        )
        assert busy == [True, "Reading from the EHR…"], busy
        _screenshot_now(a, "launch-04-reread-running")
        a.wait_for_selector("text=Read again from the EHR.", timeout=15000)
        screenshot(a, "launch-05-reread-done")
        assert "session has ended" not in a.inner_text("body")

        # An outage of the EHR's FHIR API during a launch's pre-fill, then a reload once it answers.
        call_command("sandbox_fault", "set", "--type", "*", "--kind", "503", stdout=StringIO())
        try:
            b.goto(f"{app_url}/sandbox/launch?patient=pat013&practitioner=pra1234&request=DeviceRequest/devreq033")
            b.wait_for_selector("h1:has-text('The EHR could not be reached')")
        finally:
            call_command("sandbox_fault", "clear", stdout=StringIO())
        down = b.inner_text("body")
        screenshot(b, "launch-06-outage")
        assert "Reload this page" in down and "No request found" not in down
        b.reload()
        b.wait_for_selector("button#sign")
        screenshot(b, "launch-07-outage-reloaded")
        assert "Quinton" in b.inner_text(".banner") and "try again in a moment" not in b.inner_text("body")
        first.close()
        second.close()
