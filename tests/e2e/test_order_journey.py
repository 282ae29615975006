"""End to end in a real browser: sandbox EHR launch -> pre-filled form -> sign -> real Celery worker ->
purchase link email -> patient confirms. The app runs under gunicorn with a worker and beat, as in production;
against PostgreSQL and Redis in CI (.ci/run)."""

import io
import re
import time

import pytest

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.conftest import sandbox_server
from tests.e2e.conftest import screenshot, wait_for
from tests.e2e.test_checkout import fill_card
from tests.servers import app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _purchase_link(mail_dir, base_url: str) -> str:
    for path in sorted(mail_dir.glob("*.log")) if mail_dir.exists() else []:
        found = re.search(re.escape(base_url) + r"/p/[A-Za-z0-9_\-]+/", path.read_text())
        if found:
            return found.group(0)
    return ""


def test_a_clinician_signs_the_prefilled_cpap_order_and_the_patient_completes_the_link(
    browser, tmp_path, localstripe_base
):
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    stripe = {
        "STRIPE_SECRET_KEY": "sk_test_e2e",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_e2e",
        "STRIPE_WEBHOOK_SECRET": "whsec_ZTJlLW9ubHktZTJlLW9ubHk=",
        "STRIPE_API_BASE": localstripe_base,
        "STRIPE_JS_URL": f"{localstripe_base}/js.stripe.com/v3/",
    }
    with (
        sandbox_server(SANDBOX_APP_LAUNCH_URL=f"{app_url}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=[port], broker_url=isolated_broker_url(2), **stripe) as app,
    ):
        ehr.manage("sandbox_client", "add", "--client-id", "e2e-app", "--redirect-uri", f"{app_url}/smart/callback")
        EHRSite.objects.create(name="Sandbox EHR", iss=ehr.fhir_base, client_id="e2e-app")
        sandbox_payers_add("Sandbox EHR", stdout=io.StringIO())  # as demo_setup: Medicare is Organization/org1234
        page = browser.new_page()

        # The clinician, signed in to the EHR as pra1234, launches the app on pat014's CPAP request.
        page.goto(f"{ehr.base}/sandbox/?practitioner=pra1234")
        started = time.monotonic()
        page.click("a.ehr-launch[href*='devreq021']")
        page.wait_for_selector("button#sign")
        launch_to_form = time.monotonic() - started
        body = page.inner_text("body")
        assert "E0601" in body and "Theodor Alan Roosevelt" in body
        assert page.input_value("#id_city") == "McLean" and page.input_value("#id_line1") == "7525 Colshire Dr"
        # the chart's coverage (payor Organization/org1234, class "Medicare Part B") is the Medicare record, picked
        assert page.eval_on_selector("#id_payer", "s => s.selectedOptions[0].textContent") == "Medicare"
        assert "The chart's coverage: Medicare Part B" in body
        assert "1122334455" in body  # practitioner NPI
        assert "$139.80" in page.inner_text("#patient-pays")  # what the patient will owe, before signing
        screenshot(page, "1-order-form")

        # The chart has no email: Sign is refused, the focus goes to the summary at the top that says why.
        page.click("button#sign")
        page.wait_for_selector("#error-summary")
        assert page.evaluate("() => document.activeElement.id") == "error-summary"
        screenshot(page, "2-sign-refused")
        page.fill("#id_contact_email", "theodor@example.org")
        page.click("button#sign")
        try:
            page.wait_for_selector("#order-status")
        except Exception:  # show what the clinician saw, and what the processes logged
            raise AssertionError(page.inner_text("body")[:2000] + "\n" + app.log_tail()) from None
        order = Order.objects.get()
        assert order.signed_by.endswith("Practitioner/pra1234") and len(order.content_hash) == 64

        # A real worker hands the minimized order to the local backend and emails the purchase link.
        wait_for(lambda: Order.objects.get().status == Order.Status.SUBMITTED, seconds=90)
        link_url = wait_for(lambda: _purchase_link(app.mail_dir, app_url), seconds=30)
        local = LocalCommerceOrder.objects.get()
        assert local.order_reference == order.reference
        assert "Roosevelt" in str(local.payload) and "E0601" not in str(local.payload)

        # The patient opens the link, gets the birth date wrong once, then right, and confirms.
        patient = browser.new_page()
        patient.goto(link_url)
        assert patient.url.endswith("/p/verify/")  # the token left the address bar at once
        patient.fill("input[type=date]", "1950-01-01")
        patient.click("button[type=submit]")
        assert "could not confirm that date of birth" in patient.inner_text("body")
        patient.fill("input[type=date]", "1946-07-04")
        patient.click("button[type=submit]")
        patient.wait_for_selector("text=Review your order")
        assert "7525 Colshire Dr" in patient.inner_text("body")
        assert "20%" in patient.inner_text("#you-pay")  # Medicare Part B: the seeded coinsurance rule
        # The patient moved: they correct the ship-to before paying.
        patient.click("text=Change the address")
        patient.fill("input[name=line1]", "40 Pleasant St")
        patient.fill("input[name=city]", "Bangor")
        patient.select_option("select[name=state]", "ME")
        patient.fill("input[name=postal_code]", "04401")
        patient.click("button[type=submit]")
        patient.wait_for_selector("text=Review your order")
        assert "40 Pleasant St" in patient.inner_text("#ship-to")
        patient.check("input[name=accept_terms]")
        patient.click("text=Continue to payment")
        patient.wait_for_selector("#card-element input")
        fill_card(patient, "4242424242424242")
        patient.click("#pay-button")
        patient.wait_for_selector("text=We received your payment")
        assert PurchaseLink.objects.get().completed_at is not None
        # The confirmation reaches the backend through the outbox (order.patient_confirmed), a moment later.
        confirmed = LocalCommerceOrder.Status.CONFIRMED
        wait_for(lambda: LocalCommerceOrder.objects.get().status == confirmed, seconds=60)

        # Relaunching shows the clinician the order's status in plain words, and where it will go.
        page.goto(f"{ehr.base}/sandbox/?practitioner=pra1234")
        page.click("a.ehr-launch[href*='devreq021']")
        page.wait_for_selector(f"text={order.reference}")
        assert "Paid $139.80" in page.inner_text("body")
        screenshot(page, "3-relaunch-list")
        page.click(f"text={order.reference}")
        page.wait_for_selector("#order-status")
        assert page.inner_text("#order-status") == "Paid $139.80"
        ship_to = page.inner_text("#ship-to")
        assert "40 Pleasant St, Bangor, ME 04401" in ship_to and "Corrected by the patient on" in ship_to
        screenshot(page, "4-relaunch-order")
        print(f"\nlaunch-to-form: {launch_to_form:.2f} s")
