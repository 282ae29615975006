"""The sandbox EHR's "Send as HL7" (issue 20): next to a pending request, a button that builds the order message
Epic's outbound interface would send (ORM^O01 with RQD for DME, OML^O21 with OBR for a LOINC lab kit) from the
sandbox's own FHIR data, with the DG1 and NTE a real feed carries, sends it over MLLP to a real loopback receiver
and shows the ACK; a listener that is not running is a clear message, never a 500."""

from typing import Any

import hl7
import pytest
from django.test import Client
from django.utils import timezone

from healthcommerce.sandbox.hl7send import hl7_order_build
from tests.orders.test_hl7status import MllpReceiver, closed_port

KOEPP = "018f428e-34f6-4707-8009-5ad742f901e7"


def fields(message: hl7.Message, segment: str, *numbers: int) -> list[str]:
    return [str(message.segment(segment)[n]) for n in numbers]


def test_a_dme_request_becomes_an_orm_o01_with_rqd_and_the_noise_of_a_real_feed(sandbox_data: dict) -> None:
    built = hl7_order_build(request_ref="DeviceRequest/devreq021", practitioner_id="pra1234", now=timezone.now())

    msg = hl7.parse(built.text)
    assert built.segments == ["MSH", "PID", "PV1", "IN1", "ORC", "RQD", "NTE", "DG1"]
    assert fields(msg, "MSH", 3, 4, 9, 10, 11, 12) == [
        "EPIC",
        "SANDBOXHOSP",
        "ORM^O01^ORM_O01",
        built.control_id,
        "T",
        "2.5.1",
    ]
    assert str(msg.segment("MSH")[18]) == "UNICODE UTF-8"
    assert fields(msg, "PID", 3, 5, 7, 8) == [
        "0M846129001NF^^^SANDBOXHOSP^MR~pat014^^^SANDBOXHOSP^FHIR",
        "Roosevelt^Theodor^Alan Roosevelt",
        "19460704",
        "M",
    ]
    assert str(msg.segment("PID")[11]) == "7525 Colshire Dr^^McLean^VA^22102^USA^H"
    assert fields(msg, "IN1", 2, 3, 4, 36) == [
        "^Medicare Part B",
        "org1234",
        "Centers for Medicare and Medicaid Services",
        "10A3D58WH1600",
    ]
    # ORC-12: the requester (Helen Fairchild) with her NPI as the identifier, assigning authority NPI.
    assert fields(msg, "ORC", 1, 2, 9) == ["NW", "devreq021^EPIC", "20230101000000+0000"]
    assert str(msg.segment("ORC")[12]) == "1122334467^Fairchild^Helen^^^Ms.^^^NPI^L^^^NPI"
    assert fields(msg, "RQD", 2, 5) == ["E0601^Continuous positive airway pressure (cpap) device^HCPCS", "1"]
    assert str(msg.segment("DG1")[3]).split("^")[2] in ("I10", "SCT")
    assert str(msg.segment("NTE")[3])


def test_a_loinc_kit_becomes_an_oml_o21_with_obr_and_its_note(sandbox_data: dict) -> None:
    built = hl7_order_build(
        request_ref="ServiceRequest/kit-sr-fit-koepp", practitioner_id="pra1234", now=timezone.now()
    )

    msg = hl7.parse(built.text)
    assert built.message_type == "OML^O21"
    assert built.segments == ["MSH", "PID", "PV1", "ORC", "OBR", "NTE", "DG1"]  # Koepp has no Coverage
    assert str(msg.segment("MSH")[9]) == "OML^O21^OML_O21"
    assert fields(msg, "PID", 3, 5, 7) == [
        f"e925b0f3-8006-43f6-aa31-94bd215e55e7^^^SANDBOXHOSP^MR~{KOEPP}^^^SANDBOXHOSP^FHIR",
        "Koepp^Abdul",
        "19560803",
    ]
    assert str(msg.segment("PID")[13]) == "555-978-4581^PRN^PH^^^555^9784581"
    assert fields(msg, "OBR", 2, 4) == [
        "kit-sr-fit-koepp^EPIC",
        "29771-3^Hemoglobin.gastrointestinal [Presence] in Stool by Immunologic method^LN",
    ]
    assert str(msg.segment("OBR")[16]) == str(msg.segment("ORC")[12])
    assert str(msg.segment("ORC")[7]) == "1"
    assert str(msg.segment("NTE")[3]) == "Home collection kit; patient prefers mail delivery."


