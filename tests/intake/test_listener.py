"""The MLLP listener on real sockets (healthcommerce/intake/mllp.py): mutual TLS with certificates made here, the
frame rules (junk, cut frames, over 1 MiB), one message at a time per connection and many connections; and
``manage.py hl7_listen`` as its own process over TLS on the test database, stopped by SIGTERM."""

import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcommerce.intake.hl7msg import ack_read
from healthcommerce.intake.mllp import END, MAX_FRAME, START, frame
from healthcommerce.intake.mllpclient import MllpError, mllp_send
from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.registry import intake_handler_register, intake_handler_unregister
from tests.intake.hl7core import (
    TEST_TYPE,
    Pki,
    Recorder,
    hl7_listen_process,
    hl7_site,
    listener_thread,
    make_pki,
    message,
)
from tests.servers import ROOT, base_env, current_database_url

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def handler() -> Iterator[Recorder]:
    recorder = Recorder()
    intake_handler_register(TEST_TYPE, recorder)
    yield recorder
    intake_handler_unregister(TEST_TYPE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def endpoint(port: int) -> str:
    return f"127.0.0.1:{port}"


def read_acks(sock: socket.socket, count: int, timeout: float = 10) -> list[str]:
    """Read ``count`` framed answers from ``sock``."""
    buffer, acks = b"", []
    deadline = time.monotonic() + timeout
    while len(acks) < count:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while START in buffer and END in buffer:
            start = buffer.index(START)
            end = buffer.index(END, start)
            acks.append(buffer[start + 1 : end].decode())
            buffer = buffer[end + 2 :]
    return acks


def closed_by_peer(sock: socket.socket, timeout: float = 5) -> bool:
    """Whether the other end closed ``sock`` (EOF or reset) within ``timeout`` seconds, having sent nothing."""
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_over_mutual_tls_a_message_is_answered_aa_and_the_client_certificate_checked(
    handler: Recorder, pki: Pki
) -> None:
    hl7_site(fingerprint=pki.client_fingerprint)

    with listener_thread(pki.server_context()) as listener:
        ack = mllp_send(
            endpoint(listener.port), message(control_id="TLS1"), timeout=10, ssl_context=pki.client_context()
        )

    assert ack_read(ack) == ("AA", "TLS1")
    assert IntakeMessage.objects.get().ack == ack
    assert handler.seen == ["TLS1"]


def test_a_certificate_signed_by_the_ca_but_not_the_sites_is_rejected(
    handler: Recorder, pki: Pki, tmp_path: Path
) -> None:
    hl7_site(fingerprint="00" * 32)

    with listener_thread(pki.server_context()) as listener:
        ack = mllp_send(
            endpoint(listener.port), message(control_id="TLS2"), timeout=10, ssl_context=pki.client_context()
        )

    assert ack_read(ack) == ("AR", "TLS2")
    assert handler.seen == []


def test_a_client_without_a_certificate_or_with_one_from_another_ca_gets_no_connection(
    handler: Recorder, pki: Pki, tmp_path: Path
) -> None:
    hl7_site(fingerprint=pki.client_fingerprint)
    stranger = make_pki(tmp_path / "stranger", label="stranger")
    foreign = pki.client_context(cert=stranger.client_cert, key=stranger.client_key)

    with listener_thread(pki.server_context()) as listener:
        with pytest.raises(MllpError):
            mllp_send(
                endpoint(listener.port),
                message(control_id="NC1"),
                timeout=5,
                ssl_context=pki.client_context(with_cert=False),
            )
        with pytest.raises(MllpError):
            mllp_send(endpoint(listener.port), message(control_id="NC2"), timeout=5, ssl_context=foreign)
        with pytest.raises(MllpError):
            mllp_send(endpoint(listener.port), message(control_id="NC3"), timeout=5)  # plain TCP to a TLS port
        ack = mllp_send(
            endpoint(listener.port), message(control_id="NC4"), timeout=10, ssl_context=pki.client_context()
        )

    assert ack_read(ack) == ("AA", "NC4")
    assert list(IntakeMessage.objects.values_list("control_id", flat=True)) == ["NC4"]


def test_junk_before_a_frame_is_discarded_and_frames_sent_together_are_answered_in_order(handler: Recorder) -> None:
    hl7_site()

    with listener_thread() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        data = b"\x00\xffGET / HTTP/1.1\r\n\r\n" + b"".join(
            frame(message(control_id=f"O{n}").encode()) for n in range(5)
        )
        sock.sendall(data)
        acks = read_acks(sock, 5)

    assert [ack_read(ack) for ack in acks] == [("AA", f"O{n}") for n in range(5)]
    assert handler.seen == [f"O{n}" for n in range(5)]


def test_a_frame_cut_at_the_end_of_the_stream_creates_nothing(handler: Recorder) -> None:
    hl7_site()

    with listener_thread() as listener:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            whole = frame(message(control_id="CUT1").encode())
            sock.sendall(whole[: len(whole) // 2])
        time.sleep(0.5)
        ack = mllp_send(endpoint(listener.port), message(control_id="AFTER"), timeout=10)

    assert ack_read(ack) == ("AA", "AFTER")
    assert list(IntakeMessage.objects.values_list("control_id", flat=True)) == ["AFTER"]


def test_a_frame_cut_by_a_new_start_block_is_dropped_and_the_next_one_answered(handler: Recorder) -> None:
    hl7_site()

    with listener_thread() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        cut = frame(message(control_id="CUT2").encode())[:60]
        sock.sendall(cut + frame(message(control_id="WHOLE").encode()))
        acks = read_acks(sock, 1)

    assert [ack_read(ack) for ack in acks] == [("AA", "WHOLE")]
    assert list(IntakeMessage.objects.values_list("control_id", flat=True)) == ["WHOLE"]


def test_a_frame_over_1_mib_is_discarded_and_answered_ar_and_the_connection_goes_on(handler: Recorder) -> None:
    hl7_site()
    big = message(control_id="BIG1", extra="NTE|1||" + "x" * (MAX_FRAME + 10))
    assert len(big) > MAX_FRAME

    with listener_thread() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=20) as sock:
        sock.sendall(frame(big.encode()) + frame(message(control_id="SMALL").encode()))
        acks = read_acks(sock, 2, timeout=20)

    assert [ack_read(ack) for ack in acks] == [("AR", "BIG1"), ("AA", "SMALL")]
    assert "larger than" in acks[0]
    assert list(IntakeMessage.objects.values_list("control_id", flat=True)) == ["SMALL"]


def test_a_frame_over_1_mib_without_a_header_closes_the_connection(handler: Recorder) -> None:
    hl7_site()

    with listener_thread() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=20) as sock:
        sock.sendall(START + b"\x00" * (MAX_FRAME + 100) + END)
        assert closed_by_peer(sock, timeout=10)

    assert not IntakeMessage.objects.exists()


def test_binary_junk_in_a_frame_closes_the_connection_and_creates_nothing(handler: Recorder) -> None:
    hl7_site()

    with listener_thread() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(frame(os.urandom(512).replace(b"\x1c", b"").replace(b"\x0b", b"")))
        assert closed_by_peer(sock)

    assert not IntakeMessage.objects.exists()


def test_an_idle_connection_is_closed(handler: Recorder) -> None:
    with (
        listener_thread(idle=0.5) as listener,
        socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock,
    ):
        assert closed_by_peer(sock, timeout=5)


def test_many_connections_at_once_each_get_their_answers_in_order(handler: Recorder, pki: Pki) -> None:
    hl7_site(fingerprint=pki.client_fingerprint)
    results: dict[int, list[tuple[str, str]]] = {}

    def peer(number: int, port: int) -> None:
        context = pki.client_context()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            got = []
            for n in range(10):
                sock.sendall(frame(message(control_id=f"C{number}-{n}").encode()))
                got += [ack_read(ack) for ack in read_acks(sock, 1, timeout=30)]
            results[number] = got

    with listener_thread(pki.server_context()) as listener:
        threads = [threading.Thread(target=peer, args=(number, listener.port)) for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert results == {number: [("AA", f"C{number}-{n}") for n in range(10)] for number in range(6)}
    assert IntakeMessage.objects.count() == 60


def test_the_same_message_on_two_connections_at_once_is_stored_once(handler: Recorder) -> None:
    hl7_site()
    acks: list[str] = []

    with listener_thread() as listener:
        threads = [
            threading.Thread(
                target=lambda: acks.append(mllp_send(endpoint(listener.port), message(control_id="TWIN"), timeout=20))
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert len(acks) == 4 and len(set(acks)) == 1 and ack_read(acks[0]) == ("AA", "TWIN")
    assert IntakeMessage.objects.count() == 1 and handler.seen == ["TWIN"]


def test_mllp_send_raises_when_nothing_listens_or_nothing_answers() -> None:
    with socket.socket() as quiet:
        quiet.bind(("127.0.0.1", 0))
        port = quiet.getsockname()[1]
        with pytest.raises(MllpError):
            mllp_send(endpoint(port), message(), timeout=2)  # bound, not listening: refused
        quiet.listen()
        started = time.monotonic()
        with pytest.raises(MllpError, match="in time"):
            mllp_send(endpoint(port), message(), timeout=0.5)  # accepted by the backlog, never answered
        assert time.monotonic() - started < 3
    with pytest.raises(ValueError, match="host:port"):
        mllp_send("no-port", message(), timeout=1)


def test_hl7_listen_runs_as_its_own_process_over_tls_and_stops_on_sigterm(pki: Pki, tmp_path: Path) -> None:
    """The Procfile's command with ``--port 0``, the test database and ``HL7_TLS_*``: it prints the port it got,
    answers over mutual TLS (no stage handler is registered in that process yet, so the test message type is AR,
    stored in this test's database), and exits 0 on SIGTERM."""
    hl7_site(fingerprint=pki.client_fingerprint)
    env = base_env(
        SANDBOX_ENABLED="true", DATABASE_URL=current_database_url(), HC_VAR_DIR=str(tmp_path / "var"), **pki.env()
    )
    with hl7_listen_process(env, log=tmp_path / "hl7.log") as (proc, port):
        ack = mllp_send(endpoint(port), message(control_id="PROC1"), timeout=20, ssl_context=pki.client_context())

        assert ack_read(ack) == ("AR", "PROC1")
        stored = IntakeMessage.objects.get()
        assert (stored.control_id, stored.ack) == ("PROC1", ack)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:  # a peer that keeps its connection
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            assert time.monotonic() - started < 10
            assert closed_by_peer(idle, timeout=1)
        assert proc.stdout.read().strip() == "hl7_listen: stopped"


def test_hl7_listen_refuses_plain_tcp_off_loopback(tmp_path: Path) -> None:
    env = base_env(SANDBOX_ENABLED="true", DATABASE_URL=current_database_url(), HC_VAR_DIR=str(tmp_path / "var"))
    done = subprocess.run(
        [sys.executable, "manage.py", "hl7_listen", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 78
    assert "plain TCP is allowed only in embedded mode on a loopback address" in done.stderr


def test_plain_tcp_is_refused_in_production_even_on_loopback(settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.exceptions import ImproperlyConfigured

    from healthcommerce.intake.mllp import listener_ssl_context

    settings.HL7_TLS_CERT = settings.HL7_TLS_KEY = settings.HL7_TLS_CLIENT_CA = ""
    assert listener_ssl_context("127.0.0.1") is None
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured):
        listener_ssl_context("127.0.0.1")
    settings.HL7_TLS_CERT = "/somewhere/cert.pem"
    with pytest.raises(ImproperlyConfigured, match="or none"):
        listener_ssl_context("127.0.0.1")


def test_ssl_module_requires_the_client_certificate(pki: Pki) -> None:
    assert pki.server_context().verify_mode == ssl.CERT_REQUIRED


def test_the_fault_hook_delays_the_answer_after_the_commit_outside_production(
    handler: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HL7_FAULT_ACK_DELAY_MS`` (make test-faults) holds the answer of a committed message, so a SIGKILL can land
    between the commit and the ACK."""
    hl7_site()
    monkeypatch.setenv("HL7_FAULT_ACK_DELAY_MS", "700")

    with listener_thread() as listener:
        started = time.monotonic()
        ack = mllp_send(endpoint(listener.port), message(control_id="SLOW"), timeout=10)

    assert time.monotonic() - started >= 0.7
    assert ack_read(ack) == ("AA", "SLOW")
