"""The CDS services over HTTP: discovery, cards for the sandbox EHR's draft orders, and the answers to malformed
calls (400), missing prefetch (412), oversized bodies (413) and other methods (405)."""

import copy
import json

import pytest
import requests

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import CodeMapping
from healthcommerce.cdshooks.services import service_url
from tests.cdshooks.conftest import SELECT, SIGN, call, fixture, hook_body, signed

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _from_sandbox(cds_ehr, order: str, hook: str = "order-select") -> dict:  # type: ignore[no-untyped-def]
    params = {"patient": "pat014", "practitioner": "pra1234", "order": order, "hook": hook, "format": "json"}
    response = requests.get(f"{cds_ehr.base}/sandbox/cds", params=params, timeout=30)
    assert response.status_code == 200, response.text[:500]
    return dict(response.json())


def test_discovery_lists_both_services_with_the_patient_as_only_prefetch(live_server) -> None:
    response = requests.get(f"{live_server.url}/cds-services", timeout=10)
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {sid: s["hook"] for sid, s in services.items()} == {SELECT: "order-select", SIGN: "order-sign"}
    for service in services.values():
        assert service["title"] and service["description"]
        assert service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}


def test_the_sandbox_gets_a_card_for_a_mapped_device_request(cds_site, cds_ehr, live_server) -> None:
    result = _from_sandbox(cds_ehr, "DeviceRequest/devreq021")
    assert (result["status"], result["service_url"]) == (200, f"{live_server.url}/cds-services/{SELECT}")
    [card] = result["cards"]
    assert card["summary"] == "Order CPAP device with humidifier and mask through healthcommerce"
    assert len(card["summary"]) < 140 and card["indicator"] == "info" and card["source"] == {"label": "healthcommerce"}
    [link] = card["links"]
    assert (link["type"], link["url"]) == ("smart", f"{live_server.url}/smart/launch")
    assert json.loads(link["appContext"]) == {"draftOrder": "DeviceRequest/devreq021"}
    row = AuditEvent.objects.get(action="cds.call")
    assert (row.target, row.outcome, row.site, row.actor) == (
        "Patient/pat014",
        "success",
        cds_ehr.fhir_base,
        "Practitioner/pra1234",
    )
    assert row.detail["service"] == SELECT and row.detail["cards"] == 1


def test_the_sandbox_signs_with_an_rs384_key_beside_its_rs256_id_token_key(cds_site, cds_ehr) -> None:
    assert _from_sandbox(cds_ehr, "DeviceRequest/devreq021")["status"] == 200
    keys = requests.get(f"{cds_ehr.base}/sandbox/oauth/jwks", timeout=10).json()["keys"]
    algs = {key["kid"]: key["alg"] for key in keys}
    assert {kid: alg for kid, alg in algs.items() if kid.startswith("cds-")} and "RS256" in algs.values()
    assert all(alg == "RS384" for kid, alg in algs.items() if kid.startswith("cds-"))


def test_order_sign_offers_the_same_card(cds_site, cds_ehr) -> None:
    result = _from_sandbox(cds_ehr, "DeviceRequest/devreq021", hook="order-sign")
    assert result["service_url"].endswith(f"/cds-services/{SIGN}")
    [card] = result["cards"]
    assert json.loads(card["links"][0]["appContext"]) == {"draftOrder": "DeviceRequest/devreq021"}


def test_an_unmapped_request_gets_no_card(cds_site, cds_ehr) -> None:
    assert _from_sandbox(cds_ehr, "ServiceRequest/servreq-pat014-hhs")["cards"] == []  # HCPCS G0180
    CodeMapping.objects.filter(code="E0250").delete()
    result = _from_sandbox(cds_ehr, "DeviceRequest/devreq-014-e0250")
    assert (result["status"], result["cards"]) == (200, [])


