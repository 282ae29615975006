"""The read-only FHIR API: read, search, paging, Bearer tokens, scopes and the patient compartment."""

from datetime import timedelta

import pytest
from django.utils import timezone

from healthcommerce.sandbox.models import FhirResource, SandboxClient, SandboxToken
from healthcommerce.sandbox.services import sandbox_client_register
from tests.sandbox.helpers import FHIR_BASE, REDIRECT_URI, SmartApp, query_of


@pytest.fixture
def token(app: SmartApp, public_client: SandboxClient) -> str:
    """A patient/ token for pat014 granting DeviceRequest and Patient."""
    return str(app.token(patient="pat014")["access_token"])


def token_with(app: SmartApp, scope: str, patient: str = "pat014") -> str:
    sandbox_client_register(client_id="scoped", redirect_uris=[REDIRECT_URI], scope=scope)
    authorized = app.authorize(client_id="scoped", launch=app.launch(patient=patient), scope=scope)
    return str(app.exchange(query_of(authorized)["code"], client_id="scoped").json()["access_token"])


def test_it_reads_a_resource(app: SmartApp, token: str) -> None:
    response = app.get("DeviceRequest/devreq014", token)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json() == FhirResource.objects.get(resource_type="DeviceRequest", fhir_id="devreq014").data


