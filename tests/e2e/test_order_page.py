"""The clinician's order form in a real browser (Debian's chromium, desktop size): after a refused Sign the focus is
on the error summary at the top, which links to the field to fix; the form shows what the patient will pay; an item
the EHR request does not map to is signed only once the clinician ticks the confirmation."""

import io

import pytest

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from tests.conftest import sandbox_server
from tests.e2e.conftest import screenshot
from tests.e2e.test_accessibility import WCAG_AA
from tests.servers import app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def focused(page) -> str:  # type: ignore[no-untyped-def]
    """The id of the element that has the focus ("" for the body)."""
    return str(page.evaluate("() => document.activeElement ? document.activeElement.id : ''"))


def serious_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The serious or critical WCAG 2.1 AA violations axe-core finds on ``page`` (as tests/e2e/test_accessibility)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA).response
    return [f"{v['id']} ({v['impact']})" for v in results["violations"] if v["impact"] in ("serious", "critical")]


def test_a_refused_sign_puts_the_focus_on_the_error_summary_which_leads_to_the_field(browser, tmp_path):
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with (
        sandbox_server(SANDBOX_APP_LAUNCH_URL=f"{app_url}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=[port], broker_url=isolated_broker_url(5)) as app,
    ):
        ehr.manage("sandbox_client", "add", "--client-id", "form-app", "--redirect-uri", f"{app_url}/smart/callback")
        EHRSite.objects.create(name="Sandbox EHR", iss=ehr.fhir_base, client_id="form-app")
        sandbox_payers_add("Sandbox EHR", stdout=io.StringIO())  # as demo_setup
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{ehr.base}/sandbox/?practitioner=pra1234")
        page.click("a.ehr-launch[href*='devreq021']")
        try:
            page.wait_for_selector("button#sign")
        except Exception:
            raise AssertionError(app.log_tail()) from None
        assert "$139.80" in page.inner_text("#patient-pays")  # Medicare Part B: 20% of $699.00
        assert page.get_attribute("#id_contact_email", "required") is not None

        page.click("button#sign")  # the chart has no email
        page.wait_for_selector("#error-summary")

        assert focused(page) == "error-summary"
        assert page.evaluate("() => window.scrollY") < 200  # the summary is in view, at the top
        summary = page.inner_text("#error-summary")
        assert "not signed" in summary and "Patient email" in summary
        assert page.get_attribute("#id_contact_email", "aria-invalid") == "true"
        screenshot(page, "order-form-refused")
        assert serious_violations(page) == []
        page.click("#error-summary a[href='#id_contact_email']")
        assert focused(page) == "id_contact_email"
        page.fill("#id_contact_email", "theodor@example.org")

        # A hospital bed is not what the CPAP request asked for: Sign is refused until the clinician confirms it.
        page.select_option(
            "#id_product", label="Hospital bed, fixed height, with side rails and mattress (DME-BED-FIXED)"
        )
        page.click("button#sign")
        page.wait_for_selector("#product-mismatch")
        assert focused(page) == "error-summary"
        assert "E0601" in page.inner_text("#product-mismatch")
        screenshot(page, "order-form-mismatch")
        page.click("#error-summary a[href='#id_confirm_product']")
        assert focused(page) == "id_confirm_product"
        page.check("#id_confirm_product")
        page.click("button#sign")
        page.wait_for_selector("#order-status")
        order = Order.objects.get()
        assert order.status != Order.Status.DRAFT and order.request_code == "E0601"
        assert "E0601" in page.inner_text("#requested") and "the signer confirmed" in page.inner_text("#item")
        screenshot(page, "order-signed-mismatch")
