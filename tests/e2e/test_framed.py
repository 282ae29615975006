"""The app framed inside the EHR, as Epic Hyperspace shows a SMART app (ADR 0005).

The sandbox EHR's page is loaded at ``http://localhost:<ehr port>`` and frames the app, served over https by
gunicorn with a certificate made for this test at ``https://127.0.0.1:<app port>``: another site, so the app's
cookies reach it only as ``SameSite=None; Secure``, and, since this Chromium blocks third-party cookies, only
``Partitioned``; and the app's CSP must name the EHR's origin in ``frame-ancestors``. The clinician signs the
pre-filled order inside the frame.
"""

import io

import pytest
import requests

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from tests.conftest import sandbox_server
from tests.servers import app_cluster, free_port, isolated_broker_url, self_signed_certificate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_clinician_signs_the_order_inside_the_ehr_frame(browser, tmp_path):
    cert = self_signed_certificate(tmp_path / "tls")
    port = free_port()
    app_url = f"https://127.0.0.1:{port}"
    with (
        sandbox_server(SANDBOX_APP_LAUNCH_URL=f"{app_url}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=[port], broker_url=isolated_broker_url(6), tls=cert, SECURE_COOKIES="true") as app,
    ):
        ehr_origin = ehr.base.replace("127.0.0.1", "localhost")  # the same server, seen as another site
        ehr.manage("sandbox_client", "add", "--client-id", "framed-app", "--redirect-uri", f"{app_url}/smart/callback")
        # The EHR sends iss from the host the browser used; the site lists the EHR page's origin as a frame parent.
        EHRSite.objects.create(
            name="Sandbox EHR", iss=f"{ehr_origin}/sandbox/fhir", client_id="framed-app", frame_origins=[ehr_origin]
        )
        sandbox_payers_add("Sandbox EHR", stdout=io.StringIO())  # as demo_setup
        # Playwright's default context: third-party cookies blocked, as in this Chromium and in Safari.
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        blocked: list[str] = []
        page.on(
            "console",
            lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
        )
        responses: list = []
        page.on("response", lambda response: responses.append(response))

        # Signed in to the EHR as pra1234, in the mode that opens apps inside the EHR, on pat014's CPAP request.
        page.goto(f"{ehr_origin}/sandbox/?practitioner=pra1234&framed=1")
        page.click("a.ehr-launch[href*='devreq021']")
        frame = page.frame_locator("iframe#app-frame")
        try:
            frame.locator("button#sign").wait_for()
        except Exception:  # show what the clinician saw, and what the processes logged
            raise AssertionError(page.content()[:2000] + "\n" + app.log_tail()) from None
        assert page.url.startswith(f"{ehr_origin}/sandbox/frame?")  # the EHR stays the top-level page
        assert "Roosevelt" in page.inner_text("#ehr-patient")
        assert "Theodor Alan Roosevelt" in frame.locator("body").inner_text()
        assert frame.locator("#id_city").input_value() == "McLean"

        # The framed page names the EHR's origin; the cookies are cross-site ones.
        framed = [r for r in responses if r.url.startswith(f"{app_url}/o/") and r.status == 200]
        assert framed, [r.url for r in responses]
        policy = framed[-1].header_value("content-security-policy") or ""
        assert f"frame-ancestors {ehr_origin}" in policy and "unsafe-inline" not in policy
        assert framed[-1].header_value("x-frame-options") is None
        cookies = {c["name"]: c for c in context.cookies(app_url)}
        session = cookies["__Host-hc_session"]
        assert session["sameSite"] == "None" and session["secure"] is True
        assert session.get("partitionKey") == "http://localhost"  # CHIPS: kept under the EHR's top-level site

        # The EHR's style (smart_style_url) colours the app without inline styles: color_highlight #1f6feb.
        background = frame.locator("button#sign").evaluate("button => getComputedStyle(button).backgroundColor")
        assert background == "rgb(31, 111, 235)"
        page.screenshot(path=str(tmp_path / "framed-order-form.png"), full_page=True)

        # The chart has no email: the clinician adds it and signs, all inside the frame.
        frame.locator("#id_contact_email").fill("theodor@example.org")
        frame.locator("button#sign").click()
        try:
            frame.locator("#order-status").wait_for()
        except Exception:
            raise AssertionError(frame.locator("body").inner_text()[:2000] + "\n" + app.log_tail()) from None
        order = Order.objects.get()
        assert order.status != Order.Status.DRAFT and order.signed_by.endswith("Practitioner/pra1234")
        assert blocked == []  # nothing the pages use was refused by a Content-Security-Policy

        # Any page outside /smart/ and /o/ refuses every frame.
        home = requests.get(f"{app_url}/", timeout=10, verify=str(cert.certfile))
        assert "frame-ancestors 'none'" in home.headers["Content-Security-Policy"]
        assert home.headers["X-Frame-Options"] == "DENY"
        context.close()
