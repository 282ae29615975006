"""HL7 v2 intake against an independent peer, on real sockets (issue 20 "Tested against independent peers").

The sender is node-hl7-client 3.2.0 from npm (``tests/peers/hl7/sender.js``), presenting its client certificate over
TLS; the listener is the real one, the Procfile's ``hl7`` line (``manage.py hl7_listen``) in its own process, with
``HL7_TLS_CERT``/``_KEY``/``_CLIENT_CA`` from a CA the test makes (``tests/peers/hl7peer.py``), on the test database.
One listener per module; each test makes its own site. The ACKs are read as the peer read them: MSA-1, MSA-2, MSA-3,
ERR-2 and the whole ACK. The last test runs the other direction: our status messages, received by node-hl7-server
2.5.0 (``tests/peers/hl7/receiver.js``), with the outbox delivered in this process as a worker would.

Without Node.js or ``make hl7-peer-setup`` the module is skipped outside CI and fails in CI.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from tests.orders.hl7_samples import hl7_orders_deliver
from tests.peers.hl7peer import (
    NPI,
    SENDING_APPLICATION,
    SENDING_FACILITY,
    Listener,
    TestPki,
    hl7_listener,
    hl7_receiver,
    oml_o21,
    orm_o01,
    peer_send,
    peer_site,
    pki_write,
    require_hl7_peer,
)
from tests.pipeline import downstream
from tests.servers import current_database_url

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return pki_write(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def listener(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki, django_db_setup: None, django_db_blocker: Any
) -> Iterator[Listener]:
    require_hl7_peer()
    with django_db_blocker.unblock():
        database_url = current_database_url()
    with hl7_listener(tmp_path_factory.mktemp("listener"), pki, database_url=database_url) as running:
        yield running


@pytest.fixture
def site(pki: TestPki) -> EHRSite:
    """The hospital whose interface engine is the peer: MSH-3/MSH-4 EPIC/SANDBOXHOSP, the peer's certificate."""
    return peer_site(pki, "Peer hospital")


def send(listener: Listener, pki: TestPki, tmp_path: Path, *messages: str, **flags: Any) -> list[dict[str, Any]]:
    """Send ``messages`` with the peer, one connection, in order; return one ACK per message (fails if one got
    none). Then the ``orders.hl7_order`` worker's part: the accepted NW groups become orders
    (``hl7_orders_deliver``)."""
    result = peer_send(tmp_path, listener.port, pki, list(messages), **flags)
    assert len(result.acks) == len(messages), (result.failed, result.stderr[-2000:], listener.log_tail())
    hl7_orders_deliver()
    return result.acks


def err_location(ack: dict[str, Any]) -> tuple[str, str]:
    """ERR-2 (ERL) as (segment ID, field position): ``PID^1^5`` -> ``("PID", "5")``."""
    parts = ack["err"].split("^")
    return parts[0], parts[2] if len(parts) > 2 else ""


def placer(order: Order) -> str:
    return order.placer_order_number.split("^")[0]