def test_each_send_is_a_new_message_for_the_same_order(sandbox_data: dict) -> None:
    first = hl7_order_build(request_ref="DeviceRequest/devreq021", practitioner_id="pra1234", now=timezone.now())
    second = hl7_order_build(request_ref="DeviceRequest/devreq021", practitioner_id="pra1234", now=timezone.now())

    assert first.control_id != second.control_id and len(first.control_id) == 20
    assert str(hl7.parse(first.text).segment("ORC")[2]) == str(hl7.parse(second.text).segment("ORC")[2])


def test_the_patients_page_offers_send_as_hl7_next_to_each_pending_request(client: Client, sandbox_data: dict) -> None:
    html = client.get("/sandbox/", {"practitioner": "pra1255"}).content.decode()

    assert html.count("Send as HL7") == html.count('class="ehr-cds-link"') > 0
    assert 'name="request" value="DeviceRequest/devreq021"' in html
    assert 'name="practitioner" value="pra1255"' in html


@pytest.fixture
def listener(settings: Any) -> Any:
    receiver = MllpReceiver().start()
    settings.SANDBOX_HL7_TARGET = receiver.endpoint
    yield receiver
    receiver.stop()


def test_sending_shows_the_message_and_the_ack_it_got(client: Client, sandbox_data: dict, listener: Any) -> None:
    response = client.post("/sandbox/hl7/send", {"request": "DeviceRequest/devreq021", "practitioner": "pra1234"})

    html = response.content.decode()
    (received,) = listener.messages
    control_id = str(hl7.parse(received).segment("MSH")[10])
    assert response.status_code == 200
    assert received.startswith("MSH|^~\\&|EPIC|SANDBOXHOSP|")
    assert response.context["sent"].ack.code == "AA"
    assert response.context["sent"].ack.echoed == control_id and response.context["echoed"]
    assert "MSA-1 acknowledgment code" in html and ">AA<" in html
    assert f"<code>{control_id}</code> (echoes MSH-10)" in html
    assert "RQD|1|E0601^" in html and "DG1|1|" in html


def test_an_error_ack_shows_its_code_and_text(client: Client, sandbox_data: dict, listener: Any) -> None:
    listener.answers = ["AE"]

    response = client.post("/sandbox/hl7/send", {"request": "ServiceRequest/kit-sr-fit-koepp"})

    assert response.status_code == 200
    assert response.context["sent"].ack.code == "AE"
    assert "Refused by the test" in response.content.decode()


def test_a_listener_that_is_not_running_is_a_clear_message_not_a_500(
    client: Client, sandbox_data: dict, settings: Any
) -> None:
    settings.SANDBOX_HL7_TARGET = closed_port()

    response = client.post("/sandbox/hl7/send", {"request": "DeviceRequest/devreq021"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "No ACK." in html
    assert f"No HL7 listener at {settings.SANDBOX_HL7_TARGET}: start make demo (its hl7 process)" in html
    assert "MSH|^~\\&amp;|EPIC|SANDBOXHOSP|" in html  # what would have been sent is still shown


def test_a_listener_that_never_answers_is_a_clear_message(
    client: Client, sandbox_data: dict, listener: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener.answers = ["silent"]
    monkeypatch.setattr("healthcommerce.sandbox.hl7send.TIMEOUT_SECONDS", 0.5)

    response = client.post("/sandbox/hl7/send", {"request": "DeviceRequest/devreq021"})

    assert response.status_code == 200
    assert "No ACK from" in response.content.decode()


def test_an_unknown_request_is_refused_with_a_page(client: Client, sandbox_data: dict) -> None:
    response = client.post("/sandbox/hl7/send", {"request": "Patient/pat014"})

    assert response.status_code == 400
    assert "Unknown request" in response.content.decode()


def test_sending_needs_a_post(client: Client, sandbox_data: dict) -> None:
    assert client.get("/sandbox/hl7/send", {"request": "DeviceRequest/devreq021"}).status_code == 405
