"""The independent HL7 v2 peer for the intake tests: ``node-hl7-client`` 3.2.0 and ``node-hl7-server`` 2.5.0 from
npm (``tests/peers/hl7/``, pinned by its package-lock.json, installed by ``make hl7-peer-setup``), driven by two
small scripts there: ``sender.js`` (an interface engine sending orders over MLLP with TLS and a client certificate)
and ``receiver.js`` (a hospital's inbound interface for our status messages). See tests/peers/hl7/README.md.

Also what the tests need around it: a test PKI made with ``cryptography`` (``pki_write``), HL7 v2 messages
(``orm_o01``, ``oml_o21``), and the real listener, the Procfile's ``hl7`` line (``hl7_listener``).

Outside CI a missing Node.js or peer skips the test with a reason naming ``make hl7-peer-setup``; with ``CI`` set it
fails (``require_hl7_peer``), as Medusa does.
"""

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.servers import ROOT, base_env, free_port, procfile_command

PEER_DIR = ROOT / "tests" / "peers" / "hl7"
SENDER = PEER_DIR / "sender.js"
RECEIVER = PEER_DIR / "receiver.js"
PACKAGES = ("node-hl7-client", "node-hl7-server")


def locked_versions() -> dict[str, str]:
    """The versions package-lock.json pins for ``PACKAGES`` (``{"node-hl7-client": "3.2.0", ...}``)."""
    lock = json.loads((PEER_DIR / "package-lock.json").read_text())
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in PACKAGES}


def installed_versions() -> dict[str, str]:
    """The versions installed under tests/peers/hl7/node_modules (a missing package is left out)."""
    found = {}
    for name in PACKAGES:
        manifest = PEER_DIR / "node_modules" / name / "package.json"
        if manifest.exists():
            found[name] = json.loads(manifest.read_text())["version"]
    return found


def hl7_peer_missing() -> str | None:
    """Why the HL7 peer cannot run here, or ``None``. Every reason says "HL7 peer" (tests/skips.py groups on it)."""
    if not shutil.which("node"):
        return "the HL7 peer needs Node.js 20.15+ (make hl7-peer-setup)"
    if installed_versions() != locked_versions():
        return "the HL7 peer is not installed as locked (make hl7-peer-setup)"
    return None


def require_hl7_peer() -> None:
    """Skip the test when the peer is missing (fail with ``CI`` set)."""
    reason = hl7_peer_missing()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason + "; CI runs it")


# --- A test PKI: a CA, the listener's certificate, the peer's client certificate and a stranger's ---


@dataclass(frozen=True)
class Credentials:
    """A PEM certificate and key, and the certificate's SHA-256 fingerprint as ``openssl x509 -fingerprint
    -sha256`` prints it (``AB:CD:...``: how an administrator pastes it into the site record)."""

    cert: Path
    key: Path
    fingerprint: str


@dataclass(frozen=True)
class TestPki:
    """``ca`` (PEM) signed ``server`` (for 127.0.0.1 and localhost), ``peer`` and ``app`` (client certificates: the
    hospital's interface engine, our status sender); ``other_peer`` is signed by the CA too but belongs to no site;
    ``stranger`` is self-signed, trusted by nobody."""

    __test__ = False

    ca: Path
    server: Credentials
    peer: Credentials
    app: Credentials
    other_peer: Credentials
    stranger: Credentials


def _write(folder: Path, name: str, cert: Any, key: Any) -> Credentials:
    from cryptography.hazmat.primitives import hashes, serialization

    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return Credentials(cert_path, key_path, ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)))


