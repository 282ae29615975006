"""The clinician's launch page as it is walked: several launches of one patient, an EHR outage during pre-fill, the
patient banner, and a launch that names one request. Django's test client as the browser(s), the real sandbox EHR
over HTTP."""

import re
import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from healthcommerce.ehr.models import Launch
from healthcommerce.orders import services
from healthcommerce.orders.models import Order
from tests.conftest import SandboxEHR, complete_launch

NAME = "Theodor Alan Roosevelt"  # pat014
CPAP = "DeviceRequest/devreq021"  # pat014's CPAP (E0601)
BILEVEL = "DeviceRequest/devreq020"  # pat014's bi-level device (E0470)


def launch_id(client: Any, sandbox: SandboxEHR, **kwargs: str) -> str:
    result = complete_launch(client, sandbox, patient="pat014", **kwargs)
    assert result.launch_id, getattr(result.response, "content", b"")[:500]
    return result.launch_id


def banner_name(html: str) -> str:
    match = re.search(r'<div class="banner" aria-label="Patient">\s*<span><strong>([^<]*)</strong>', html)
    assert match, html[:2000]
    return match.group(1)


def listed_requests(html: str) -> set[str]:
    """The requests the page lists as drafts to review (the first table)."""
    drafts = html.split("<h1>Orders to review</h1>", 1)[1].split("</section>", 1)[0]
    return set(re.findall(r'data-request-ref="([^"]+)"', drafts))


# --- Several launches of one patient -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_browsers_launch_of_the_patient_leaves_the_first_pages_drafts_and_banner(ehr_site, sandbox_ehr):
    first, second = Client(), Client()
    first_id = launch_id(first, sandbox_ehr)
    before = first.get(f"/o/{first_id}/").content.decode()
    assert CPAP in listed_requests(before) and banner_name(before) == NAME

    second_id = launch_id(second, sandbox_ehr)
    theirs = second.get(f"/o/{second_id}/").content.decode()

    mine = first.get(f"/o/{first_id}/").content.decode()
    assert "There is nothing new to order for this patient" not in mine
    assert listed_requests(mine) == listed_requests(before) == listed_requests(theirs)
    assert banner_name(mine) == banner_name(theirs) == NAME
    # One draft per request, shared by both launches: signing it in one browser signs it once.
    assert Order.objects.filter(request_reference=CPAP, status=Order.Status.DRAFT).count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_launches_of_one_patient_all_show_the_request(ehr_site, sandbox_ehr):
    pages: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def clinician() -> None:
        try:
            browser = Client()
            start.wait(timeout=30)
            mine = launch_id(browser, sandbox_ehr)
            for _ in range(4):
                pages.append((mine, browser.get(f"/o/{mine}/").content.decode()))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=clinician) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(pages) == 20
    for mine, html in pages:
        assert CPAP in listed_requests(html), f"launch {mine}: {html[:1500]}"
        assert banner_name(html) == NAME


# --- An EHR outage during pre-fill ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["503", "timeout"])
def test_an_outage_during_pre_fill_is_not_frozen_in_and_a_reload_pre_fills(client, ehr_site, sandbox_faults, kind):
    launch = launch_id(client, sandbox_faults, request=CPAP)
    sandbox_faults.fault("*", kind)

    down = client.get(f"/o/{launch}/")

    html = down.content.decode()
    assert down.status_code == 503 and "could not be reached" in html and "Reload this page" in html
    assert "No request found" not in html and "try again in a moment" not in html
    assert not Order.objects.filter(launch_id=launch).exists()
    assert Launch.objects.get(pk=launch).prefilled_at is None  # nothing recorded: the next visit reads again

    sandbox_faults.clear_faults()
    back = client.get(f"/o/{launch}/", follow=True)

    html = back.content.decode()
    assert back.status_code == 200 and 'id="sign"' in html  # straight to the CPAP form
    assert Order.objects.get(launch_id=launch).request_code == "E0601"
    assert banner_name(html) == NAME and "try again in a moment" not in html
    path = back.request["PATH_INFO"]
    assert b"Read again from the EHR." in client.post(path, {"action": "reread"}, follow=True).content


@pytest.mark.django_db
def test_a_failed_request_search_never_says_no_request_found(client, ehr_site, sandbox_faults):
    sandbox_faults.fault("DeviceRequest", "403")
    launch = launch_id(client, sandbox_faults)

    html = client.get(f"/o/{launch}/?all=1").content.decode()

    assert "No request found" not in html
    assert "requests could not be read" in html and "did not allow access" in html


# --- The banner and a launch naming one request --------------------------------------------------------------


def sign_cpap(sandbox: SandboxEHR) -> None:
    """Sign pat014's CPAP order in a launch of its own, as an earlier visit would have."""
    browser = Client()
    earlier = launch_id(browser, sandbox, request=CPAP)
    browser.get(f"/o/{earlier}/")
    launch = Launch.objects.select_related("site").get(pk=earlier)
    order = Order.objects.get(launch=launch, request_reference=CPAP)
    services.order_edit(order=order, launch=launch, changes={"contact_email": "teddy@example.org"}, sign=True)


@pytest.mark.django_db
def test_the_banner_names_the_patient_when_the_launch_has_no_draft(client, ehr_site, sandbox_ehr):
    sign_cpap(sandbox_ehr)
    launch = launch_id(client, sandbox_ehr, request=CPAP)  # already signed: no new draft

    page = client.get(f"/o/{launch}/", follow=True)

    html = page.content.decode()
    assert not Order.objects.filter(launch_id=launch).exists()
    assert banner_name(html) == NAME
    assert Launch.objects.get(pk=launch).patient_name == NAME


@pytest.mark.django_db
def test_a_launch_naming_one_request_opens_its_form_even_with_earlier_orders(client, ehr_site, sandbox_ehr):
    sign_cpap(sandbox_ehr)
    launch = launch_id(client, sandbox_ehr, request=BILEVEL)

    first = client.get(f"/o/{launch}/")

    draft = Order.objects.get(launch_id=launch)
    assert draft.request_reference == BILEVEL
    assert first.status_code == 302 and first["Location"] == f"/o/{launch}/orders/{draft.pk}/"
    form = client.get(first["Location"]).content.decode()
    assert 'id="sign"' in form and f'href="/o/{launch}/"' in form  # "All orders for this patient"
    listing = client.get(f"/o/{launch}/").content.decode()  # the earlier orders are one click away
    assert "Earlier orders" in listing and BILEVEL in listed_requests(listing)


@pytest.mark.django_db
def test_re_read_during_an_outage_changes_nothing_and_says_to_try_again(client, ehr_site, sandbox_faults):
    launch = launch_id(client, sandbox_faults, request=CPAP)
    path = client.get(f"/o/{launch}/", follow=True).request["PATH_INFO"]
    before = Launch.objects.get(pk=launch).prefill_outcomes
    sandbox_faults.fault("*", "503")

    page = client.post(path, {"action": "reread"}, follow=True)

    html = page.content.decode()
    assert "nothing was changed" in html and "try Re-read again in a moment" in html
    assert "session has ended" not in html
    assert Launch.objects.get(pk=launch).prefill_outcomes == before
    assert Order.objects.get(launch_id=launch).request_code == "E0601"
