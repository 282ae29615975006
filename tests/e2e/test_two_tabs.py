"""Several launches in one browser: one clinician (one cookie jar), two tabs, two patients. Each tab keeps its
own launch (its id is in the URL, not only in the session), shows only its own patient, and signing in one tab
leaves the other tab's draft as it was."""

import io

import pytest

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from tests.conftest import sandbox_server
from tests.servers import app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOSEVELT = "Theodor Alan Roosevelt"  # pat014, CPAP DeviceRequest/devreq021
QUINTON = "Quinton"  # pat013 (Vlad Alan Nestor Quinton), CPAP DeviceRequest/devreq033


def _launch(page, ehr_base: str, request_id: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{ehr_base}/sandbox/?practitioner=pra1234")
    page.click(f"a.ehr-launch[href*='{request_id}']")
    page.wait_for_selector("button#sign")


def test_two_tabs_keep_their_own_patient_and_draft(browser, tmp_path):
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with (
        sandbox_server(SANDBOX_APP_LAUNCH_URL=f"{app_url}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=[port], broker_url=isolated_broker_url(8)) as app,
    ):
        ehr.manage("sandbox_client", "add", "--client-id", "tabs-app", "--redirect-uri", f"{app_url}/smart/callback")
        EHRSite.objects.create(name="Sandbox EHR", iss=ehr.fhir_base, client_id="tabs-app")
        sandbox_payers_add("Sandbox EHR", stdout=io.StringIO())  # as demo_setup
        context = browser.new_context()  # one clinician: both tabs share the cookies
        roosevelt_tab, quinton_tab = context.new_page(), context.new_page()
        try:
            _launch(roosevelt_tab, ehr.base, "devreq021")
            _launch(quinton_tab, ehr.base, "devreq033")
        except Exception:
            raise AssertionError(app.log_tail()) from None

        roosevelt_body, quinton_body = roosevelt_tab.inner_text("body"), quinton_tab.inner_text("body")
        assert ROOSEVELT in roosevelt_body and QUINTON not in roosevelt_body
        assert QUINTON in quinton_body and "Roosevelt" not in quinton_body
        roosevelt_url = roosevelt_tab.url
        assert roosevelt_url != quinton_tab.url

        # Sign in the second tab.
        quinton_tab.fill("#id_contact_email", "vlad@example.org")
        quinton_tab.click("button#sign")
        quinton_tab.wait_for_selector("#order-status")
        signed = Order.objects.get(launch__patient_id="pat013")
        assert signed.status != Order.Status.DRAFT and signed.patient_name.endswith(QUINTON)

        # The first tab's draft is untouched: same patient, still a draft, still signable.
        draft = Order.objects.get(launch__patient_id="pat014")
        assert draft.status == Order.Status.DRAFT and draft.contact_email == "" and draft.signed_at is None
        roosevelt_tab.reload()
        roosevelt_tab.wait_for_selector("button#sign")
        body = roosevelt_tab.inner_text("body")
        assert ROOSEVELT in body and QUINTON not in body and roosevelt_tab.url == roosevelt_url
        roosevelt_tab.fill("#id_contact_email", "theodor@example.org")
        roosevelt_tab.click("button#sign")
        roosevelt_tab.wait_for_selector("#order-status")
        draft.refresh_from_db()
        assert draft.status != Order.Status.DRAFT and draft.patient_name.endswith("Roosevelt")
        assert draft.launch_id != signed.launch_id and draft.signed_by.endswith("Practitioner/pra1234")

        # Each order page still shows its own patient after both signatures.
        assert QUINTON in quinton_tab.inner_text("body") and "Roosevelt" not in quinton_tab.inner_text("body")
        context.close()