def test_a_site_mapping_of_a_local_code_gets_a_card(cds_site, cds_ehr, jwks_url) -> None:
    local = fixture("o2teddy_05_device-request-cpap-e0601.json")
    local["codeCodeableConcept"]["coding"] = [{"system": "urn:oid:1.2.840.114350.local", "code": "CPAP-9"}]
    product = CodeMapping.objects.filter(code="E0601").get().product
    CodeMapping.objects.create(site=cds_site, system="urn:oid:1.2.840.114350.local", code="CPAP-9", product=product)
    url = service_url(SIGN)
    token = signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url)
    response = call(url, hook_body("order-sign", local), token)
    assert response.status_code == 200
    assert [c["summary"] for c in response.json()["cards"]] == [f"Order {product.name} through healthcommerce"]


def test_a_patient_without_a_postal_address_gets_a_warning_card_first(cds_site, cds_ehr, jwks_url) -> None:
    body = hook_body()
    del body["prefetch"]["patient"]["address"]
    url = service_url(SELECT)
    response = call(url, body, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    warning, order = response.json()["cards"]
    assert warning["indicator"] == "warning" and "postal address" in warning["summary"]
    assert "links" not in warning and order["indicator"] == "info"
    assert "Roosevelt" not in response.text and "pat014" not in response.text  # no PHI echoed


def test_a_bad_draft_order_costs_only_itself(cds_site, cds_ehr, jwks_url) -> None:
    good = fixture("o2teddy_05_device-request-cpap-e0601.json")
    no_id = copy.deepcopy(good) | {"id": "not an id!"}
    other_patient = copy.deepcopy(good) | {"id": "devreq-other", "subject": {"reference": "Patient/pat013"}}
    body = hook_body("order-sign", no_id, other_patient, good)
    body["context"]["draftOrders"]["entry"].insert(0, "not an entry")
    url = service_url(SIGN)
    response = call(url, body, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    assert [json.loads(c["links"][0]["appContext"]) for c in response.json()["cards"]] == [
        {"draftOrder": "DeviceRequest/devreq021"}
    ]


def test_order_select_offers_cards_only_for_the_selected_orders(cds_site, cds_ehr, jwks_url) -> None:
    cpap = fixture("o2teddy_05_device-request-cpap-e0601.json")
    bed = fixture("o2teddy_05_device-request-hb-e0250.json")
    body = hook_body("order-select", cpap, bed)
    body["context"]["selections"] = [f"DeviceRequest/{bed['id']}"]
    url = service_url(SELECT)
    response = call(url, body, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    [card] = response.json()["cards"]
    assert json.loads(card["links"][0]["appContext"]) == {"draftOrder": f"DeviceRequest/{bed['id']}"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        ({"hook": "patient-view"}, "hook"),
        ({"hookInstance": 7}, "hookInstance"),
        ({"context": {"patientId": "pat014", "draftOrders": {"resourceType": "Bundle"}}}, "context.userId"),
        ({"context": {"userId": "Practitioner/pra1234", "patientId": "pat014"}}, "context.draftOrders"),
    ],
)
def test_a_malformed_call_answers_400_naming_the_problem(cds_site, cds_ehr, jwks_url, body, field) -> None:  # type: ignore[no-untyped-def]
    url = service_url(SELECT)
    payload = body if isinstance(body, bytes) else hook_body() | body
    response = call(url, payload, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and field in response.json()["message"]
    assert AuditEvent.objects.get(action="cds.call").outcome == "bad_request"


@pytest.mark.parametrize("prefetch", [None, {}, {"patient": None}])
def test_missing_prefetch_answers_412(cds_site, cds_ehr, jwks_url, prefetch) -> None:  # type: ignore[no-untyped-def]
    body = hook_body()
    if prefetch is None:
        del body["prefetch"]
    else:
        body["prefetch"] = prefetch
    url = service_url(SELECT)
    response = call(url, body, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    assert response.status_code == 412 and response.json()["error"] == "prefetch_missing"


def test_an_oversized_body_answers_413_and_other_methods_405(cds_site, cds_ehr, jwks_url) -> None:
    url = service_url(SELECT)
    big = hook_body(padding="x" * (300 * 1024))
    response = call(url, big, signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    assert response.status_code == 413
    assert requests.get(url, timeout=10).status_code == 405
    assert requests.post(service_url("no-such-service"), data=b"{}", timeout=10).status_code == 404
