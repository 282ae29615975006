"""The HL7 v2 peer itself (tests/peers/hl7/): node-hl7-client's sender and node-hl7-server's receiver talk to each
other over mutual TLS with the test PKI, so a failure of the intake's peer tests points at the app, not at the peer
or its certificates. No Django process is involved."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.hl7peer import (
    TestPki,
    hl7_receiver,
    installed_versions,
    locked_versions,
    orm_o01,
    peer_send,
    pki_write,
    require_hl7_peer,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPki]:
    require_hl7_peer()
    yield pki_write(tmp_path_factory.mktemp("pki"))


def test_the_installed_peer_is_the_locked_node_hl7_client_and_server(pki: TestPki) -> None:
    assert installed_versions() == locked_versions() == {"node-hl7-client": "3.2.0", "node-hl7-server": "2.5.0"}


def test_the_sender_gets_each_ack_from_the_receiver_over_mutual_tls_and_the_receiver_records_each_message(
    pki: TestPki, tmp_path: Path
) -> None:
    with hl7_receiver(tmp_path, pki) as receiver:
        given = peer_send(tmp_path, receiver.port, pki, [orm_o01("SELF-1", "PLC-SELF-1", orc1="SC")])
        generated = peer_send(tmp_path, receiver.port, pki, generate=3, prefix="GEN", connection_per_message=True)
        received = receiver.wait_for(4)

    assert [(a["msa1"], a["msa2"]) for a in given.acks + generated.acks] == [
        ("AA", "SELF-1"),
        ("AA", "GEN0"),
        ("AA", "GEN1"),
        ("AA", "GEN2"),
    ]
    assert generated.summary["acknowledged"] == 3 and generated.returncode == 0
    assert [(m["msh9"], m["msh10"], m["orc1"], m["orc2"]) for m in received] == [
        ("ORM^O01^ORM_O01", "SELF-1", "SC", "PLC-SELF-1^EPIC"),
        ("ORM^O01^ORM_O01", "GEN0", "NW", "GEN0^EPIC"),
        ("ORM^O01^ORM_O01", "GEN1", "NW", "GEN1^EPIC"),
        ("ORM^O01^ORM_O01", "GEN2", "NW", "GEN2^EPIC"),
    ]
    assert {m["client_cert_cn"] for m in received} == {"peer"}


def test_the_receiver_refuses_a_client_without_a_certificate_from_its_ca_and_can_answer_ae(
    pki: TestPki, tmp_path: Path
) -> None:
    with hl7_receiver(tmp_path, pki, ack="AE") as receiver:
        stranger = peer_send(tmp_path, receiver.port, pki, [orm_o01("S-1", "P-1")], credentials=pki.stranger)
        anonymous = peer_send(tmp_path, receiver.port, pki, [orm_o01("S-2", "P-2")], credentials=None)
        refused = peer_send(tmp_path, receiver.port, pki, [orm_o01("S-3", "P-3")], resend=True)
        received = receiver.messages()

    assert stranger.acks == [] and [g["control_id"] for g in stranger.gave_up] == ["S-1"]
    assert anonymous.acks == [] and [g["control_id"] for g in anonymous.gave_up] == ["S-2"]
    assert [(a["msa1"], a["msa2"], a["attempt"]) for a in refused.acks] == [("AE", "S-3", 1)]  # an answer: not resent
    assert [m["msh10"] for m in received] == ["S-3"]
