"""What the security review found missing: draft edits, failed sign attempts (kept after the rollback), logins,
failed logins, lockouts, admin changes, the per-patient export."""

import json
from io import StringIO

import pytest
from axes.signals import user_locked_out
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, RequestFactory
from fhirclient.models.bundle import Bundle

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from tests.conftest import complete_launch
from tests.orders.test_sign import FORM
from tests.site_settings import settings_form
from tests.staff import totp_code, totp_device

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


@pytest.fixture
def draft(client, ehr_site, sandbox_ehr):  # type: ignore[no-untyped-def]
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    return f"/o/{result.launch_id}/orders/{order.pk}/", order


def test_a_draft_edit_records_the_field_names_but_no_values(client, draft) -> None:
    url, order = draft
    client.post(url, FORM | {"product": str(order.product_id), "quantity": "2", "action": "save"})
    edit = AuditEvent.objects.get(action="order.edit", target=f"Order/{order.pk}")
    assert "quantity" in edit.detail["fields"]
    assert edit.launch_id == str(order.launch_id) and edit.ip == "127.0.0.1"
    assert "Roosevelt" not in json.dumps(edit.detail) and "teddy@example.org" not in json.dumps(edit.detail)


def test_a_failed_sign_attempt_is_kept_although_its_transaction_rolled_back(client, draft) -> None:
    url, order = draft
    Order.objects.filter(pk=order.pk).update(practitioner_reference="Practitioner/someone-else")
    response = client.post(url, FORM | {"product": str(order.product_id), "quantity": "3", "action": "sign"})
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.DRAFT and order.quantity != 3 and not OutboxMessage.objects.exists()
    failed = AuditEvent.objects.get(action="order.sign", target=f"Order/{order.pk}")
    assert failed.outcome == "wrong_signer" and failed.site == order.site.iss
    assert not AuditEvent.objects.filter(action="order.edit", target=f"Order/{order.pk}", outcome="success").exists()


def test_logins_logouts_and_failed_logins_are_audited(admin_user) -> None:
    browser = Client()
    for _ in range(3):
        browser.post("/admin/login/", {"username": "admin", "password": "wrong"})
    browser.post("/admin/login/", {"username": "not-a-user", "password": "wrong"})
    failed = AuditEvent.objects.filter(action="admin.login", outcome="bad_credentials")
    assert sorted(failed.values_list("actor", flat=True)) == ["admin:admin", "anonymous"]  # aggregated: 1st only
    code = totp_code(totp_device(admin_user))  # the admin's second factor (core/adminsite.py)
    browser.post("/admin/login/", {"username": "admin", "password": "password", "otp_token": code})
    assert AuditEvent.objects.filter(action="admin.login", outcome="success", actor="admin:admin").exists()
    browser.post("/admin/logout/")
    assert AuditEvent.objects.filter(action="admin.logout", actor="admin:admin").exists()


def test_a_lockout_is_audited(admin_user) -> None:
    request = RequestFactory().post("/admin/login/", REMOTE_ADDR="198.51.100.7")
    user_locked_out.send("axes", request=request, username="admin", ip_address="198.51.100.7")
    lockout = AuditEvent.objects.get(action="admin.lockout")
    assert (lockout.actor, lockout.outcome, lockout.ip) == ("admin:admin", "locked_out", "198.51.100.0/24")


def test_admin_changes_are_audited_with_field_names_only(admin_client, ehr_site) -> None:
    url = f"/admin/ehr/ehrsite/{ehr_site.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"name": "Renamed clinic", "quirks": [], "frame_origins": "", "_save": "Save"})
    data |= settings_form(ehr_site)  # each stage's settings section (issue 19)
    response = admin_client.post(url, {k: v for k, v in data.items() if not isinstance(v, bool) or v})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    change = AuditEvent.objects.get(action="admin.change", target=f"ehr.ehrsite/{ehr_site.pk}")
    assert change.actor == "admin:admin" and change.detail["fields"]
    assert "Renamed clinic" not in json.dumps(change.detail)


def test_the_admin_exports_selected_rows_as_a_fhir_bundle(admin_client) -> None:
    AuditEvent.objects.create(actor="system:x", action="order.cancel", target="Order/1")
    rows = [str(pk) for pk in AuditEvent.objects.values_list("pk", flat=True)]
    response = admin_client.post("/admin/audit/auditevent/", {"action": "export_fhir", ACTION_CHECKBOX_NAME: rows})
    assert response["Content-Type"] == "application/fhir+json"
    bundle = json.loads(response.content)
    Bundle(bundle, strict=True)
    assert len(bundle["entry"]) == len(rows)
    assert AuditEvent.objects.filter(action="audit.export", actor="admin:admin").exists()


def test_the_export_of_one_patient_holds_their_launches_and_orders_only(client, draft) -> None:
    _url, order = draft
    AuditEvent.objects.create(actor="x", action="phi.view", target="Patient/someone-else")
    out = StringIO()
    call_command("audit_export", "--patient", "pat014", stdout=out)
    entries = [e["resource"] for e in json.loads(out.getvalue())["entry"]]
    actions = {r["subtype"][0]["code"] for r in entries}
    assert {"smart.launch", "fhir.read", "phi.view"} <= actions
    whats = {e["what"].get("reference") for r in entries for e in r.get("entity", []) if "what" in e}
    assert "Patient/someone-else" not in whats and "Patient/pat014" in whats
    assert EHRSite.objects.filter(iss=order.site.iss).exists()