def test_the_peer_gets_aa_for_a_dme_order_and_a_lab_kit_order_each_creating_one_signed_order(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    dme, kit = send(listener, pki, tmp_path, orm_o01("ORM-AA-1", "PLC-DME-1"), oml_o21("OML-AA-1", "PLC-KIT-1"))

    assert (dme["msa1"], dme["msa2"]) == ("AA", "ORM-AA-1"), dme
    assert (kit["msa1"], kit["msa2"]) == ("AA", "OML-AA-1"), kit
    orders = {placer(order): order for order in Order.objects.filter(site=site).select_related("product")}
    assert set(orders) == {"PLC-DME-1", "PLC-KIT-1"}
    for order in orders.values():
        assert order.source == Order.Source.HL7V2
        assert order.status == Order.Status.SIGNED, order.hold_reasons
        assert order.practitioner_npi == NPI  # ORC-12 with assigning authority NPI: the signer from the EHR
    assert orders["PLC-DME-1"].product.hcpcs_code == "E0601"  # RQD-2 E0601^...^HCPCS, the catalog's mapping
    assert orders["PLC-KIT-1"].product.sku == "KIT-FIT"  # OBR-4 29771-3^...^LN
    stored = {m.control_id: m for m in IntakeMessage.objects.filter(site=site)}
    assert {key: (m.ack_code, m.order_reference) for key, m in stored.items()} == {
        "ORM-AA-1": ("AA", orders["PLC-DME-1"].reference),
        "OML-AA-1": ("AA", orders["PLC-KIT-1"].reference),
    }
    assert orders["PLC-DME-1"].intake_message_id == stored["ORM-AA-1"].pk
    # What the peer got is what was stored before it was sent (the client's MLLP decoder drops the last CR).
    assert dme["ack"] == stored["ORM-AA-1"].ack.rstrip("\r")


def test_the_peer_gets_ar_for_a_wrong_message_type_version_or_processing_id_and_no_order_is_created(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    acks = send(
        listener,
        pki,
        tmp_path,
        orm_o01("AR-TYPE", "PLC-AR-1", message_type="ADT^A01^ADT_A01"),
        orm_o01("AR-VERSION", "PLC-AR-2", version="2.2"),
        orm_o01("AR-PROCESSING", "PLC-AR-3", processing_id="D"),
    )

    assert [(a["msa1"], a["msa2"]) for a in acks] == [("AR", "AR-TYPE"), ("AR", "AR-VERSION"), ("AR", "AR-PROCESSING")]
    # ERR-2 names the field: MSH-9 message type, MSH-12 version ID, MSH-11 processing ID (HL7 v2.5.1 2.14.9).
    assert [err_location(a) for a in acks] == [("MSH", "9"), ("MSH", "12"), ("MSH", "11")], acks
    assert all(a["msa3"] for a in acks)
    assert not Order.objects.filter(site=site).exists()
    assert sorted(IntakeMessage.objects.filter(site=site).values_list("control_id", "ack_code")) == [
        ("AR-PROCESSING", "AR"),
        ("AR-TYPE", "AR"),
        ("AR-VERSION", "AR"),
    ]


def test_the_peer_gets_ae_naming_the_segment_and_field_it_must_fix_and_no_order_is_created(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    no_name, amendment, no_orc = send(
        listener,
        pki,
        tmp_path,
        orm_o01("AE-PID5", "PLC-AE-1", name=""),
        orm_o01("AE-XO", "PLC-AE-2", orc1="XO"),
        orm_o01("AE-NO-ORC", "PLC-AE-3", with_orc=False),
    )

    assert (no_name["msa1"], no_name["msa2"], err_location(no_name)) == ("AE", "AE-PID5", ("PID", "5")), no_name
    assert (amendment["msa1"], amendment["msa2"], err_location(amendment)) == ("AE", "AE-XO", ("ORC", "1"))
    assert (no_orc["msa1"], no_orc["msa2"]) == ("AE", "AE-NO-ORC"), no_orc
    assert "PID-5" in no_name["msa3"] and "ORC-1" in amendment["msa3"] and "ORC" in no_orc["msa3"]
    assert not Order.objects.filter(site=site).exists()
    assert dict(IntakeMessage.objects.filter(site=site).values_list("control_id", "error_location")) == {
        "AE-PID5": "PID-5",
        "AE-XO": "ORC-1",
        "AE-NO-ORC": "ORC",
    }


def test_a_resend_with_the_same_msh10_gets_the_same_ack_on_a_new_connection_and_creates_nothing(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    message = orm_o01("RESEND-1", "PLC-RESEND-1")
    (first,) = send(listener, pki, tmp_path, message)
    (again,) = send(listener, pki, tmp_path, message)  # a new sender process: a new connection
    twice = send(listener, pki, tmp_path, message, message)  # and twice on one connection
    # The same order under a new MSH-10 (the engine re-queued it): accepted, still one order.
    (requeued,) = send(listener, pki, tmp_path, orm_o01("RESEND-2", "PLC-RESEND-1"))

    assert first["msa1"] == "AA" and first["msa2"] == "RESEND-1"
    assert again["ack"] == first["ack"] and [a["ack"] for a in twice] == [first["ack"]] * 2
    assert (requeued["msa1"], requeued["msa2"]) == ("AA", "RESEND-2")
    assert Order.objects.filter(site=site).count() == 1
    assert IntakeMessage.objects.filter(site=site, control_id="RESEND-1").count() == 1
    assert IntakeMessage.objects.filter(site=site).count() == 2


def test_in_enhanced_mode_the_peer_gets_ca_once_committed_and_cr_for_a_refusal(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    committed, refused, content_error = send(
        listener,
        pki,
        tmp_path,
        orm_o01("ENH-1", "PLC-ENH-1", enhanced=True),  # MSH-15 AL, MSH-16 NE
        orm_o01("ENH-2", "PLC-ENH-2", enhanced=True, message_type="ADT^A01^ADT_A01"),
        orm_o01("ENH-3", "PLC-ENH-3", enhanced=True, name=""),
    )

    assert (committed["msa1"], committed["msa2"]) == ("CA", "ENH-1")
    assert (refused["msa1"], refused["msa2"]) == ("CR", "ENH-2")
    # A content error is still a commit accept in enhanced mode; the handler's AE is recorded on the message.
    assert (content_error["msa1"], content_error["msa2"]) == ("CA", "ENH-3")
    order = Order.objects.get(site=site)
    assert placer(order) == "PLC-ENH-1" and order.source == Order.Source.HL7V2
    stored = IntakeMessage.objects.get(site=site, control_id="ENH-1")
    assert stored.ack_code == "CA" and stored.order_reference == order.reference
    assert IntakeMessage.objects.get(site=site, control_id="ENH-3").error_location == "PID-5"


def test_only_the_sites_own_client_certificate_gets_an_order_in(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    # Signed by the CA the listener trusts, but not the certificate this sender's site allows: AR, stored apart.
    other = peer_send(tmp_path, listener.port, pki, [orm_o01("CERT-1", "PLC-CERT-1")], credentials=pki.other_peer)
    # Not signed by that CA, or no certificate at all: the TLS handshake fails, nothing is read.
    stranger = peer_send(
        tmp_path, listener.port, pki, [orm_o01("CERT-2", "PLC-CERT-2")], credentials=pki.stranger, ack_timeout=5
    )
    anonymous = peer_send(
        tmp_path, listener.port, pki, [orm_o01("CERT-3", "PLC-CERT-3")], credentials=None, ack_timeout=5
    )

    assert [(a["msa1"], a["msa2"]) for a in other.acks] == [("AR", "CERT-1")], (other.failed, listener.log_tail())
    assert stranger.acks == [] and len(stranger.gave_up) == 1, stranger
    assert anonymous.acks == [] and len(anonymous.gave_up) == 1, anonymous
    assert not Order.objects.filter(site=site).exists()
    assert list(IntakeMessage.objects.values_list("control_id", "ack_code")) == [("CERT-1", "AR")]
    assert IntakeMessage.objects.get().sender != f"{SENDING_APPLICATION}^{SENDING_FACILITY}"  # kept apart


def test_the_peer_cancels_its_order_with_orc1_ca(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path
) -> None:
    created, cancelled = send(
        listener,
        pki,
        tmp_path,
        orm_o01("CXL-NW", "PLC-CXL-1"),
        orm_o01("CXL-CA", "PLC-CXL-1", orc1="CA"),
    )

    assert (created["msa1"], cancelled["msa1"], cancelled["msa2"]) == ("AA", "AA", "CXL-CA"), cancelled
    order = Order.objects.get(site=site)
    assert order.status == Order.Status.CANCELLED


def deliver_everything() -> None:
    """Deliver every due outbox row, and what those publish, as the workers would (tests/pipeline.py)."""
    for _ in range(10):
        if not downstream():
            return


def test_the_hospitals_own_receiver_gets_a_status_message_when_its_order_is_submitted_and_when_cancelled(
    listener: Listener, pki: TestPki, site: EHRSite, tmp_path: Path, settings: Any
) -> None:
    # Status back (orders/hl7status.py) presents our client certificate and checks the receiver's against the CA.
    settings.HL7_STATUS_TLS_CERT, settings.HL7_STATUS_TLS_KEY = str(pki.app.cert), str(pki.app.key)
    settings.HL7_STATUS_TLS_CA = str(pki.ca)
    with hl7_receiver(tmp_path / "receiver", pki) as receiver:  # node-hl7-server, asking for a client certificate
        site_settings_update(site, {"hl7_status_endpoint": receiver.endpoint})
        (created,) = send(listener, pki, tmp_path, orm_o01("STATUS-NW", "PLC-STATUS-1"))
        deliver_everything()  # the local supplier takes it: submitted, then the status message
        order = Order.objects.get(site=site)
        assert (created["msa1"], order.status) == ("AA", Order.Status.SUBMITTED)
        receiver.wait_for(1)
        (cancel,) = send(listener, pki, tmp_path, orm_o01("STATUS-CA", "PLC-STATUS-1", orc1="CA"))
        deliver_everything()
        received = receiver.wait_for(2)

    assert cancel["msa1"] == "AA", cancel
    # ORM^O01 with ORC-1 SC (status changed), ORC-5 from HL7 Table 0038: IP in process, then CA cancelled.
    assert [(m["msh9"].split("^")[:2], m["orc1"], m["orc5"]) for m in received] == [
        (["ORM", "O01"], "SC", "IP"),
        (["ORM", "O01"], "SC", "CA"),
    ], received
    for message in received:
        assert message["orc2"].split("^")[0] == "PLC-STATUS-1"  # the hospital's placer number
        assert message["orc3"].split("^")[0] == order.reference  # ours
        assert message["client_cert_cn"] == "app"  # mutual TLS: the receiver saw our client certificate
    rows = OutboxMessage.objects.filter(subscriber__startswith="orders.hl7_status")
    assert {row.status for row in rows} == {OutboxMessage.Status.DONE}
    assert sorted(row.result.split(":")[0] for row in rows if not row.result.startswith("skipped")) == ["AA", "AA"]
