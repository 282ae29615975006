"""A local HTTPS webhook receiver per test module: a test CA made with ``cryptography`` issues its server
certificate (SAN 127.0.0.1) and our client certificate; the receiver demands a client certificate from that CA
(``ssl.CERT_REQUIRED``), checks the Standard Webhooks signature with its own HMAC (not the backend's code) and
records every request. Needs nothing but Python."""

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fulfillment.conftest import backend_options_set
from tests.servers import free_port

SECRET_KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()


@dataclass(frozen=True)
class Pki:
    """PEM files: the test CA, the receiver's certificate and key, our client certificate and key, and an
    unrelated CA that issued neither."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    """Write a test CA, a receiver certificate for 127.0.0.1 and a client certificate it issued, and an unrelated
    CA, into ``folder``; for tests only."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("healthcommerce webhook test CA")
    server, server_key = _leaf(ca, ca_key, "supplier.test", server=True)
    client, client_key = _leaf(ca, ca_key, "healthcommerce client", server=False)
    other, _ = _ca("some other CA")
    return Pki(
        ca=_write_cert(ca, folder / "ca.pem"),
        server_cert=_write_cert(server, folder / "server.pem"),
        server_key=_write_key(server_key, folder / "server-key.pem"),
        client_cert=_write_cert(client, folder / "client.pem"),
        client_key=_write_key(client_key, folder / "client-key.pem"),
        other_ca=_write_cert(other, folder / "other-ca.pem"),
    )


def signature_valid(headers: dict[str, str], body: bytes, key: bytes = SECRET_KEY) -> bool:
    """The receiver's own Standard Webhooks check: HMAC-SHA256 over ``id.timestamp.body`` with ``key``, compared
    with every ``v1,<base64>`` in ``webhook-signature``."""
    msg_id, stamp, signatures = (
        headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp.isdigit() and signatures):
        return False
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return True
    return False


@dataclass
class Received:
    """One request the receiver took: its path, headers (lower-case names), raw body, whether the signature
    was valid, and the common name of the client certificate."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    client_cn: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The running receiver: ``url``, its ``pki``, the ``requests`` it recorded and the ``replies`` it will give.

    With no reply queued it answers 401 to a bad signature, else 202 ``{"id": "sup-<n>"}`` with one ``n`` per
    webhook-id (a deduplicating supplier). A queued reply is ``(status, json body or None, headers)``.
    """

    url: str
    pki: Pki
    requests: list[Received] = field(default_factory=list)
    replies: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, status: int, body: Any = None, **headers: str) -> None:
        """Queue one answer for the next request."""
        self.replies.append((status, body, headers))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.replies.clear()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            peer = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
            subject = dict(pair[0] for pair in peer.get("subject", ()))
            ok = signature_valid(headers, body)
            with receiver.lock:
                receiver.requests.append(Received(self.path, headers, body, ok, str(subject.get("commonName", ""))))
                queued = receiver.replies.pop(0) if receiver.replies else None
                msg_id = headers.get("webhook-id", "")
                supplier_id = receiver.ids.setdefault(msg_id, f"sup-{len(receiver.ids) + 1}")
            if queued is not None:
                status, data, extra = queued
            elif not ok:
                status, data, extra = 401, {"error": "invalid signature"}, {}
            else:
                status, data, extra = 202, {"id": supplier_id}, {}
            payload = b"" if data is None else json.dumps(data).encode()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name.replace("_", "-"), value)
            if data is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """An HTTPS receiver on 127.0.0.1 that requires a client certificate from the test CA."""
    pki = make_pki(tmp_path_factory.mktemp("webhook-pki"))
    port = free_port()
    receiver = Receiver(url=f"https://127.0.0.1:{port}/hooks/orders", pki=pki)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(cafile=pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def webhook_settings(receiver: Receiver, settings: Any) -> Receiver:
    """Point the webhook backend at the receiver with the client certificate and the test CA; empty the record."""
    receiver.reset()
    backend_options_set(settings, "webhook", URL=receiver.url)
    backend_options_set(settings, "webhook", SECRET=SECRET)
    backend_options_set(settings, "webhook", CLIENT_CERT=str(receiver.pki.client_cert))
    backend_options_set(settings, "webhook", CLIENT_KEY=str(receiver.pki.client_key))
    backend_options_set(settings, "webhook", CA_BUNDLE=str(receiver.pki.ca))
    return receiver
