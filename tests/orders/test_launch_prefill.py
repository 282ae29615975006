"""``launch_prefill``: drafts and the pre-filled mark in one transaction; services listed apart; who may sign."""

from datetime import timedelta

import pytest
from django.utils import timezone

from healthcommerce.ehr.errors import AuthorizationFailed
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.services import _apply_token
from healthcommerce.orders import services
from healthcommerce.orders.errors import OrderIncomplete
from healthcommerce.orders.models import Order
from tests.conftest import complete_launch

pytestmark = pytest.mark.django_db


def launched(client, sandbox, **kwargs) -> Launch:
    result = complete_launch(client, sandbox, **kwargs)
    assert result.launch_id, getattr(result.response, "content", b"")[:500]
    return Launch.objects.select_related("site").get(pk=result.launch_id)


def test_home_health_and_ambulance_requests_are_listed_apart_not_as_pick_a_product(client, ehr_site, sandbox_ehr):
    launch = launched(client, sandbox_ehr, patient="pat014")
    page = client.get(f"/o/{launch.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Not ordered through this app" in html
    for reference in ("ServiceRequest/servreq01", "ServiceRequest/servreq-pat014-hhs"):
        assert f'data-request-ref="{reference}"' in html
        assert not Order.objects.filter(launch=launch, request_reference=reference).exists()
    assert "Ambulance and transport are services" in html and "professional services" in html
    aside = {item["reference"]: item["code"] for item in Launch.objects.get(pk=launch.pk).prefill_set_aside}
    assert aside == {"ServiceRequest/servreq01": "A0426", "ServiceRequest/servreq-pat014-hhs": "G0180"}
    drafts = Order.objects.filter(launch=launch)
    assert drafts.exists() and all(o.request_reference.startswith("DeviceRequest/") for o in drafts)
    for order in drafts:
        assert f'data-request-ref="{order.request_reference}"' in html


def test_a_failure_while_creating_drafts_leaves_the_launch_retryable(client, ehr_site, sandbox_ehr, monkeypatch):
    launch = launched(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")

    def broken(**kwargs):
        Order.objects.create(site=launch.site, launch=launch, patient_fhir_id="x", order_date=timezone.localdate())
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "order_drafts_create", broken)
    with pytest.raises(RuntimeError):
        services.launch_prefill(launch=launch)
    launch.refresh_from_db()
    assert launch.prefilled_at is None and not Order.objects.filter(launch=launch).exists()

    monkeypatch.undo()
    page = client.get(f"/o/{launch.pk}/", follow=True)
    assert page.status_code == 200
    assert Order.objects.get(launch=launch).request_code == "E0601"
    assert services.launch_prefill(launch=Launch.objects.get(pk=launch.pk)) is False  # marked: no second set


def test_only_a_practitioner_can_sign(client, ehr_site, sandbox_ehr):
    launch = launched(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    client.get(f"/o/{launch.pk}/")
    order = Order.objects.get(launch=launch)
    order.contact_email = "p@example.org"
    order.save()
    Launch.objects.filter(pk=launch.pk).update(fhir_user="Patient/pat014")
    Order.objects.filter(pk=order.pk).update(practitioner_reference="Patient/pat014")
    launch.refresh_from_db()
    with pytest.raises(OrderIncomplete) as refused:
        services.order_sign(order=order, launch=launch)
    assert refused.value.code == "not_a_practitioner"
    page = client.get(f"/o/{launch.pk}/orders/{order.pk}/")
    assert b'id="not-practitioner"' in page.content
    assert Order.objects.get(pk=order.pk).status == Order.Status.DRAFT


def fresh_launch(scopes: str) -> Launch:
    site = EHRSite.objects.create(name="S", iss="https://ehr.example.org/fhir", client_id="c", scopes=scopes)
    return Launch(site=site, state="s", code_verifier="v", nonce="n", expires_at=timezone.now() + timedelta(hours=1))


TOKEN = {"access_token": "a", "token_type": "Bearer", "patient": "pat014", "fhirUser": "Practitioner/pra1234"}


def test_with_openid_a_token_response_without_an_id_token_fails_the_launch():
    with pytest.raises(AuthorizationFailed) as failed:
        _apply_token(fresh_launch("launch openid fhirUser patient/Patient.rs"), dict(TOKEN))
    assert failed.value.code == "id_token_missing"


def test_without_openid_fhir_user_comes_from_the_token_response():
    record = fresh_launch("launch patient/Patient.rs")
    _apply_token(record, dict(TOKEN))
    assert record.fhir_user == "Practitioner/pra1234"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"patient": 14}, "patient_context_invalid"),
        ({"patient": ["pat014"]}, "patient_context_invalid"),
        ({"patient": "../Patient/x"}, "patient_context_invalid"),
        ({"patient": ""}, "no_patient_context"),
        ({"encounter": {"id": "e1"}}, "encounter_context_invalid"),
        ({"access_token": 5}, "token_malformed"),
    ],
)
def test_launch_context_values_are_type_checked(changes, code):
    with pytest.raises(AuthorizationFailed) as failed:
        _apply_token(fresh_launch("launch patient/Patient.rs"), TOKEN | changes)
    assert failed.value.code == code


@pytest.mark.parametrize(
    ("value", "shown"), [(True, True), (False, False), ("false", False), ("False", False), ("true", True), (None, True)]
)
def test_need_patient_banner_may_be_a_boolean_or_a_string(value, shown):
    record = fresh_launch("launch")
    _apply_token(record, TOKEN | {"need_patient_banner": value})
    assert record.need_patient_banner is shown


def test_odd_context_items_and_lifetimes_are_dropped_not_fatal():
    record = fresh_launch("launch")
    token = TOKEN | {
        "fhirContext": [{"reference": "DeviceRequest/d1"}, "DeviceRequest/d2", {"reference": 3}],
        "expires_in": "soon",
        "scope": ["patient/*.rs"],
        "smart_style_url": {"url": "x"},
    }
    _apply_token(record, token)
    assert record.fhir_context == [{"reference": "DeviceRequest/d1"}]
    assert record.scope_granted == "" and record.smart_style_url == ""
    assert timedelta(minutes=59) < record.token_expires_at - timezone.now() <= timedelta(hours=1)


def test_pre_fill_keeps_the_access_token_for_its_lifetime_and_the_patients_name(client, ehr_site, sandbox_ehr):
    launch = launched(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert launch.access_token and not launch.refresh_token
    expires_at = launch.token_expires_at

    assert services.launch_prefill(launch=launch) is True
    after = Launch.objects.get(pk=launch.pk)
    assert (after.access_token, after.refresh_token, after.token_expires_at) == (launch.access_token, "", expires_at)
    assert after.patient_name == "Theodor Alan Roosevelt"
    assert Order.objects.filter(launch=launch).exists()
