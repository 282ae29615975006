"""Staff roles (healthcommerce/core/roles.py): support sees no PHI anywhere in the admin, admin sees it; clinicians
reach only their own launches and have no admin access."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import formats, timezone

from healthcommerce.ehr.models import Launch
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.conftest import complete_launch
from tests.purchaselinks.conftest import BIRTH_DATE, PATIENT_MOBILE, PATIENT_NAME, SHIP_TO, order_factory
from tests.staff import staff_login, staff_user

EMAIL = "mateo.okafor@example.net"
MEMBER_ID = "CBM-55501"
ENCOUNTER = "enc-7741-okafor"


def _phi_values() -> list[str]:
    address = [str(value) for value in SHIP_TO.values() if isinstance(value, str) and len(value) > 3]
    return [
        PATIENT_NAME,
        EMAIL,
        PATIENT_MOBILE,
        MEMBER_ID,
        BIRTH_DATE.isoformat(),
        str(formats.date_format(BIRTH_DATE)),
        ENCOUNTER,
        *address,
    ]


@pytest.fixture
def phi_rows(db: None) -> dict[str, str]:
    """One order with PHI, its purchase link (sent to email and phone), a local commerce order and a launch;
    returns each admin model's URL prefix and the row's id."""
    order = order_factory()()
    purchase_link_issue(order=order)
    link = PurchaseLink.objects.get(order=order)
    PurchaseLink.objects.filter(pk=link.pk).update(sent_to=EMAIL, sms_sent_to=PATIENT_MOBILE)
    local = LocalCommerceOrder.objects.create(
        idempotency_key="k-1",
        order_reference=order.reference,
        payload={"patient": {"name": PATIENT_NAME, "email": EMAIL}, "ship_to": SHIP_TO},
        confirmation={"ship_to": SHIP_TO, "delivery_preference": "standard"},
    )
    launch = Launch.objects.create(
        site=order.site,
        status=Launch.Status.ACTIVE,
        browser_key="b" * 64,
        state="state-1",
        code_verifier="v" * 43,
        nonce="n",
        launch_token="t",
        expires_at=timezone.now() + timedelta(hours=1),
        encounter_id=ENCOUNTER,
        patient_id=order.patient_fhir_id,
    )
    return {
        "/admin/orders/order/": str(order.pk),
        "/admin/purchaselinks/purchaselink/": str(link.pk),
        "/admin/commerce_local/localcommerceorder/": str(local.pk),
        "/admin/ehr/launch/": str(launch.pk),
        "/admin/ehr/ehrsite/": str(order.site_id),
    }


def _pages(client: Client, rows: dict[str, str]) -> str:
    bodies = []
    for prefix, pk in rows.items():
        for url in (prefix, f"{prefix}{pk}/change/", f"{prefix}?q=Okafor"):
            response = client.get(url)
            assert response.status_code == 200, url
            bodies.append(response.content.decode())
    return "\n".join(bodies)


def test_the_migration_makes_the_support_and_admin_groups(db: None) -> None:
    support = Group.objects.get(name="support")
    codenames = set(support.permissions.values_list("codename", flat=True))
    assert {"view_order", "change_outboxmessage", "change_purchaselink", "change_localcommerceorder"} <= codenames
    assert "change_order" not in codenames and "change_user" not in codenames
    assert Group.objects.get(name="admin").permissions.filter(codename="change_user").exists()


def test_support_sees_no_phi_in_any_admin_page(phi_rows, django_user_model) -> None:
    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))
    html = _pages(client, phi_rows)
    assert "(hidden)" in html
    for value in _phi_values():
        assert value not in html, value


def test_an_admin_sees_the_phi(phi_rows, django_user_model) -> None:
    client = staff_login(Client(), staff_user(django_user_model, "ada", "admin"))
    html = _pages(client, phi_rows)
    for value in _phi_values():
        if value != BIRTH_DATE.isoformat():  # shown formatted
            assert value in html, value


def test_support_cannot_search_orders_by_patient_name(phi_rows, django_user_model) -> None:
    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))
    assert "0 orders" in client.get("/admin/orders/order/?q=Okafor").content.decode()


def test_support_can_run_the_operating_actions_but_not_cancel_orders(phi_rows, django_user_model) -> None:
    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))
    links = client.get("/admin/purchaselinks/purchaselink/").content.decode()
    assert 'value="revoke"' in links and 'value="reissue"' in links
    assert 'value="mark_shipped"' in client.get("/admin/commerce_local/localcommerceorder/").content.decode()
    assert 'value="cancel_orders"' not in client.get("/admin/orders/order/").content.decode()
    assert client.get("/admin/auth/user/").status_code == 403


def test_a_clinician_sees_only_launches_of_their_own_browser_and_no_admin(client, ehr_site, sandbox_ehr) -> None:
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert client.get(f"/o/{result.launch_id}/", follow=True).status_code == 200
    assert Client().get(f"/o/{result.launch_id}/").status_code == 404
    admin = client.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")


def test_support_revokes_a_link_but_cannot_cancel_an_order(phi_rows, django_user_model) -> None:
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))
    link_id = phi_rows["/admin/purchaselinks/purchaselink/"]
    client.post("/admin/purchaselinks/purchaselink/", {"action": "revoke", ACTION_CHECKBOX_NAME: [link_id]})
    assert PurchaseLink.objects.get(pk=link_id).revoked_at is not None
    order_id = phi_rows["/admin/orders/order/"]
    client.post("/admin/orders/order/", {"action": "cancel_orders", ACTION_CHECKBOX_NAME: [order_id]})
    from healthcommerce.orders.models import Order

    assert Order.objects.get(pk=order_id).status != Order.Status.CANCELLED


def test_mask_reference_hides_only_a_patients_id() -> None:
    from healthcommerce.core.roles import mask_reference

    assert mask_reference("Patient/pat014") == "Patient/(hidden)"
    assert mask_reference("Order/42") == "Order/42" and mask_reference("") == ""


def test_support_sees_no_patient_fhir_id_in_the_audit_trail(phi_rows, django_user_model) -> None:
    from healthcommerce.audit.services import audit_record
    from healthcommerce.orders.models import Order

    patient = Order.objects.get(pk=phi_rows["/admin/orders/order/"]).patient_fhir_id
    audit_record(actor="clinician:Practitioner/x", action="phi.read", target=f"Patient/{patient}")
    client = staff_login(Client(), staff_user(django_user_model, "sam", "support"))
    assert patient not in client.get("/admin/audit/auditevent/").content.decode()
    assert 'class="action-select"' not in client.get(f"/admin/audit/auditevent/?q={patient}").content.decode()
