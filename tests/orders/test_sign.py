"""Sign-off: one click when complete; who, when, SHA-256; immutable; outbox row in the same transaction."""

import pytest

from healthcommerce.audit.models import AuditEvent
from healthcommerce.orders.errors import InvalidTransition
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import content_hash
from healthcommerce.orders.transitions import order_transition
from healthcommerce.outbox.models import OutboxMessage
from tests.conftest import complete_launch

pytestmark = pytest.mark.django_db

FORM = {
    "quantity": "1",
    "patient_name": "Theodor Alan Roosevelt",
    "patient_birth_date": "1946-07-04",
    "line1": "7525 Colshire Dr",
    "line2": "",
    "city": "McLean",
    "state": "VA",
    "postal_code": "22102",
    "contact_email": "teddy@example.org",
    "contact_phone": "",
    "payer_member_id": "10A3D58WH1600",
}


@pytest.fixture
def cpap_draft(client, ehr_site, sandbox_ehr):
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    return f"/o/{result.launch_id}/orders/{order.pk}/", order


def test_it_signs_in_one_click_and_writes_the_outbox_row(client, cpap_draft, django_capture_on_commit_callbacks):
    url, order = cpap_draft
    with django_capture_on_commit_callbacks():
        response = client.post(url, FORM | {"product": str(order.product_id), "action": "sign"})
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == Order.Status.SIGNED
    assert order.signed_by.endswith("Practitioner/pra1234") and order.signed_at
    assert order.content_hash == content_hash(order) and len(order.content_hash) == 64
    rows = OutboxMessage.objects.filter(subject=f"Order/{order.pk}", status=OutboxMessage.Status.PENDING)
    assert list(rows.values_list("topic", "subscriber")) == [("order.signed", "fulfillment.submit")]
    assert AuditEvent.objects.filter(action="order.sign", target=f"Order/{order.pk}").count() == 1
    page = client.get(url)
    assert b"signed" in page.content.lower() and order.reference.encode() in page.content


def test_a_signed_order_cannot_be_changed(client, cpap_draft):
    url, order = cpap_draft
    client.post(url, FORM | {"product": str(order.product_id), "action": "sign"})
    order.refresh_from_db()
    signed_hash = order.content_hash
    client.post(url, FORM | {"product": str(order.product_id), "quantity": "5", "action": "save"})
    order.refresh_from_db()
    assert order.quantity == 1 and order.content_hash == signed_hash


def test_it_will_not_sign_without_the_patient_email(client, cpap_draft):
    url, order = cpap_draft
    response = client.post(url, FORM | {"product": str(order.product_id), "contact_email": "", "action": "sign"})
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.DRAFT
    assert not OutboxMessage.objects.exists()


def test_status_never_goes_backwards(client, cpap_draft):
    url, order = cpap_draft
    client.post(url, FORM | {"product": str(order.product_id), "action": "sign"})
    with pytest.raises(InvalidTransition):
        order_transition(order_id=order.pk, to_status=Order.Status.DRAFT, actor="test")
