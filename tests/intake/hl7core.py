"""Helpers for the intake core's tests (and the peers' tests, tests/peers): a site that sends HL7 v2, messages in
ER7, a test-only handler, certificates made with ``cryptography`` for mutual TLS, and the MLLP listener running in
a thread of the test process."""

import asyncio
import datetime
import hashlib
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.mllp import Hl7Listener
from healthcommerce.intake.models import IntakeSite
from healthcommerce.intake.registry import ACCEPT, ERROR, Hl7Context, Outcome

TEST_TYPE = "ZHC^Z01"  # a message type no stage registers: the tests' own handler takes it
APPLICATION, FACILITY = "EPIC", "SANDBOXHOSP"


def hl7_site(
    *, name: str = "Sandbox HL7", application: str = APPLICATION, facility: str = FACILITY, fingerprint: str = ""
) -> IntakeSite:
    """Create an active EHR site whose HL7 v2 feed is MSH-3 ``application``, MSH-4 ``facility``; its intake
    settings (``fingerprint``: the allowed client certificate's SHA-256)."""
    site = EHRSite.objects.create(
        name=name, iss=f"https://ehr.example.org/{name.replace(' ', '-')}/fhir", client_id="app"
    )
    settings = IntakeSite.of(site)
    settings.hl7_enabled = True
    settings.hl7_sending_application = application
    settings.hl7_sending_facility = facility
    settings.hl7_client_certificate = fingerprint
    settings.save()
    return settings


def message(
    *,
    control_id: str = "MSG00001",
    message_type: str = "ZHC^Z01",
    version: str = "2.5.1",
    processing: str = "P",
    application: str = APPLICATION,
    facility: str = FACILITY,
    order_control: str = "NW",
    accept_ack: str = "",
    application_ack: str = "",
    encoding: str = "^~\\&",
    extra: str = "",
) -> str:
    """Return an ER7 message (segments end in CR) with these MSH fields; ORC-1 ``order_control`` tells the test
    handler what to answer (``NW`` AA, ``XO`` AE at ORC-1, ``BOOM`` an exception after a write)."""
    msh = (
        f"MSH|{encoding}|{application}|{facility}|HEALTHCOMMERCE|HC|20261206101500||{message_type}|{control_id}|"
        f"{processing}|{version}|||{accept_ack}|{application_ack}"
    )
    segments = [
        msh,
        "PID|1||12345^^^SANDBOXHOSP^MR||Doe^Jane^Q||19700101|F|||1 Main St^^Springfield^IL^62701^USA",
        f"ORC|{order_control}|PLACER-1||||||||||1234567893^Welby^Marcus^^^^^^NPI",
        "DG1|1||E11.9^Type 2 diabetes^I10",
    ]
    return "\r".join(segments + ([extra] if extra else [])) + "\r"


@dataclass
class Recorder:
    """The test handler: answers by ORC-1, records the control IDs it saw."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, parsed: Any, ctx: Hl7Context) -> Outcome:
        from healthcommerce.audit.services import audit_record

        self.seen.append(ctx.message.control_id)
        order_control = str(parsed.extract_field("ORC", 1, 1))
        if order_control == "NW":
            return Outcome(ACCEPT, order="HC-TEST00001")
        if order_control == "BOOM":
            audit_record(actor="test", action="test.handler_write")  # rolled back with the savepoint
            raise RuntimeError("handler bug")
        return Outcome(ERROR, f"ORC-1 {order_control} is not supported.", "ORC-1")


def fingerprint(cert_pem: bytes) -> str:
    """Return the SHA-256 (hex) of a PEM certificate's DER form, as the listener computes it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Pki:
    """PEM files for mutual TLS on loopback: a CA (``ca``), the server's certificate and key (``server_cert``,
    ``server_key``, for 127.0.0.1 and localhost), a client's (``client_cert``, ``client_key``) and its SHA-256
    (``client_fingerprint``)."""

    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_fingerprint: str

    def server_context(self) -> ssl.SSLContext:
        from healthcommerce.intake.mllp import server_ssl_context

        return server_ssl_context(cert=str(self.server_cert), key=str(self.server_key), client_ca=str(self.ca))

    def client_context(
        self, *, cert: Path | None = None, key: Path | None = None, with_cert: bool = True
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_cert:
            context.load_cert_chain(str(cert or self.client_cert), str(key or self.client_key))
        return context

    def env(self) -> dict[str, str]:
        """``HL7_TLS_*`` for ``manage.py hl7_listen`` with this server certificate and CA."""
        return {
            "HL7_TLS_CERT": str(self.server_cert),
            "HL7_TLS_KEY": str(self.server_key),
            "HL7_TLS_CLIENT_CA": str(self.ca),
        }


def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _issue(
    name: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool, server: bool = False
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, *, label: str = "test") -> Pki:
    """Write a CA, a server certificate for loopback and a client certificate signed by it into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"healthcommerce {label} CA")])
    ca_cert = _issue(f"healthcommerce {label} CA", ca_key, ca_name, ca_key, ca=True)
    files = {}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"{label} {role}", key, ca_name, ca_key, ca=False, server=role == "server")
        files[role] = (folder / f"{role}.pem", folder / f"{role}.key")
        files[role][0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files[role][1], key)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        folder=folder,
        ca=folder / "ca.pem",
        server_cert=files["server"][0],
        server_key=files["server"][1],
        client_cert=files["client"][0],
        client_key=files["client"][1],
        client_fingerprint=fingerprint(files["client"][0].read_bytes()),
    )


@contextmanager
def listener_thread(ssl_context: ssl.SSLContext | None = None, **options: Any) -> Iterator[Hl7Listener]:
    """Run an ``Hl7Listener`` on 127.0.0.1 (a free port) in a thread of this process until the block ends, then
    stop it as SIGTERM does (``Hl7Listener.stop``: waiting connections closed, worker threads' database
    connections closed)."""
    started = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        box["stop"] = asyncio.Event()
        listener = Hl7Listener(host="127.0.0.1", port=0, ssl_context=ssl_context, **options)
        try:
            await listener.start()
        except BaseException as exc:
            box["error"] = exc
            started.set()
            raise
        box["listener"] = listener
        started.set()
        await box["stop"].wait()
        await listener.stop(grace=5)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the listener did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["listener"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(20)
        loop.close()


@contextmanager
def hl7_listen_process(env: dict[str, str], *, log: Path, host: str = "127.0.0.1") -> Iterator[tuple[Any, int]]:
    """Run ``manage.py hl7_listen --host host --port 0`` with ``env`` (``tests.servers.base_env`` with
    ``DATABASE_URL`` and, for TLS, ``Pki.env()``) until the block ends; yield (the process, the port it printed).
    Its stderr goes to ``log``. Stops it with SIGTERM (KILL after 20 s). Raises ``RuntimeError`` with the log when
    it exits or prints no listening line within 60 s."""
    import subprocess
    import sys
    import time

    from tests.servers import ROOT

    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "hl7_listen", "--host", host, "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        deadline, port = time.monotonic() + 60, 0
        while not port and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"hl7_listen exited with {proc.wait(5)}:\n{log.read_text()[-3000:]}")
            if line.startswith("hl7_listen: listening on "):
                port = int(line.split(" on ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        if not port:
            raise RuntimeError(f"hl7_listen printed no listening line:\n{log.read_text()[-3000:]}")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        proc.stdout.close()  # type: ignore[union-attr]