def pki_write(folder: Path) -> TestPki:
    """Write a CA and certificates (EC P-256, valid one day) into ``folder``; for tests only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def build(subject: str, issuer: str, public_key: Any, *, ca: bool) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("healthcommerce test CA", "healthcommerce test CA", ca_key.public_key(), ca=True).sign(
        ca_key, hashes.SHA256()
    )
    ca_path = _write(folder, "ca", ca_cert, ca_key).cert

    def issued(common: str) -> Credentials:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(common, "healthcommerce test CA", key.public_key(), ca=False).sign(ca_key, hashes.SHA256())
        return _write(folder, common, cert, key)

    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger_cert = build("stranger", "stranger", stranger_key.public_key(), ca=False).sign(
        stranger_key, hashes.SHA256()
    )
    return TestPki(
        ca=ca_path,
        server=issued("server"),
        peer=issued("peer"),
        app=issued("app"),
        other_peer=issued("other-peer"),
        stranger=_write(folder, "stranger", stranger_cert, stranger_key),
    )


# --- HL7 v2 messages (ER7, segments separated by CR), synthetic people only ---

SENDING_APPLICATION, SENDING_FACILITY = "EPIC", "SANDBOXHOSP"
NPI = "1234567893"  # a valid NPI check digit; a made-up provider


def _msh(control_id: str, message_type: str, *, version: str, processing_id: str, enhanced: bool) -> str:
    acks = "|||AL|NE" if enhanced else ""
    return (
        f"MSH|^~\\&|{SENDING_APPLICATION}|{SENDING_FACILITY}|HEALTHCOMMERCE|HC|20261206101500||{message_type}|"
        f"{control_id}|{processing_id}|{version}{acks}"
    )


def _pid(number: int, *, name: str) -> str:
    return (
        f"PID|1||MRN{number:05d}^^^{SENDING_FACILITY}^MR||{name}||19700101|F|||"
        f"{number} Test Street^^Springfield^VA^22150^US^H||"
        f"^PRN^PH^^1^703^5550100~^NET^Internet^patient{number}@example.org"
    )


def orm_o01(
    control_id: str,
    placer: str,
    *,
    number: int = 1,
    message_type: str = "ORM^O01^ORM_O01",
    version: str = "2.5.1",
    processing_id: str = "P",
    enhanced: bool = False,
    orc1: str = "NW",
    name: str = "Testpatient^Jane",
    item: str = "E0601^CPAP device^HCPCS",
    with_orc: bool = True,
) -> str:
    """A DME order as Epic's Bridges sends it: MSH, PID, PV1, IN1, ORC (``orc1`` NW), RQD (``item``, quantity 1),
    and clinical noise the app must not keep (DG1, NTE, OBX). ``name`` is PID-5 ("" to leave it out)."""
    segments = [
        _msh(control_id, message_type, version=version, processing_id=processing_id, enhanced=enhanced),
        _pid(number, name=name),
        "PV1|1|O",
        "IN1|1|GOLD^Gold plan|PAYER01|Example Health Plan" + "|" * 32 + f"MEM{number:05d}",
        f"ORC|{orc1}|{placer}^EPIC||||||1^^^20261206^^R|20261206101000|||{NPI}^Testdoctor^Peer^^^^^^NPI^L^^^NPI",
        f"RQD|1|{item}|||1",
        "DG1|1||G47.33^Obstructive sleep apnea^I10",
        "NTE|1||Clinical note that must stay in the EHR",
        "OBX|1|NM|59408-5^SpO2^LN||88|%",
    ]
    if not with_orc:
        segments = [s for s in segments if not s.startswith("ORC")]
    return "\r".join(segments)


def oml_o21(control_id: str, placer: str, *, number: int = 2, loinc: str = "29771-3") -> str:
    """A lab kit order: OML^O21 with ORC NW and OBR-4 a LOINC code (FIT kit by default)."""
    return "\r".join(
        [
            _msh(control_id, "OML^O21^OML_O21", version="2.5.1", processing_id="P", enhanced=False),
            _pid(number, name="Testpatient^Kit"),
            "PV1|1|O",
            f"ORC|NW|{placer}^EPIC||||||1^^^20261206^^R|20261206101000|||{NPI}^Testdoctor^Peer^^^^^^NPI^L^^^NPI",
            "TQ1|1||||||20261206",
            f"OBR|1|{placer}^EPIC||{loinc}^Hemoglobin.gastrointestinal.lower^LN|||20261206101000",
        ]
    )


# --- Running the peer ---


@dataclass
class SendResult:
    """What ``sender.js`` printed: ``acks`` (one dict per ACK, in arrival order), ``failed`` (attempts without an
    ACK), ``gave_up``, ``summary``; ``returncode`` and ``stderr``."""

    acks: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    gave_up: list[dict[str, Any]]
    summary: dict[str, Any]
    returncode: int
    stderr: str

    def by_control_id(self) -> dict[str, dict[str, Any]]:
        """The last ACK of each control id."""
        return {ack["control_id"]: ack for ack in self.acks}


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a half-written last line is left out)."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def sender_command(
    port: int, credentials: Credentials | None, ca: Path, *, out: Path, messages: Path | None = None, **flags: Any
) -> list[str]:
    """``node sender.js`` for ``port`` with ``credentials`` as the client certificate (``None``: present none);
    ``flags`` become ``--name value`` (``True`` alone; underscores become dashes)."""
    cmd = ["node", str(SENDER), "--port", str(port), "--ca", str(ca), "--out", str(out)]
    if credentials is not None:
        cmd += ["--cert", str(credentials.cert), "--key", str(credentials.key)]
    if messages is not None:
        cmd += ["--input", str(messages)]
    for key, value in flags.items():
        if value is False or value is None:
            continue
        cmd.append("--" + key.replace("_", "-"))
        if value is not True:
            cmd.append(str(value))
    return cmd


def parse_sender_output(out: Path, returncode: int, stderr: str) -> SendResult:
    lines = read_json_lines(out)
    summary = next((line for line in lines if line.get("type") == "summary"), {})
    return SendResult(
        acks=[line for line in lines if line.get("type") == "ack"],
        failed=[line for line in lines if line.get("type") == "failed"],
        gave_up=[line for line in lines if line.get("type") == "gave_up"],
        summary=summary,
        returncode=returncode,
        stderr=stderr,
    )


def peer_send(
    tmp: Path,
    port: int,
    pki: TestPki,
    messages: list[str] | None = None,
    *,
    credentials: Credentials | str | None = "peer",
    timeout: float = 120,
    **flags: Any,
) -> SendResult:
    """Run ``sender.js`` once against ``127.0.0.1:port`` (trusting ``pki.ca``) with ``messages`` and ``flags``
    (``generate=500``, ``resend=True``, ``connections=4``, ``ack_timeout=5`` ...); return what it printed.
    ``credentials``: ``"peer"`` (default) for ``pki.peer``, a ``Credentials``, or ``None`` for no certificate."""
    tmp.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    out = tmp / f"sent-{stamp}.jsonl"
    source = None
    if messages:
        source = tmp / f"messages-{stamp}.jsonl"
        source.write_text("".join(json.dumps(message) + "\n" for message in messages))
    cert = pki.peer if credentials == "peer" else credentials
    cmd = sender_command(port, cert, pki.ca, out=out, messages=source, **flags)  # type: ignore[arg-type]
    done = subprocess.run(cmd, cwd=PEER_DIR, capture_output=True, text=True, timeout=timeout, check=False)
    return parse_sender_output(out, done.returncode, done.stderr)


@dataclass
class Receiver:
    """A running ``receiver.js``: ``port``, ``out`` (its JSON lines); ``messages()`` reads what it received."""

    port: int
    out: Path
    proc: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self) -> list[dict[str, Any]]:
        return [line for line in read_json_lines(self.out) if line.get("type") == "message"]

    def wait_for(self, count: int, *, seconds: float = 30) -> list[dict[str, Any]]:
        """Wait until ``count`` messages arrived (or ``seconds`` passed); return them all."""
        deadline = time.monotonic() + seconds
        while len(self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages()


@contextmanager
def hl7_receiver(
    tmp: Path, pki: TestPki, *, ack: str = "AA", client_ca: bool = True, plain: bool = False
) -> Iterator[Receiver]:
    """Run ``receiver.js`` on a free loopback port with ``pki.server``'s certificate, asking clients for a
    certificate signed by ``pki.ca`` when ``client_ca``; answering ``ack``. Stopped when the block ends."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"received-{time.monotonic_ns()}.jsonl"
    cmd = ["node", str(RECEIVER), "--port", "0", "--out", str(out), "--ack", ack]
    if plain:
        cmd.append("--plain")
    else:
        cmd += ["--cert", str(pki.server.cert), "--key", str(pki.server.key)]
        if client_ca:
            cmd += ["--ca", str(pki.ca)]
    proc = subprocess.Popen(cmd, cwd=PEER_DIR, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            listening = [line for line in read_json_lines(out) if line.get("type") == "listening"]
            if listening:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"receiver.js did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
        yield Receiver(port=int(listening[0]["port"]), out=out, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- The real listener: the Procfile's hl7 line ---


@dataclass
class Listener:
    """``manage.py hl7_listen`` as the Procfile runs it, on ``127.0.0.1:port`` with TLS; ``start()`` again after
    ``kill()`` (same port, same environment). ``starts`` counts the processes started, ``log`` holds their output."""

    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self, *, seconds: float = 60) -> None:
        """Start the listener and wait until it accepts connections; ``RuntimeError`` with its log if it exits."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                procfile_command("hl7"), cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hl7_listen exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"hl7_listen did not listen on {self.port} in {seconds} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the listener (a crash: nothing is flushed or closed) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.kills += 1
        if self.proc is not None:
            self.proc.wait(10)
            self.exits.append(self.proc.returncode)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def listener_env(tmp: Path, pki: TestPki, *, database_url: str, port: int, **extra: str) -> dict[str, str]:
    """The listener's environment: the test database, its own var folder and broker folder, TLS with client
    certificates signed by ``pki.ca`` (HL7_TLS_*), ``127.0.0.1:port``."""
    return base_env(
        SANDBOX_ENABLED="true",
        DATABASE_URL=database_url,
        HC_VAR_DIR=str(tmp / "var"),
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_DIR=str(tmp / "broker"),
        HL7_LISTEN_HOST="127.0.0.1",
        HL7_LISTEN_PORT=str(port),
        HL7_TLS_CERT=str(pki.server.cert),
        HL7_TLS_KEY=str(pki.server.key),
        HL7_TLS_CLIENT_CA=str(pki.ca),
        **extra,
    )


@contextmanager
def hl7_listener(tmp: Path, pki: TestPki, *, database_url: str, **extra: str) -> Iterator[Listener]:
    """Run the listener (see ``Listener``) on a free port until the block ends."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listener = Listener(
        port=port, env=listener_env(tmp, pki, database_url=database_url, port=port, **extra), log=tmp / "hl7.log"
    )
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def peer_site(pki: TestPki, name: str) -> Any:
    """Create the hospital whose interface engine is the peer: an ``EHRSite`` named ``name`` with HL7 v2 intake on,
    MSH-3/MSH-4 ``SENDING_APPLICATION``/``SENDING_FACILITY`` and the peer's certificate pinned (as openssl prints its
    SHA-256: ``AB:CD:...``); return it."""
    from healthcommerce.ehr.models import EHRSite
    from healthcommerce.ehr.sitefeatures import site_settings_update

    slug = name.lower().replace(" ", "-")
    site = EHRSite.objects.create(name=name, iss=f"https://fhir.{slug}.example/R4", client_id=slug)
    settings = {
        "hl7_enabled": True,
        "hl7_sending_application": SENDING_APPLICATION,
        "hl7_sending_facility": SENDING_FACILITY,
        "hl7_client_certificate": pki.peer.fingerprint,
    }
    site_settings_update(site, settings)
    return site
