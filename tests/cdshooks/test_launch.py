"""A card's SMART link, launched from the sandbox EHR's draft-order page, opens the app with the draft order the
card's ``appContext`` names (CDS Hooks 2.0 "Link"; SMART App Launch 2.2 launch context)."""

import html
import json
import re
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from healthcommerce.ehr.models import Launch
from healthcommerce.orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _smart_link(cds_ehr, order: str) -> str:  # type: ignore[no-untyped-def]
    """Open the EHR's draft-order page for ``order`` and return the href of the first card's SMART link."""
    params = {"patient": "pat014", "practitioner": "pra1234", "order": order, "hook": "order-select"}
    page = requests.get(f"{cds_ehr.base}/sandbox/cds", params=params, timeout=30)
    assert page.status_code == 200 and "through healthcommerce" in page.text, page.text[:1000]
    found = re.search(r'<a class="ehr-launch" href="([^"]+)"', page.text)
    assert found, page.text[:2000]
    return cds_ehr.base + html.unescape(found.group(1))


def _launch(client, link: str) -> str:  # type: ignore[no-untyped-def]
    """Click ``link`` in the EHR, follow the app's SMART launch as the browser; return the launch id."""
    ehr = requests.get(link, allow_redirects=False, timeout=10)
    assert ehr.status_code == 302, ehr.text[:500]
    app = urlsplit(ehr.headers["Location"])
    response = client.get(app.path + "?" + app.query)
    assert response.status_code == 302, response.content[:500]
    authorize = requests.get(response["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302, authorize.text[:500]
    response = client.get("/smart/callback?" + urlsplit(authorize.headers["Location"]).query)
    assert response.status_code == 302, response.content[:1000]
    return str(response["Location"].strip("/").split("/")[-1])


def test_the_smart_link_opens_the_order_form_with_the_draft_order_selected(client, cds_site, cds_ehr) -> None:
    launch_id = _launch(client, _smart_link(cds_ehr, "DeviceRequest/devreq021"))
    record = Launch.objects.get(pk=launch_id)
    assert json.loads(record.app_context) == {"draftOrder": "DeviceRequest/devreq021"}
    assert record.fhir_context == []  # the draft order comes from appContext alone
    response = client.get(f"/o/{launch_id}/")
    # pat014 has several pending requests; the card's draft order is the one drafted, and the form opens on it.
    [order] = Order.objects.filter(launch_id=launch_id)
    assert order.request_reference == "DeviceRequest/devreq021" and order.request_code == "E0601"
    assert (response.status_code, response["Location"]) == (302, f"/o/{launch_id}/orders/{order.pk}/")
    form = client.get(response["Location"])
    assert form.status_code == 200 and b"E0601" in form.content


def test_an_app_context_naming_no_request_is_ignored_with_a_warning(client, cds_site, cds_ehr, live_server) -> None:
    params = {
        "patient": "pat014",
        "practitioner": "pra1234",
        "url": f"{live_server.url}/smart/launch",
        "appContext": json.dumps({"draftOrder": "Patient/pat013"}),
    }
    launch_id = _launch(client, f"{cds_ehr.base}/sandbox/cds/launch?{urlencode(params)}")
    page = client.get(f"/o/{launch_id}/")
    assert page.status_code == 200
    assert b"Patient/pat013: the EHR&#x27;s card named no DeviceRequest or ServiceRequest" in page.content
    assert Order.objects.filter(launch_id=launch_id).count() > 1  # every pending request, as without a card


def test_a_draft_order_of_another_patient_is_not_used(client, cds_site, cds_ehr, live_server) -> None:
    params = {
        "patient": "pat014",
        "practitioner": "pra1234",
        "url": f"{live_server.url}/smart/launch",
        "appContext": json.dumps({"draftOrder": "DeviceRequest/devreq013"}),  # pat013's
    }
    launch_id = _launch(client, f"{cds_ehr.base}/sandbox/cds/launch?{urlencode(params)}")
    page = client.get(f"/o/{launch_id}/?all=1")
    warning = b"DeviceRequest/devreq013: the EHR&#x27;s card named it, but it is not one of the patient&#x27;s"
    assert warning in page.content
    assert not Order.objects.filter(launch_id=launch_id, request_reference="DeviceRequest/devreq013").exists()


def test_the_ehr_launches_only_an_allowlisted_smart_link(cds_site, cds_ehr) -> None:
    params = {"patient": "pat014", "practitioner": "pra1234", "url": "https://evil.example/launch", "appContext": "{}"}
    response = requests.get(f"{cds_ehr.base}/sandbox/cds/launch", params=params, allow_redirects=False, timeout=10)
    assert response.status_code == 400 and "not allowlisted" in response.text
