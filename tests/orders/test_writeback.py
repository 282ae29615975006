"""Write-back (ADR 0022): a signed order at a site with write-back on is recorded in the EHR (the sandbox, over HTTP,
with SMART Backend Services) as a Communication or a DocumentReference carrying the order reference and no
commerce data; off writes nothing; failures retry or dead-letter through the outbox and never touch the order."""

import base64
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from healthcommerce.ehr.backend import backend_read
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order, OrderEvent, OrderSite
from healthcommerce.orders.writeback import ORDER_REFERENCE_SYSTEM
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from tests.backend_site import backend_site_enable
from tests.conftest import SandboxEHR, complete_launch
from tests.orders.test_sign import FORM

pytestmark = pytest.mark.django_db

SCOPES = "system/Communication.c system/DocumentReference.c system/Patient.rs"
# The sandbox client may also read the records back (the tests do, with a narrower token).
GRANTED = SCOPES + " system/Communication.rs system/DocumentReference.rs"


def sign(client: Any, sandbox: SandboxEHR, request: str = "DeviceRequest/devreq021") -> Order:
    """Launch for pat014's ``request`` (default the CPAP DeviceRequest), fill the form and sign, as a clinician
    does; return the order."""
    result = complete_launch(client, sandbox, patient="pat014", request=request)
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    response = client.post(
        f"/o/{result.launch_id}/orders/{order.pk}/", FORM | {"product": str(order.product_id), "action": "sign"}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == Order.Status.SIGNED
    return order


def row(order: Order, topic: str) -> OutboxMessage:
    return OutboxMessage.objects.get(subject=f"Order/{order.pk}", topic=topic)


def deliver_now(message: OutboxMessage) -> OutboxMessage:
    """Deliver ``message`` now (due, whatever its backoff) and return it reloaded."""
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=message.pk)
    return OutboxMessage.objects.get(pk=message.pk)


def fulfil(order: Order) -> None:
    """Hand the order to the local backend and send its purchase link, so commerce data exists to leak."""
    deliver_now(row(order, "order.signed"))
    deliver_now(row(order, "order.submitted"))


def sandbox_records(sandbox: SandboxEHR, resource_type: str, reference: str) -> list[str]:
    """Return the ids of the sandbox's ``resource_type`` records whose identifier is the order ``reference``
    (read from the sandbox's own database)."""
    code = (
        "import json; from healthcommerce.sandbox.models import FhirResource as F; "
        f"print(json.dumps([r.fhir_id for r in F.objects.filter(resource_type={resource_type!r}) "
        f"if any(i.get('value') == {reference!r} for i in r.data.get('identifier', []))]))"
    )
    return list(json.loads(sandbox.manage("shell", "-c", code).strip().splitlines()[-1]))


@pytest.fixture
def writeback_site(ehr_site: EHRSite, sandbox_ehr: SandboxEHR) -> EHRSite:
    return backend_site_enable(ehr_site, sandbox_ehr, scopes=SCOPES, granted=GRANTED, writeback="communication")


def commerce_values(order: Order) -> list[str]:
    """What must never reach the EHR: price, payer, SKU and product, the purchase link, commerce ids."""
    order.refresh_from_db()
    product = order.product
    assert product is not None
    link = re.search(r"https?://\S+", mail.outbox[-1].body)
    assert link is not None and order.commerce_id
    values = [
        product.sku,
        product.name,
        str(product.unit_price_cents),
        f"{product.unit_price_cents / 100:.2f}",
        order.payer_name,
        order.payer_member_id,
        link.group(0),
        link.group(0).rstrip("/").rsplit("/", 1)[-1],
        order.commerce_id,
        order.commerce_backend,
        str(order.pk),
    ]
    return [v for v in values if v and v not in ("0", "0.00")]


