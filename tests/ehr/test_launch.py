"""SMART EHR launch against the sandbox EHR over HTTP (SMART App Launch 2.2 "App Launch")."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import Launch
from tests.conftest import complete_launch, sandbox_launch

pytestmark = pytest.mark.django_db


def test_it_refuses_an_unknown_iss_without_any_outbound_request(client, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("no outbound request may be made for an unknown iss")

    monkeypatch.setattr(requests.Session, "request", no_network)
    response = client.get("/smart/launch", {"iss": "https://evil.example/fhir", "launch": "abc"})
    assert response.status_code == 400
    assert b"not registered" in response.content
    assert Launch.objects.count() == 0


def test_it_redirects_to_authorize_with_pkce_state_aud_and_launch(client, ehr_site, sandbox_ehr):
    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    launch = Launch.objects.get()
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["state"] == [launch.state] and len(launch.state) >= 43  # 256 bits, base64url
    assert query["aud"] == [ehr_site.iss]
    assert query["launch"] == [launch.launch_token]
    assert "launch" in query["scope"][0].split() and "openid" in query["scope"][0].split()
    assert launch.code_verifier not in response["Location"]


def test_it_completes_a_launch_and_keeps_tokens_server_side(client, ehr_site, sandbox_ehr):
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert result.launch_id
    launch = Launch.objects.get(pk=result.launch_id)
    assert launch.status == Launch.Status.ACTIVE
    assert launch.patient_id == "pat014"
    assert launch.fhir_user.endswith("Practitioner/pra1234")
    assert launch.fhir_context == [{"reference": "DeviceRequest/devreq021"}]
    assert launch.access_token
    page = client.get(result.response["Location"], follow=True)
    assert launch.access_token.encode() not in page.content
    assert all(launch.access_token not in c.value for c in client.cookies.values())
    assert AuditEvent.objects.filter(action="smart.launch", outcome="success").exists()


def test_it_refuses_a_missing_state(client, ehr_site):
    response = client.get("/smart/callback", {"code": "x"})
    assert response.status_code == 400
    assert b"launch the app again" in response.content


def test_it_refuses_a_replayed_state(client, ehr_site, sandbox_ehr):
    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    authorize = requests.get(response["Location"], allow_redirects=False, timeout=10)
    query = urlsplit(authorize.headers["Location"]).query
    assert client.get("/smart/callback?" + query).status_code == 302
    replay = client.get("/smart/callback?" + query)
    assert replay.status_code == 400


def test_it_refuses_a_state_from_another_browser(client, django_user_model, ehr_site, sandbox_ehr):
    from django.test import Client

    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    authorize = requests.get(response["Location"], allow_redirects=False, timeout=10)
    other_browser = Client()
    stolen = other_browser.get("/smart/callback?" + urlsplit(authorize.headers["Location"]).query)
    assert stolen.status_code == 400
    assert Launch.objects.get().status == Launch.Status.AUTHORIZING


def test_it_shows_an_error_returned_to_the_callback(client, ehr_site, sandbox_ehr):
    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
    denied = client.get("/smart/callback", {"state": state, "error": "access_denied", "error_description": "<b>x</b>"})
    assert denied.status_code == 400
    assert b"did not authorize" in denied.content
    assert b"<b>x</b>" not in denied.content
    assert Launch.objects.get().error_code == "authorize_access_denied"


def test_it_keeps_two_launches_in_one_browser_apart(client, ehr_site, sandbox_ehr):
    first = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    second = complete_launch(client, sandbox_ehr, patient="pat013")
    assert first.launch_id != second.launch_id
    assert Launch.objects.get(pk=first.launch_id).patient_id == "pat014"
    assert Launch.objects.get(pk=second.launch_id).patient_id == "pat013"
    assert client.get(f"/o/{first.launch_id}/", follow=True).status_code == 200
    assert client.get(f"/o/{second.launch_id}/", follow=True).status_code == 200


def test_a_launch_id_is_useless_in_another_browser(client, ehr_site, sandbox_ehr):
    from django.test import Client

    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert Client().get(f"/o/{result.launch_id}/").status_code == 404


def test_it_compares_granted_scopes_with_requested_ones_across_case_and_versions():
    from healthcommerce.ehr.services import scopes_missing

    requested = "launch openid fhirUser patient/Patient.rs patient/Coverage.rs user/Practitioner.rs"
    granted = "launch openid fhirUser patient/Patient.Read user/Practitioner.read"
    assert scopes_missing(requested=requested, granted=granted) == ["patient/Coverage.rs"]
    assert (
        scopes_missing(requested=requested, granted="launch openid fhirUser patient/*.read user/Practitioner.rs") == []
    )


def test_scopes_compare_by_permission_so_writes_reads_and_split_grants_add_up():
    from healthcommerce.ehr.services import scopes_missing

    assert scopes_missing(requested="system/Communication.c", granted="system/Communication.write") == []
    assert scopes_missing(requested="system/Communication.c", granted="system/Communication.read") == [
        "system/Communication.c"
    ]
    assert scopes_missing(requested="system/Patient.rs", granted="system/Patient.r system/Patient.s") == []
    assert scopes_missing(requested="system/Patient.rs", granted="patient/Patient.rs") == ["system/Patient.rs"]
    assert scopes_missing(requested="system/Patient.r", granted="system/*.rs") == []
    # a grant limited by a query covers only that query; an unlimited grant covers any query
    limited = "patient/Observation.rs?category=laboratory"
    assert scopes_missing(requested="patient/Observation.rs", granted=limited) == ["patient/Observation.rs"]
    assert scopes_missing(requested=limited, granted="patient/Observation.rs") == []
    assert scopes_missing(requested="launch/patient", granted="LAUNCH/PATIENT") == []


# --- Session fixation and the EHR's set-up errors (issue 18) -------------------------------------------------


def test_a_planted_session_id_no_longer_works_after_the_callback(client, ehr_site, sandbox_ehr, settings):
    from django.test import Client

    attacker = Client()
    attacker.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat013"))  # any visit gives a session
    planted = attacker.cookies[settings.SESSION_COOKIE_NAME].value
    client.cookies[settings.SESSION_COOKIE_NAME] = planted  # the victim's browser now carries it
    earlier = complete_launch(client, sandbox_ehr, patient="pat013")

    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")

    assert result.launch_id
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted  # renewed at the callback
    assert attacker.get(f"/o/{result.launch_id}/").status_code == 404
    assert attacker.get(f"/o/{earlier.launch_id}/").status_code == 404
    assert client.get(f"/o/{result.launch_id}/", follow=True).status_code == 200
    assert client.get(f"/o/{earlier.launch_id}/", follow=True).status_code == 200  # the launches it owned stay


def test_a_client_the_ehr_does_not_accept_is_a_set_up_problem_for_it_with_a_reference(client, ehr_site, sandbox_ehr):
    # The sandbox registered test-app as a public client; a secret it does not know is refused as invalid_client.
    ehr_site.auth_method, ehr_site.client_secret = ehr_site.AuthMethod.CLIENT_SECRET_BASIC, "not-the-secret"
    ehr_site.save()

    result = complete_launch(client, sandbox_ehr, patient="pat014")

    html = result.response.content.decode()
    assert result.launch_id is None and result.response.status_code == 400
    assert "token_invalid_client" in html and "IT" in html
    assert "launching again will not" in html.lower() or "not something launching again will fix" in html
    assert "Please launch the app again" not in html
    reference = result.response["X-Request-ID"]
    assert reference and reference in html
    assert Launch.objects.get().error_code == "token_invalid_client"


@pytest.mark.parametrize(
    ("error", "status", "says"),
    [
        ("unauthorized_client", 400, "contact your hospital"),
        ("invalid_scope", 400, "contact your hospital"),
        ("temporarily_unavailable", 400, "try again in a moment"),
        ("server_error", 400, "try again in a moment"),
    ],
)
def test_an_authorization_error_says_whether_it_is_set_up_or_temporary(
    client, ehr_site, sandbox_ehr, error, status, says
):
    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]

    refused = client.get("/smart/callback", {"state": state, "error": error})

    html = refused.content.decode()
    assert refused.status_code == status and says in html
    assert f"authorize_{error}" in html
