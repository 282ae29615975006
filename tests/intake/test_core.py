"""The ACK rules of HL7 v2 intake (issue 20 "HL7 v2 intake"; healthcommerce/intake/services.py): store first, then
answer; MSA-2 echoes MSH-10; a resend gets the same answer and creates nothing; AR for what the interface does not
take; enhanced mode answers the commit. The handler is a test-only one registered for ``ZHC^Z01``."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.intake.hl7msg import ack_read, header_read, hl7_decode
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.registry import intake_handler_for, intake_handler_register, intake_handler_unregister
from healthcommerce.intake.services import (
    INTERNAL_ERROR,
    intake_hl7_answer,
    intake_hl7_receive,
    intake_raw_purge,
    intake_raw_retention,
)
from tests.intake.hl7core import TEST_TYPE, Recorder, hl7_site, message

pytestmark = pytest.mark.django_db

OTHER_CERT = "ab" * 32


@pytest.fixture
def handler() -> Iterator[Recorder]:
    """The test handler, registered for ``ZHC^Z01`` for this test only."""
    recorder = Recorder()
    intake_handler_register(TEST_TYPE, recorder)
    yield recorder
    intake_handler_unregister(TEST_TYPE)
    assert intake_handler_for(TEST_TYPE) is None


def receive(text: str | bytes, **kwargs: str) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return intake_hl7_receive(raw, **kwargs).decode()


def segments(ack: str) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.split("\r") if line}


def test_a_good_message_is_stored_then_answered_aa_echoing_msh_10(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="CTRL-1"))

    assert ack_read(ack) == ("AA", "CTRL-1")
    assert ack.endswith("\r") and "ERR" not in segments(ack)
    stored = IntakeMessage.objects.get()
    assert (stored.sender, stored.control_id, stored.message_type) == ("EPIC^SANDBOXHOSP", "CTRL-1", "ZHC^Z01")
    assert (stored.ack_code, stored.ack, stored.order_reference) == ("AA", ack, "HC-TEST00001")
    assert stored.raw == message(control_id="CTRL-1")
    assert handler.seen == ["CTRL-1"]
    audit = AuditEvent.objects.get(action="intake.receive")
    assert (audit.target, audit.outcome) == (f"IntakeMessage/{stored.pk}", "AA")
    assert "Doe" not in str(audit.detail) and "E11" not in stored.ack


def test_the_raw_message_is_encrypted_in_the_database(handler: Recorder) -> None:
    hl7_site()
    receive(message())

    with connection.cursor() as cursor:
        cursor.execute("SELECT raw FROM intake_intakemessage")
        (column,) = cursor.fetchone()
    stored = bytes(column) if isinstance(column, bytes | memoryview) else column.encode()
    assert b"Doe^Jane" not in stored and b"E11.9" not in stored and len(stored) > 100


def test_the_ack_swaps_sender_and_receiver_and_echoes_trigger_processing_id_and_version(handler: Recorder) -> None:
    hl7_site()

    msh = segments(receive(message(control_id="X9", version="2.3", processing="T")))["MSH"]

    assert msh[1] == "^~\\&"
    assert (msh[2], msh[3], msh[4], msh[5]) == ("HEALTHCOMMERCE", "HC", "EPIC", "SANDBOXHOSP")
    assert msh[8] == "ACK^Z01^ACK"
    assert msh[9] and msh[9] != "X9"
    assert (msh[10], msh[11]) == ("T", "2.3")


def test_a_content_error_is_ae_naming_the_segment_and_field(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="C2", order_control="XO"))

    assert ack_read(ack) == ("AE", "C2")
    err = segments(ack)["ERR"]
    assert err[2] == "ORC^1^1"
    assert err[3].startswith("103^") and err[4] == "E"
    assert err[8] == "ORC-1 XO is not supported."
    stored = IntakeMessage.objects.get()
    assert (stored.ack_code, stored.error_location) == ("AE", "ORC-1")


def test_a_resend_with_the_same_msh_10_gets_the_same_answer_and_creates_nothing(handler: Recorder) -> None:
    hl7_site()
    first = receive(message(control_id="R1"))

    again = receive(message(control_id="R1"))

    assert again == first
    assert IntakeMessage.objects.count() == 1
    assert handler.seen == ["R1"]
    audits = AuditEvent.objects.filter(action="intake.receive")
    assert [audit.detail.get("resend", False) for audit in audits.order_by("created_at")] == [False, True]


def test_the_same_msh_10_from_another_facility_is_another_message(handler: Recorder) -> None:
    hl7_site()
    hl7_site(name="Other", facility="OTHERHOSP")

    receive(message(control_id="SAME"))
    receive(message(control_id="SAME", facility="OTHERHOSP"))

    assert sorted(IntakeMessage.objects.values_list("sender", flat=True)) == ["EPIC^OTHERHOSP", "EPIC^SANDBOXHOSP"]
    assert handler.seen == ["SAME", "SAME"]


def test_enhanced_mode_answers_ca_after_commit_and_records_the_handlers_outcome(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="E1", order_control="XO", accept_ack="AL", application_ack="NE"))

    assert ack_read(ack) == ("CA", "E1")
    assert "ERR" not in segments(ack)
    stored = IntakeMessage.objects.get()
    assert (stored.ack_code, stored.error_location, stored.error_text) == ("CA", "ORC-1", "ORC-1 XO is not supported.")
    assert AuditEvent.objects.get(action="intake.receive").detail["outcome"] == "AE"


def test_enhanced_mode_rejects_at_commit_level_with_cr(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="E2", version="2.7", accept_ack="AL"))

    assert ack_read(ack) == ("CR", "E2")
    assert handler.seen == []


def test_enhanced_mode_never_asked_for_an_accept_ack_gets_none_but_the_message_is_stored(handler: Recorder) -> None:
    hl7_site()

    answer = intake_hl7_answer(message(control_id="E3", accept_ack="NE", application_ack="AL").encode())

    assert (answer.ack, answer.close) == (b"", False)
    assert IntakeMessage.objects.get().ack_code == "CA"


def test_an_unknown_sender_is_rejected_and_stored_without_a_site(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="U1", facility="NOWHERE"))

    assert ack_read(ack) == ("AR", "U1")
    assert segments(ack)["ERR"][2] == "MSH^1^4"
    stored = IntakeMessage.objects.get()
    assert (stored.site, stored.ack_code, stored.sender) == (None, "AR", "EPIC^NOWHERE")
    assert handler.seen == []


def test_a_site_with_hl7_disabled_is_an_unknown_sender(handler: Recorder) -> None:
    intake = hl7_site()
    intake.hl7_enabled = False
    intake.save()

    assert ack_read(receive(message()))[0] == "AR"


def test_a_wrong_client_certificate_is_rejected_and_cannot_take_the_real_senders_control_id(handler: Recorder) -> None:
    good = "cd" * 32
    hl7_site(fingerprint=":".join(good[i : i + 2].upper() for i in range(0, 64, 2)))

    wrong = receive(message(control_id="K1"), peer_certificate_sha256=OTHER_CERT)
    right = receive(message(control_id="K1"), peer_certificate_sha256=good)

    assert ack_read(wrong) == ("AR", "K1") and "certificate" in segments(wrong)["ERR"][8]
    assert ack_read(right) == ("AA", "K1")
    assert IntakeMessage.objects.count() == 2
    assert handler.seen == ["K1"]


def test_over_tls_a_site_without_an_allowed_certificate_rejects_every_message(handler: Recorder) -> None:
    hl7_site(fingerprint="")

    assert ack_read(receive(message(), peer_certificate_sha256=OTHER_CERT))[0] == "AR"
    assert handler.seen == []


@pytest.mark.parametrize("version", ["2.2", "2.6", "2.8", ""])
def test_a_version_outside_2_3_to_2_5_1_is_rejected_naming_msh_12(handler: Recorder, version: str) -> None:
    hl7_site()

    ack = receive(message(control_id="V1", version=version))

    assert ack_read(ack) == ("AR", "V1")
    assert segments(ack)["ERR"][2] == "MSH^1^12" and segments(ack)["ERR"][3].startswith("203^")
    assert handler.seen == []
    assert IntakeMessage.objects.get().ack_code == "AR"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_each_version_from_2_3_to_2_5_1_is_accepted(handler: Recorder, version: str) -> None:
    hl7_site()

    assert ack_read(receive(message(version=version)))[0] == "AA"


def test_a_debugging_processing_id_is_rejected_naming_msh_11(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="P1", processing="D"))

    assert ack_read(ack) == ("AR", "P1")
    assert segments(ack)["ERR"][2] == "MSH^1^11"


def test_training_messages_are_taken_outside_production_only(handler: Recorder, settings) -> None:  # type: ignore[no-untyped-def]
    hl7_site()
    assert ack_read(receive(message(control_id="T1", processing="T")))[0] == "AA"

    settings.APP_ENVIRONMENT = "production"

    assert ack_read(receive(message(control_id="T2", processing="T")))[0] == "AR"
    assert ack_read(receive(message(control_id="T3", processing="P")))[0] == "AA"


def test_a_message_type_no_stage_handles_is_rejected_naming_msh_9(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="M1", message_type="ADT^A01"))

    assert ack_read(ack) == ("AR", "M1")
    err = segments(ack)["ERR"]
    assert err[2] == "MSH^1^9" and err[3].startswith("200^") and "ZHC\\S\\Z01" in err[8]  # ^ escaped
    assert handler.seen == []


@pytest.mark.parametrize("encoding", ["^~\\#", "^~&\\", "^~\\&#", "^~"])
def test_wrong_encoding_characters_are_rejected_and_create_nothing(handler: Recorder, encoding: str) -> None:
    hl7_site()

    ack = receive(message(control_id="ENC1", encoding=encoding))

    assert ack_read(ack) == ("AR", "ENC1")
    assert segments(ack)["ERR"][2] == "MSH^1^2"
    assert not IntakeMessage.objects.exists() and handler.seen == []


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01\x02\xff\xfe binary",
        b"PID|1||12345\r",
        b"",
        b"MSH|^~\\&|EPIC|SANDBOXHOSP|HC|HC|20261206||ZHC^Z01||P|2.5.1\r",  # no MSH-10
        b"MSH|^~\\&|EPIC|SANDBOXHOSP|HC|HC|20261206||ZHC^Z01|\x00\x01|P|2.5.1\r",
    ],
)
def test_junk_or_a_message_without_control_id_creates_nothing_and_closes(handler: Recorder, raw: bytes) -> None:
    hl7_site()

    answer = intake_hl7_answer(raw)

    assert (answer.ack, answer.close) == (b"", True)
    assert not IntakeMessage.objects.exists() and handler.seen == []


def test_a_message_with_binary_inside_is_rejected_echoing_msh_10(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="BIN1").encode() + b"ZZZ|\x00\x07\x08\r")

    assert ack_read(ack) == ("AR", "BIN1")
    assert not IntakeMessage.objects.exists()


def test_a_handler_that_fails_costs_its_work_only_the_message_is_kept_and_answered_ae(handler: Recorder) -> None:
    hl7_site()

    ack = receive(message(control_id="B1", order_control="BOOM"))

    assert ack_read(ack) == ("AE", "B1")
    assert segments(ack)["ERR"][3].startswith("207^")
    stored = IntakeMessage.objects.get()
    assert (stored.ack_code, stored.error_text) == ("AE", INTERNAL_ERROR)
    assert not AuditEvent.objects.filter(action="test.handler_write").exists()
    assert AuditEvent.objects.filter(action="intake.receive", outcome="AE").count() == 1


def test_a_latin_1_message_naming_8859_1_is_read(handler: Recorder) -> None:
    hl7_site()
    msh, rest = message(control_id="L1").replace("Doe^Jane", "Muñoz^José").split("\r", 1)
    raw = f"{msh}||8859/1\r{rest}".encode("latin-1")

    assert ack_read(receive(raw))[0] == "AA"
    assert "Muñoz" in IntakeMessage.objects.get().raw


def test_bytes_that_are_not_utf_8_under_another_character_set_are_rejected(handler: Recorder) -> None:
    hl7_site()
    msh, rest = message(control_id="L2").replace("Doe^Jane", "Muñoz^José").split("\r", 1)
    raw = f"{msh}||ISO IR87\r{rest}".encode("latin-1")

    ack = receive(raw)

    assert ack_read(ack) == ("AR", "L2") and segments(ack)["ERR"][2] == "MSH^1^18"
    assert not IntakeMessage.objects.exists()


def test_a_message_with_lf_segment_ends_is_read(handler: Recorder) -> None:
    hl7_site()

    assert ack_read(receive(message(control_id="LF1").replace("\r", "\n")))[0] == "AA"


def test_delimiters_in_the_error_text_are_escaped() -> None:
    from healthcommerce.intake.hl7msg import ack_build

    header = header_read(hl7_decode(message(control_id="A|B").replace("A|B", "AB").encode()))
    ack = ack_build(header=header, code="AE", text="PID-5 ^ & ~ | \\ bad", location="PID-5")

    err = segments(ack)["ERR"]
    assert err[8] == "PID-5 \\S\\ \\T\\ \\R\\ \\F\\ \\E\\ bad"


def test_the_raw_purge_blanks_raw_and_keeps_the_answer(handler: Recorder) -> None:
    hl7_site()
    receive(message(control_id="PG1"))
    stored = IntakeMessage.objects.get()

    assert intake_raw_purge([stored.pk]) == 1
    assert intake_raw_purge([stored.pk]) == 0

    stored.refresh_from_db()
    assert stored.raw == "" and stored.raw_purged_at is not None and stored.ack_code == "AA"
    assert ack_read(receive(message(control_id="PG1")))[0] == "AA"
    assert IntakeMessage.objects.count() == 1


def test_retention_blanks_old_messages_that_made_no_order_only(handler: Recorder, settings) -> None:  # type: ignore[no-untyped-def]
    hl7_site()
    receive(message(control_id="OLD"))
    receive(message(control_id="NEW"))
    old = timezone.now() - timedelta(days=settings.ORDER_PHI_RETENTION_DAYS + 1)
    IntakeMessage.objects.filter(control_id="OLD").update(created_at=old)

    assert intake_raw_retention() == 1

    assert IntakeMessage.objects.get(control_id="OLD").raw == ""
    assert IntakeMessage.objects.get(control_id="NEW").raw != ""
    assert AuditEvent.objects.filter(action="retention.purge", target="IntakeMessage.raw").exists()
    assert settings.CELERY_BEAT_SCHEDULE["purge-intake-raw"]["task"] == "healthcommerce.intake.tasks.purge"


def test_metrics_count_each_message_per_site(handler: Recorder) -> None:
    from healthcommerce.core import metrics

    hl7_site(name="Metered")
    metrics.pending_clear()
    receive(message(control_id="MT1"))
    receive(message(control_id="MT2", order_control="XO"))
    receive(message(control_id="MT3", facility="NOWHERE"))

    keys = {(site, kind, outcome): bucket.count for (_, site, kind, outcome), bucket in metrics._pending.items()}
    assert keys == {
        ("Metered", "hl7_receive", "ok"): 1,
        ("Metered", "hl7_receive", "422"): 1,
        ("unknown", "hl7_receive", "403"): 1,
    }
    metrics.pending_clear()


def test_production_deploy_check_requires_all_three_hl7_tls_settings_once_one_is_set(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    settings.HL7_TLS_CERT = settings.HL7_TLS_KEY = settings.HL7_TLS_CLIENT_CA = ""
    assert not [m for m in run_checks(include_deployment_checks=True) if m.id == "intake.E001"]  # intake off

    settings.HL7_TLS_CERT = str(tmp_path / "missing.pem")
    errors = [m for m in run_checks(include_deployment_checks=True) if m.id == "intake.E001"]
    assert len(errors) == 3 and "no readable file" in errors[0].msg and "HL7_TLS_CLIENT_CA" in errors[2].msg

    for name in ("HL7_TLS_CERT", "HL7_TLS_KEY", "HL7_TLS_CLIENT_CA"):
        (tmp_path / name).write_text("pem")
        setattr(settings, name, str(tmp_path / name))
    assert not [m for m in run_checks(include_deployment_checks=True) if m.id == "intake.E001"]


@pytest.mark.parametrize(("accept_ack", "expected"), [("", b""), ("AL", b"CE")])
def test_a_message_that_cannot_be_stored_is_not_acknowledged_or_gets_ce_and_the_connection_closes(
    handler: Recorder, monkeypatch: pytest.MonkeyPatch, accept_ack: str, expected: bytes
) -> None:
    """The database refusing the write (here: the insert raising ``OperationalError``, as a lost connection does):
    original mode answers nothing so the peer resends; enhanced mode answers CE (commit error)."""
    from django.db import OperationalError

    hl7_site()

    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(IntakeMessage.objects, "create", refuse)

    answer = intake_hl7_answer(message(control_id="DB1", accept_ack=accept_ack).encode())

    assert answer.close is True
    assert ack_read(answer.ack.decode())[0].encode() == expected
    assert handler.seen == []