def test_a_signed_order_is_recorded_as_a_communication_without_commerce_data(
    client: Any, writeback_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    order = sign(client, sandbox_ehr)
    fulfil(order)

    message = deliver_now(row(order, "order.writeback"))

    assert message.status == OutboxMessage.Status.DONE
    resource_type, fhir_id = message.result.split("/")
    assert resource_type == "Communication"
    written = backend_read(writeback_site, "Communication", fhir_id, scope="system/Communication.rs")
    assert written["status"] == "completed"
    assert written["identifier"] == [{"system": ORDER_REFERENCE_SYSTEM, "value": order.reference}]
    assert written["subject"] == {"reference": "Patient/pat014"}
    assert written["about"] == [{"reference": "DeviceRequest/devreq021"}]
    assert written["sender"]["reference"].endswith("Practitioner/pra1234")
    assert order.reference in written["payload"][0]["contentString"]
    assert written["sent"]
    text = json.dumps(written)
    for value in commerce_values(order):
        assert value not in text, value
    event = OrderEvent.objects.get(order=order, kind="writeback_done")
    assert event.detail == {"resource": f"Communication/{fhir_id}"}
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED


def test_a_document_reference_site_gets_a_text_note_with_the_reference(
    client: Any, writeback_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    OrderSite.objects.filter(site_id=writeback_site.pk).update(writeback="document_reference")
    order = sign(client, sandbox_ehr)
    fulfil(order)

    message = deliver_now(row(order, "order.writeback"))

    resource_type, fhir_id = message.result.split("/")
    assert resource_type == "DocumentReference"
    written = backend_read(writeback_site, "DocumentReference", fhir_id, scope="system/DocumentReference.rs")
    assert written["status"] == "current"
    assert written["type"]["coding"][0]["system"] == "http://loinc.org"
    assert written["subject"] == {"reference": "Patient/pat014"}
    assert written["context"]["related"] == [{"reference": "DeviceRequest/devreq021"}]
    assert written["author"][0]["reference"].endswith("Practitioner/pra1234")
    attachment = written["content"][0]["attachment"]
    assert attachment["contentType"] == "text/plain"
    note = base64.b64decode(attachment["data"]).decode()
    assert order.reference in note and "signed" in note
    text = json.dumps(written) + note
    for value in commerce_values(order):
        assert value not in text, value


def test_with_write_back_off_nothing_is_published_or_written(
    client: Any, ehr_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    backend_site_enable(ehr_site, sandbox_ehr, scopes=SCOPES, granted=GRANTED, writeback="off")
    order = sign(client, sandbox_ehr)
    fulfil(order)

    assert not OutboxMessage.objects.filter(topic="order.writeback").exists()
    assert not OrderEvent.objects.filter(order=order, kind__startswith="writeback").exists()
    assert sandbox_records(sandbox_ehr, "Communication", order.reference) == []


def test_a_503_is_retried_and_the_record_written_once(
    client: Any, writeback_site: EHRSite, sandbox_faults: SandboxEHR
) -> None:
    order = sign(client, sandbox_faults)
    sandbox_faults.manage("sandbox_fault", "set", "--type", "Communication", "--kind", "503", "--count", "1")

    first = deliver_now(row(order, "order.writeback"))

    assert first.status == OutboxMessage.Status.PENDING
    assert first.last_error == "writeback_server_error"
    assert first.available_at > timezone.now() - timedelta(seconds=1)
    second = deliver_now(first)
    assert second.status == OutboxMessage.Status.DONE
    assert second.attempts == 2
    assert sandbox_records(sandbox_faults, "Communication", order.reference) == [second.result.split("/")[1]]
    assert OrderEvent.objects.filter(order=order, kind="writeback_done").count() == 1


def test_a_retry_after_a_lost_answer_finds_the_first_record_instead_of_writing_another(
    client: Any, writeback_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    order = sign(client, sandbox_ehr)
    message = deliver_now(row(order, "order.writeback"))
    # The EHR created it, but the worker died before recording that: the row is pending again.
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.PENDING, result="")

    again = deliver_now(message)

    assert again.status == OutboxMessage.Status.DONE
    assert again.result == message.result
    assert sandbox_records(sandbox_ehr, "Communication", order.reference) == [message.result.split("/")[1]]


def test_a_missing_create_scope_dead_letters_with_its_code_and_leaves_the_order_alone(
    client: Any, ehr_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    reads_only = "system/Patient.rs system/Communication.rs"
    backend_site_enable(ehr_site, sandbox_ehr, scopes=reads_only, writeback="communication")
    order = sign(client, sandbox_ehr)

    message = deliver_now(row(order, "order.writeback"))

    assert message.status == OutboxMessage.Status.DEAD
    assert message.last_error == "writeback_forbidden"
    assert message.attempts == 1
    event = OrderEvent.objects.get(order=order, kind="writeback_failed")
    assert event.detail["code"] == "writeback_forbidden"
    order.refresh_from_db()
    assert order.status == Order.Status.SIGNED
    fulfil(order)
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED
    assert sandbox_records(sandbox_ehr, "Communication", order.reference) == []


def test_the_order_admin_shows_the_write_back_outcome(
    client: Any, admin_client: Any, writeback_site: EHRSite, sandbox_ehr: SandboxEHR
) -> None:
    order = sign(client, sandbox_ehr)
    message = deliver_now(row(order, "order.writeback"))

    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/")

    assert page.status_code == 200
    assert f"written: {message.result}".encode() in page.content
    assert b"Recorded in the EHR" in page.content or b"writeback_done" in page.content
