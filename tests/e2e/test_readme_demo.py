"""The README's demo, step by step as written, on ``make demo``'s own processes (issue 18): the Makefile's
demo-setup steps, then ``scripts/demo.sh`` on a free port and a folder of its own; a clinician signs in the sandbox
EHR, the patient's link is read off the demo's console (the worker's console email), the patient corrects the
address and pays on localstripe's card page, and the relaunched clinician page shows the order paid and where it
goes. The demo is then stopped as a terminal stops it, and nothing of it may remain."""

import time
from pathlib import Path

import pytest

from tests.demo import (
    demo_kill,
    demo_prepare,
    demo_processes,
    demo_start,
    demo_wait_gone,
    demo_wait_ready,
    kill_leftovers,
    printed_links,
)
from tests.e2e.conftest import wait_for
from tests.e2e.test_checkout import fill_card

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

NEW_STREET = "1600 Sagamore Hill Rd"


def test_the_readme_demo_walks_from_the_sandbox_ehr_to_a_paid_order_with_the_corrected_address(
    browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    demo = demo_prepare(tmp_path / "var")  # make demo-setup: migrate, sandbox_load, demo_setup
    proc = demo_start(demo)  # make demo: scripts/demo.sh
    try:
        demo_wait_ready(demo, proc)
        assert f"Sandbox EHR (start here):  {demo.base}/sandbox/" in demo.console_text()

        # "Pick a practitioner, click Launch healthcommerce next to a pending request (Theodor Roosevelt, pat014,
        # CPAP E0601), review the pre-filled order, add the patient's email if the chart has none, Sign order."
        clinician = browser.new_page()
        clinician.goto(f"{demo.base}/sandbox/")
        clinician.select_option("#practitioner", "pra1234")
        clinician.click("text=Switch user")
        row = clinician.locator("tr", has_text="Patient/pat014")
        assert "Roosevelt" in row.inner_text()
        row.locator(".ehr-order", has_text="E0601").locator("a.ehr-launch").click()
        clinician.wait_for_selector("button#sign")
        assert "E0601" in clinician.inner_text("body")
        if not clinician.input_value("#id_contact_email"):
            clinician.fill("#id_contact_email", "theodor@example.org")
        clinician.click("button#sign")
        clinician.wait_for_selector("#order-status")
        reference = clinician.inner_text("h1").split()[1]
        assert reference.startswith("HC-")

        # "The console email and SMS backends print the patient's purchase link": on the worker's lines, intact.
        link = wait_for(lambda: printed_links(demo), seconds=60)[0]
        assert any(line.startswith("worker.1") and link in line for line in demo.console_text().splitlines())

        # "Open it, enter the date of birth (1946-07-04 for pat014), review and confirm", correcting the address,
        # and pay with 4242 4242 4242 4242 on localstripe's card page.
        patient = browser.new_page()
        patient.goto(link)
        patient.fill("input[type=date]", "1946-07-04")
        patient.click("button[type=submit]")
        patient.wait_for_selector("text=Review your order")
        patient.click("text=Change the address")
        patient.fill("#id_line1", NEW_STREET)
        patient.click("text=Use this address")
        patient.wait_for_selector("#ship-to")
        assert NEW_STREET in patient.inner_text("#ship-to")
        patient.check("input[name=accept_terms]")
        patient.click("text=Continue to payment")
        patient.wait_for_selector("#card-element input")
        fill_card(patient, "4242424242424242")
        patient.click("#pay-button")
        patient.wait_for_selector("text=We received your payment", timeout=60_000)

        # "Relaunching from the EHR shows the status": the order, paid, going to the corrected address.
        clinician.goto(f"{demo.base}/sandbox/?practitioner=pra1234")
        clinician.locator("tr", has_text="Patient/pat014").locator(".ehr-order", has_text="E0601").locator(
            "a.ehr-launch"
        ).click()
        clinician.wait_for_selector(f"text={reference}")
        listed = _relaunched(clinician, seconds=20)
        assert "Paid" in listed, listed[:2000]
        clinician.click(f"text={reference}")
        clinician.wait_for_selector("#order-status")
        assert "Paid" in clinician.inner_text("#order-status")
        assert NEW_STREET in clinician.inner_text("#ship-to")
    finally:
        demo_kill(proc)  # as tests/test_demo_processes.py: TERM to the group, then KILL
        left = demo_wait_gone(demo.var_dir)
        kill_leftovers(demo.var_dir)
    assert left == [], left
    assert demo_processes(demo.var_dir) == []


def _relaunched(page, seconds: float) -> str:  # type: ignore[no-untyped-def]
    """The relaunched clinician page's text once it shows "Paid" (the payment reaches it through the outbox), or as
    it is after ``seconds`` of reloading."""
    deadline = time.monotonic() + seconds
    while "Paid" not in (text := page.inner_text("body")) and time.monotonic() < deadline:
        time.sleep(2)
        page.reload()
    return text
