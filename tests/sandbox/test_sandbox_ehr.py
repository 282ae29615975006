"""The EHR page and the EHR launch endpoint."""

from django.test import Client

from healthcommerce.sandbox.models import SandboxLaunch
from tests.sandbox.helpers import FHIR_BASE, query_of


def test_the_page_lists_patients_with_pending_orders_first(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/")

    html = response.content.decode()
    patients = response.context["patients"]
    assert response.status_code == 200
    assert {"pat013", "pat014", "pat015", "pat1234"} <= {p.id for p in patients}
    assert len(patients) >= 12
    with_orders = [bool(p.orders) for p in patients]
    assert with_orders == sorted(with_orders, reverse=True)
    assert "E0601" in html
    assert "Launch healthcommerce" in html
    assert "<script" not in html


def test_the_page_shows_name_birth_date_and_order_codes(client: Client, sandbox_data: dict) -> None:
    patients = {p.id: p for p in client.get("/sandbox/").context["patients"]}

    teddy = patients["pat014"]
    assert teddy.birth_date
    assert teddy.name != "pat014"
    assert {o.ref for o in teddy.orders} >= {"DeviceRequest/devreq021", "ServiceRequest/servreq01"}
    assert all(o.status in ("draft", "active") for o in teddy.orders)
    assert next(o for o in teddy.orders if o.ref == "DeviceRequest/devreq021").code == "E0601"


def test_the_practitioner_picker_defaults_to_pra1234(client: Client, sandbox_data: dict) -> None:
    default = client.get("/sandbox/")
    chosen = client.get("/sandbox/", {"practitioner": "pra1255"})

    assert default.context["practitioner"] == "pra1234"
    assert len(default.context["practitioners"]) > 100
    assert chosen.context["practitioner"] == "pra1255"
    assert "practitioner=pra1255" in chosen.content.decode()


def test_launch_redirects_to_the_app_with_iss_and_a_one_time_launch(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/launch", {"patient": "pat015", "request": "DeviceRequest/devreqe0470"})

    params = query_of(response)
    launch = SandboxLaunch.objects.get(value=params["launch"])
    assert response.status_code == 302
    assert response["Location"].startswith("http://localhost/smart/launch?")
    assert params["iss"] == FHIR_BASE
    assert len(params["launch"]) >= 40
    assert (launch.patient_id, launch.practitioner_id) == ("pat015", "pra1234")
    assert launch.request_ref == "DeviceRequest/devreqe0470"
    assert launch.encounter_id == "pat015-rad-encounter"
    assert launch.used_at is None


def test_each_launch_is_a_new_value(client: Client, sandbox_data: dict) -> None:
    first = query_of(client.get("/sandbox/launch", {"patient": "pat013"}))["launch"]
    second = query_of(client.get("/sandbox/launch", {"patient": "pat013"}))["launch"]

    assert first != second


def test_launch_honours_an_app_url_on_the_same_host(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/launch", {"patient": "pat013", "app": "http://localhost/other/launch?x=1"})

    assert response["Location"].startswith("http://localhost/other/launch?x=1&iss=")


def test_launch_refuses_an_app_url_on_another_host(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/launch", {"patient": "pat013", "app": "https://evil.example/launch"})

    assert response.status_code == 400
    assert not SandboxLaunch.objects.exists()


def test_launch_uses_the_configured_app_url(client: Client, sandbox_data: dict, settings: object) -> None:
    settings.SANDBOX_APP_LAUNCH_URL = "https://app.example/smart/launch"  # type: ignore[attr-defined]

    response = client.get("/sandbox/launch", {"patient": "pat013"})

    assert response["Location"].startswith("https://app.example/smart/launch?iss=")


def test_launch_refuses_an_unknown_patient(client: Client, sandbox_data: dict) -> None:
    assert client.get("/sandbox/launch", {"patient": "nobody"}).status_code == 400


def test_launch_refuses_an_order_of_another_patient(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/launch", {"patient": "pat013", "request": "DeviceRequest/devreq014"})

    assert response.status_code == 400


def test_launch_refuses_a_request_that_is_not_an_order(client: Client, sandbox_data: dict) -> None:
    response = client.get("/sandbox/launch", {"patient": "pat014", "request": "Condition/cond014a"})

    assert response.status_code == 400
