"""Notify, then pull (ADR 0022): just before the hand-off, the worker re-reads only the patient's address from the
EHR (the sandbox, over HTTP, with SMART Backend Services) and the commerce backend gets the current one; the signed
order is never changed, and a refused read or a missing address ships to the signed address with a warning."""

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.models import FulfillmentSite
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver, outbox_deliver_batch
from healthcommerce.sandbox.loader import default_fixture_dirs
from tests.backend_site import backend_site_enable
from tests.conftest import SandboxEHR, sandbox_database_copy, sandbox_server
from tests.orders.test_writeback import sign

pytestmark = pytest.mark.django_db

PATIENT_FILE = default_fixture_dirs()[0] / "davinci" / "o2teddy_01__patient.json"
SIGNED_LINE = "7525 Colshire Dr"  # tests/orders/test_sign.py FORM
MOVED = {
    "use": "home",
    "line": ["1600 Pennsylvania Ave NW"],
    "city": "Washington",
    "state": "DC",
    "postalCode": "20500",
}


@pytest.fixture(scope="module")
def reread_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEHR]:
    """A sandbox EHR of this module's own (a copy of the database): the tests move pat014."""
    folder = tmp_path_factory.mktemp("shipto-sandbox")
    with sandbox_server(database=sandbox_database_copy(folder / "sandbox.sqlite3")) as sandbox:
        sandbox.clear_faults()
        yield sandbox


@pytest.fixture
def reread_ehr_clean(reread_ehr: SandboxEHR) -> Iterator[SandboxEHR]:
    yield reread_ehr
    reread_ehr.clear_faults()


def patient_addresses(sandbox: SandboxEHR, tmp_path: Path, addresses: list[dict[str, Any]] | None) -> None:
    """Give pat014 ``addresses`` in the sandbox (None: as in the fixture), as the EHR would after a move."""
    patient = json.loads(PATIENT_FILE.read_text())
    if addresses is not None:
        patient["address"] = addresses
    folder = tmp_path / "patient"
    folder.mkdir(exist_ok=True)
    (folder / "patient.json").write_text(json.dumps(patient))
    sandbox.manage("sandbox_load", "--dir", str(folder), "--no-client")


@pytest.fixture
def site(db: None, reread_ehr_clean: SandboxEHR, settings: Any, tmp_path: Path) -> EHRSite:
    """A site for the module's sandbox with backend services and ``shipto_reread`` on; pat014 at the fixture
    address to start with."""
    settings.APP_BASE_URL = "http://testserver"
    patient_addresses(reread_ehr_clean, tmp_path, None)
    reread_ehr_clean.manage(
        "sandbox_client", "add", "--client-id", "reread-app", "--redirect-uri", "http://testserver/smart/callback"
    )
    site = EHRSite.objects.create(name="Re-read sandbox", iss=reread_ehr_clean.fhir_base, client_id="reread-app")
    sandbox_payers_add(
        site.name, stdout=io.StringIO()
    )  # the chart's Medicare coverage is a payer record, as in the demo
    return backend_site_enable(site, reread_ehr_clean, scopes="system/Patient.rs", shipto_reread=True)


