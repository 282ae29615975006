"""docs/extending.md "Add a pre-fill field", followed as written: with its model field and migration in place, one
row in the order's field table (healthcommerce/orders/fields.py) makes a column pre-filled from the sandbox EHR,
editable on the order form, covered by the signature, checked to be encrypted at rest, blanked by the purge and
masked for support; without the row none of it happens.

The column is ``Order.payer_member_id`` (Coverage ``subscriberId``; PHI): the test takes its row out of the table
and puts the recipe's row back, since adding a real column would need a migration of the test database."""

from datetime import timedelta

import pytest
from django import forms
from django.db import connection
from django.test import Client
from django.utils import timezone

from healthcommerce.orders import extract, fields
from healthcommerce.orders.checks import order_fields_check
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import content_hash, orders_phi_purge
from tests.conftest import complete_launch
from tests.orders.test_sign import FORM
from tests.staff import staff_login, staff_user

pytestmark = pytest.mark.django_db

MEMBER_ID = "10A3D58WH1600"  # pat014's Coverage.subscriberId in the sandbox
TYPED = "BRH-RECIPE-4242"
TABLE = fields.FIELDS
WITHOUT = tuple(row for row in TABLE if row.name != "payer_member_id")
# The recipe's row (docs/extending.md "Add a pre-fill field", step 3).
ROW = fields.OrderField(
    "payer_member_id",
    prefill=fields.Prefilled("Coverage", ("subscriberId",), extract.member_id),
    edit=fields.Edit("contact", form=lambda: forms.CharField(max_length=100, required=False, label="Member ID")),
    signed="payer.member_id",
    phi=fields.Phi.ENCRYPTED,
)


def draft(client: Client, sandbox) -> tuple[str, Order]:  # type: ignore[no-untyped-def]
    result = complete_launch(client, sandbox, patient="pat014", request="DeviceRequest/devreq021")
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    return f"/o/{result.launch_id}/orders/{order.pk}/", order


def raw(order: Order) -> bytes:
    key = Order._meta.pk.get_db_prep_value(order.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT payer_member_id FROM orders_order WHERE id = %s", [key])
        return bytes(cursor.fetchone()[0])


def support_page(order: Order, django_user_model, role: str = "support") -> str:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.filter(username=f"{role}-recipe").first()
    client = staff_login(Client(), user or staff_user(django_user_model, f"{role}-recipe", role))
    return client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()


def purge(order: Order) -> Order:
    old = timezone.now() - timedelta(days=400)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED, updated_at=old)
    orders_phi_purge()
    return Order.objects.get(pk=order.pk)


def test_without_its_row_a_column_is_not_read_edited_signed_purged_or_masked(  # type: ignore[no-untyped-def]
    client, ehr_site, sandbox_ehr, monkeypatch, django_user_model
) -> None:
    monkeypatch.setattr(fields, "FIELDS", WITHOUT)
    assert [e.id for e in order_fields_check()] == ["orders.E003"]  # the check says the row is missing
    assert "subscriberId" not in fields.elements("Coverage")

    url, order = draft(client, sandbox_ehr)
    assert order.payer_member_id == ""
    assert 'name="payer_member_id"' not in client.get(url).content.decode()
    assert "member_id" not in fields.order_content(order)["payer"]

    Order.objects.filter(pk=order.pk).update(payer_member_id=TYPED)
    assert TYPED in support_page(order, django_user_model)
    assert purge(order).payer_member_id == TYPED


def test_one_row_makes_a_column_pre_filled_editable_signed_encrypted_purged_and_masked(  # type: ignore[no-untyped-def]
    client, ehr_site, sandbox_ehr, monkeypatch, django_user_model
) -> None:
    monkeypatch.setattr(fields, "FIELDS", (*WITHOUT, ROW))
    assert order_fields_check() == []
    assert fields.elements("Coverage").endswith(",subscriberId")

    # Pre-filled from the sandbox EHR and shown on the form.
    url, order = draft(client, sandbox_ehr)
    assert order.payer_member_id == MEMBER_ID
    page = client.get(url).content.decode()
    assert 'name="payer_member_id"' in page and f'value="{MEMBER_ID}"' in page and ">Member ID" in page

    # Editable: the clinician's value is saved, then signed.
    form = FORM | {"product": str(order.product_id), "payer_member_id": TYPED}
    assert client.post(url, form | {"action": "save"}).status_code == 302
    assert client.post(url, form | {"action": "sign"}).status_code == 302
    order.refresh_from_db()
    assert (order.status, order.payer_member_id) == (Order.Status.SIGNED, TYPED)

    # Covered by the signature: another value gives another hash.
    assert fields.order_content(order)["payer"]["member_id"] == TYPED
    assert order.content_hash == content_hash(order)
    order.payer_member_id = "BRH-OTHER"
    assert content_hash(order) != order.content_hash
    order.refresh_from_db()

    # Encrypted at rest, masked for support (an admin sees it), blanked by the purge.
    assert TYPED.encode() not in raw(order)
    masked = support_page(order, django_user_model)
    assert TYPED not in masked and "(hidden)" in masked
    assert TYPED in support_page(order, django_user_model, "admin")
    assert purge(order).payer_member_id == ""