def test_it_answers_401_with_www_authenticate_without_a_token(app: SmartApp, sandbox_data: dict) -> None:
    response = app.get("DeviceRequest/devreq014", None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_it_answers_401_for_an_unknown_token(app: SmartApp, sandbox_data: dict) -> None:
    assert app.get("DeviceRequest/devreq014", "not-a-token").status_code == 401


def test_it_answers_401_for_an_expired_token(app: SmartApp, token: str) -> None:
    SandboxToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert app.get("DeviceRequest/devreq014", token).status_code == 401


def test_it_answers_404_with_an_operation_outcome_for_an_unknown_id(app: SmartApp, token: str) -> None:
    response = app.get("DeviceRequest/nope", token)

    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


def test_it_answers_404_for_an_unknown_resource_type(app: SmartApp, token: str) -> None:
    assert app.get("Spaceship/1", token).status_code == 404


def test_it_forbids_a_type_the_scopes_do_not_cover(app: SmartApp, token: str) -> None:
    response = app.get("Condition/cond014a", token)

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"


def test_it_forbids_another_patients_resource_under_patient_scopes(app: SmartApp, token: str) -> None:
    assert app.get("DeviceRequest/devreq013", token).status_code == 403
    assert app.get("Patient/pat013", token).status_code == 403


def test_user_scopes_reach_every_patient(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/DeviceRequest.read")

    assert app.get("DeviceRequest/devreq013", token).status_code == 200


def test_patient_scopes_reach_shared_resources(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch patient/*.read")

    assert app.get("Practitioner/pra1234", token).status_code == 200
    assert app.get("Organization/org1234", token).status_code == 200


def test_v2_scopes_and_mixed_case_v1_scopes_are_understood(app: SmartApp, sandbox_data: dict) -> None:
    v2 = token_with(app, "launch patient/DeviceRequest.rs")
    epic = token_with(app, "launch patient/DeviceRequest.Read")

    assert app.get("DeviceRequest/devreq014", v2).status_code == 200
    assert app.get("DeviceRequest", v2, patient="pat014").status_code == 200
    assert app.get("DeviceRequest/devreq014", epic).status_code == 200


def test_a_v2_read_only_scope_does_not_allow_search(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch patient/DeviceRequest.r")

    assert app.get("DeviceRequest/devreq014", token).status_code == 200
    assert app.get("DeviceRequest", token).status_code == 403


def test_it_searches_by_patient_in_both_spellings(app: SmartApp, token: str) -> None:
    plain = app.get("DeviceRequest", token, patient="pat014").json()
    typed = app.get("DeviceRequest", token, subject="Patient/pat014").json()

    ids = sorted(e["resource"]["id"] for e in plain["entry"])
    assert ids == ["devreq-014-e0250", "devreq014", "devreq020", "devreq021"]
    assert sorted(e["resource"]["id"] for e in typed["entry"]) == ids
    assert plain["resourceType"] == "Bundle"
    assert plain["type"] == "searchset"
    assert plain["total"] == 4
    assert plain["entry"][0]["search"] == {"mode": "match"}
    assert plain["entry"][0]["fullUrl"] == f"{FHIR_BASE}/DeviceRequest/{plain['entry'][0]['resource']['id']}"


def test_searches_are_held_to_the_tokens_patient(app: SmartApp, token: str) -> None:
    other = app.get("DeviceRequest", token, patient="pat013").json()
    unfiltered = app.get("DeviceRequest", token).json()

    assert other["total"] == 0
    assert {e["resource"]["subject"]["reference"] for e in unfiltered["entry"]} == {"Patient/pat014"}


def test_status_takes_a_comma_separated_or(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/*.read")

    drafts = app.get("DeviceRequest", token, status="draft").json()["total"]
    both = app.get("DeviceRequest", token, status="draft,active").json()["total"]
    none = app.get("DeviceRequest", token, status="completed").json()["total"]

    assert drafts == both == 12
    assert none == 0


def test_it_searches_by_id_and_beneficiary(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/*.read")

    by_id = app.get("DeviceRequest", token, _id="devreq013,devreq014").json()
    coverage = app.get("Coverage", token, beneficiary="Patient/pat015").json()

    assert by_id["total"] == 2
    assert [e["resource"]["id"] for e in coverage["entry"]] == ["cov015"]


def test_it_pages_with_next_links(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/*.read")

    first = app.get("Observation", token, _count=50).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = app.client.get(next_url.removeprefix("http://localhost"), headers={"Authorization": f"Bearer {token}"})

    assert first["total"] == FhirResource.objects.filter(resource_type="Observation").count()
    assert len(first["entry"]) == 50
    assert next_url.startswith(f"{FHIR_BASE}/Observation?")
    assert "_offset=50" in next_url
    page_two = second.json()
    assert len(page_two["entry"]) == 50
    assert {e["fullUrl"] for e in first["entry"]}.isdisjoint({e["fullUrl"] for e in page_two["entry"]})
    assert any(link["relation"] == "previous" for link in page_two["link"])


def test_count_defaults_to_50_and_is_capped_at_200(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch user/*.read")

    assert len(app.get("Observation", token).json()["entry"]) == 50
    assert len(app.get("Observation", token, _count=1000).json()["entry"]) == 200


def test_the_last_page_has_no_next_link(app: SmartApp, token: str) -> None:
    bundle = app.get("DeviceRequest", token, patient="pat014", _count=10).json()

    assert [link["relation"] for link in bundle["link"]] == ["self"]


def test_it_refuses_an_unsupported_search_parameter(app: SmartApp, token: str) -> None:
    response = app.get("DeviceRequest", token, code="E0601")

    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_it_refuses_a_count_that_is_not_a_number(app: SmartApp, token: str) -> None:
    assert app.get("DeviceRequest", token, _count="many").status_code == 400


def test_metadata_needs_no_token(app: SmartApp, sandbox_data: dict) -> None:
    assert app.get("metadata", None).status_code == 200


def test_include_returns_the_referenced_practitioner_with_the_role(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch openid fhirUser user/PractitionerRole.rs user/Practitioner.rs")
    response = app.get("PractitionerRole", token, _id="prarol1234", _include="PractitionerRole:practitioner")

    assert response.status_code == 200
    entries = [
        (e["resource"]["resourceType"], e["resource"]["id"], e["search"]["mode"]) for e in response.json()["entry"]
    ]
    assert entries == [("PractitionerRole", "prarol1234", "match"), ("Practitioner", "pra1234", "include")]


def test_include_leaves_out_what_the_scopes_do_not_allow(app: SmartApp, sandbox_data: dict) -> None:
    token = token_with(app, "launch openid fhirUser user/PractitionerRole.rs")
    response = app.get("PractitionerRole", token, _id="prarol1234", _include="PractitionerRole:practitioner")

    assert [e["search"]["mode"] for e in response.json()["entry"]] == ["match"]
    refused = app.get("PractitionerRole", token, _id="prarol1234", _include="Patient:general-practitioner")
    assert refused.status_code == 400
