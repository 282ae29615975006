"""End to end in a real browser, issue 21: the clinician signs an order for a patient whose coverage the payer says
is not active; a real worker asks the payer (an X12 270 to the sandbox's stand-in clearinghouse, over HTTP) after
sign-off; the patient, on a phone, is told plainly that the insurance will not pay and is offered the full price;
the clinician relaunching from the EHR is told too. The app runs under gunicorn with a worker and beat."""

import io

import pytest

from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order, OrderEvent
from tests.conftest import sandbox_server
from tests.e2e.conftest import screenshot, wait_for
from tests.e2e.test_order_journey import _purchase_link
from tests.peers.clearinghouse import eligibility_on
from tests.servers import app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_an_inactive_coverage_offers_the_patient_self_pay_and_tells_the_clinician(browser, tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with (
        sandbox_server(SANDBOX_APP_LAUNCH_URL=f"{app_url}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=[port], broker_url=isolated_broker_url(3)) as app,
    ):
        ehr.manage("sandbox_client", "add", "--client-id", "e2e-app", "--redirect-uri", f"{app_url}/smart/callback")
        site = EHRSite.objects.create(name="Sandbox EHR", iss=ehr.fhir_base, client_id="e2e-app")
        sandbox_payers_add("Sandbox EHR", stdout=io.StringIO())
        eligibility_on(site, f"{ehr.base}/sandbox/clearinghouse/x12")
        page = browser.new_page()

        # William Oster (pat015), bi-level RAD E0470: Medicare from the chart's coverage, not asked yet.
        page.goto(f"{ehr.base}/sandbox/?practitioner=pra1234")
        page.click("a.ehr-launch[href*='devreqe0470']")
        page.wait_for_selector("button#sign")
        assert page.eval_on_selector("#id_payer", "s => s.selectedOptions[0].textContent") == "Medicare"
        assert "Medicare is asked when the order is signed" in page.inner_text("#coverage-status")
        screenshot(page, "coverage-1-order-form")
        page.fill("#id_contact_email", "william@example.org")
        page.click("button#sign")
        page.wait_for_selector("#order-status")

        # The worker asks the payer after sign-off: not active.
        order = Order.objects.get()
        wait_for(lambda: OrderEvent.objects.filter(order=order, kind="coverage_inactive").exists(), seconds=90)
        assert EligibilityCheck.objects.get().outcome == "inactive"
        link_url = wait_for(lambda: _purchase_link(app.mail_dir, app_url), seconds=60)

        # The patient, on a phone, sees that the insurance will not pay, and the full price.
        patient = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        patient.goto(link_url)
        patient.fill("input[type=date]", "2015-02-23")
        patient.click("button[type=submit]")
        patient.wait_for_selector("#coverage-inactive")
        assert "Your insurance will not pay for this order" in patient.inner_text("#coverage-inactive")
        assert "$1,499.00" in patient.inner_text("#you-pay")
        assert "Coverage not active" in patient.inner_text("#you-pay")
        screenshot(patient, "coverage-2-patient-inactive")

        # The clinician relaunching from the EHR is told.
        page.goto(f"{ehr.base}/sandbox/?practitioner=pra1234")
        page.click("a.ehr-launch[href*='devreqe0470']")
        page.wait_for_selector("text=NOT active")
        screenshot(page, "coverage-3-relaunch")
        assert "the patient was offered self-pay" in page.inner_text("body"), app.log_tail()