def submit(order: Order) -> OutboxMessage:
    """Deliver the order's ``fulfillment.submit`` row now; return it reloaded."""
    message = OutboxMessage.objects.get(subject=f"Order/{order.pk}", subscriber="fulfillment.submit")
    OutboxMessage.objects.filter(pk=message.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    outbox_deliver(message_id=message.pk)
    return OutboxMessage.objects.get(pk=message.pk)


def shipped_to(order: Order) -> dict[str, Any]:
    return dict(LocalCommerceOrder.objects.get(order_reference=order.reference).payload["ship_to"])


def backend_reads() -> int:
    reads = AuditEvent.objects.filter(action="fhir.read", actor__startswith="backend:", target__startswith="Patient/")
    return reads.count()


def test_the_current_address_reaches_the_commerce_backend(
    client: Any, site: EHRSite, reread_ehr: SandboxEHR, tmp_path: Path
) -> None:
    order = sign(client, reread_ehr)
    patient_addresses(reread_ehr, tmp_path, [{**MOVED, "use": "old", "line": ["1 Old Rd"]}, MOVED])

    assert submit(order).status == OutboxMessage.Status.DONE

    ship_to = shipped_to(order)
    assert (ship_to["line1"], ship_to["city"], ship_to["state"], ship_to["postal_code"]) == (
        "1600 Pennsylvania Ave NW",
        "Washington",
        "DC",
        "20500",
    )
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED
    assert order.ship_to["line"] == [SIGNED_LINE]  # the signed order is kept as signed
    assert order.ehr_ship_to["line"] == ["1600 Pennsylvania Ave NW"]
    assert order.current_ship_to == order.ehr_ship_to
    event = OrderEvent.objects.get(order=order, kind="shipto_reread")
    assert event.detail == {"changed": True}
    assert backend_reads() == 1
    read = AuditEvent.objects.get(action="fhir.read", actor__startswith="backend:")
    assert read.detail["elements"] == ["address"]


def test_an_unchanged_address_is_recorded_as_unchanged(client: Any, site: EHRSite, reread_ehr: SandboxEHR) -> None:
    order = sign(client, reread_ehr)

    submit(order)

    assert shipped_to(order)["line1"] == SIGNED_LINE
    assert OrderEvent.objects.get(order=order, kind="shipto_reread").detail == {"changed": False}
    order.refresh_from_db()
    assert order.ehr_ship_to == {}


def test_a_site_without_the_re_read_reads_nothing(
    client: Any, site: EHRSite, reread_ehr: SandboxEHR, tmp_path: Path
) -> None:
    FulfillmentSite.objects.filter(site_id=site.pk).update(shipto_reread=False)
    order = sign(client, reread_ehr)
    patient_addresses(reread_ehr, tmp_path, [MOVED])

    submit(order)

    assert shipped_to(order)["line1"] == SIGNED_LINE
    assert backend_reads() == 0
    assert not OrderEvent.objects.filter(order=order, kind__startswith="shipto_reread").exists()


def test_a_404_ships_to_the_signed_address_with_a_warning(
    client: Any, site: EHRSite, reread_ehr_clean: SandboxEHR, tmp_path: Path
) -> None:
    order = sign(client, reread_ehr_clean)
    patient_addresses(reread_ehr_clean, tmp_path, [MOVED])
    reread_ehr_clean.fault("Patient", "404")

    message = submit(order)

    assert message.status == OutboxMessage.Status.DONE
    assert shipped_to(order)["line1"] == SIGNED_LINE
    event = OrderEvent.objects.get(order=order, kind="shipto_reread_warning")
    assert event.detail == {"reason": "not_found"}
    order.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED


def test_a_patient_without_a_usable_address_ships_to_the_signed_one(
    client: Any, site: EHRSite, reread_ehr: SandboxEHR, tmp_path: Path
) -> None:
    order = sign(client, reread_ehr)
    patient_addresses(reread_ehr, tmp_path, [{"use": "home", "city": "Washington"}])

    submit(order)

    assert shipped_to(order)["line1"] == SIGNED_LINE
    assert OrderEvent.objects.get(order=order, kind="shipto_reread_warning").detail == {"reason": "no_usable_address"}


def test_a_503_retries_the_submit_and_the_retry_reads_again(
    client: Any, site: EHRSite, reread_ehr_clean: SandboxEHR, tmp_path: Path
) -> None:
    order = sign(client, reread_ehr_clean)
    patient_addresses(reread_ehr_clean, tmp_path, [MOVED])
    reread_ehr_clean.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "503", "--count", "1")

    first = submit(order)

    assert first.status == OutboxMessage.Status.PENDING
    assert first.last_error == "server_error"
    assert not LocalCommerceOrder.objects.filter(order_reference=order.reference).exists()
    assert submit(order).status == OutboxMessage.Status.DONE
    assert shipped_to(order)["line1"] == "1600 Pennsylvania Ave NW"


def test_a_ship_to_the_patient_corrected_is_never_replaced(
    client: Any, site: EHRSite, reread_ehr: SandboxEHR, tmp_path: Path
) -> None:
    order = sign(client, reread_ehr)
    corrected = {"line": ["10 Downing St"], "city": "Richmond", "state": "VA", "postal_code": "23219", "country": "US"}
    Order.objects.filter(pk=order.pk).update(patient_ship_to=corrected)
    patient_addresses(reread_ehr, tmp_path, [MOVED])

    submit(order)

    assert backend_reads() == 0
    assert OrderEvent.objects.get(order=order, kind="shipto_reread_warning").detail == {"reason": "patient_corrected"}
    order.refresh_from_db()
    assert order.patient_ship_to == corrected
    assert order.ehr_ship_to == {}


def test_orders_submitted_in_one_batch_are_each_re_read(
    client: Any, site: EHRSite, reread_ehr: SandboxEHR, tmp_path: Path
) -> None:
    orders = [sign(client, reread_ehr, request) for request in ("DeviceRequest/devreq021", "DeviceRequest/devreq020")]
    patient_addresses(reread_ehr, tmp_path, [MOVED])
    rows = OutboxMessage.objects.filter(subscriber="fulfillment.submit", subject__in=[f"Order/{o.pk}" for o in orders])

    outbox_deliver_batch(message_ids=list(rows.values_list("pk", flat=True)))

    assert set(rows.values_list("status", flat=True)) == {OutboxMessage.Status.DONE}
    for order in orders:
        assert shipped_to(order)["line1"] == "1600 Pennsylvania Ave NW"
        assert OrderEvent.objects.get(order=order, kind="shipto_reread").detail == {"changed": True}
    assert AuditEvent.objects.filter(action="fulfillment.shipto_reread").count() == 2
