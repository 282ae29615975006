"""A DME supplier's webhook endpoint that misbehaves on purpose, for ``make test-faults``.

It speaks what ``healthcommerce/fulfillment/backends/webhook`` sends (docs/adr/0009): a Standard Webhooks POST
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``)
with ``{"type": "order.created", "data": CommerceOrder.to_dict()}``. It checks the signature with its own HMAC,
deduplicates on ``webhook-id`` as the specification tells receivers to, and records per idempotency key how many
requests came and how many times it *created* an order (more than one is a duplicate at the backend).

Faults are seeded and drawn per (order number, attempt number), so a seed gives the same plan whatever order the
workers send in: 429 with ``Retry-After: 1``, 500, a connection reset before or after storing the order, and a
timeout (store, then answer only after the client's read timeout). At most ``max_faults`` requests per key are
faulted. A repeat of a stored message gets a 409 naming it (success for the backend). Orders whose reference is in
``reject`` get a 422 (permanent: the outbox must dead-letter them).
"""

import base64
import hashlib
import hmac
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port

# Kinds of injected HTTP fault and their chance on each of a key's first ``max_faults`` requests.
FAULT_WEIGHTS = {
    "none": 0.56,
    "http_429": 0.10,
    "http_500": 0.10,
    "reset_before_store": 0.08,
    "reset_after_store": 0.08,
    "timeout_after_store": 0.08,
}
# Seconds the receiver may be off the sender's clock (Standard Webhooks: refuse replays).
TIMESTAMP_TOLERANCE = 300


@dataclass
class SupplierLedger:
    """What the supplier saw, guarded by ``lock``.

    ``requests``/``created``: per idempotency key, requests received and orders created (must end at 1).
    ``keys_of``: the idempotency keys stored per order reference (more than one is a duplicate order).
    ``stored``: ``webhook-id`` -> the supplier's order (``id``, ``key``, ``reference``). ``injected``: count per
    fault kind (``http_409`` and ``http_422`` included). ``bad_signatures``, ``bad_ids``: requests refused for a
    wrong signature, and ``webhook-id`` values not derived from the key as ADR 0009 says (both must stay 0).
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    created: Counter[str] = field(default_factory=Counter)
    keys_of: dict[str, set[str]] = field(default_factory=dict)
    stored: dict[str, dict[str, str]] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    bad_ids: int = 0

    def store(self, message_id: str, key: str, reference: str) -> dict[str, str]:
        """Create the supplier's order for ``message_id`` unless it exists; return it. Caller holds ``lock``."""
        if message_id not in self.stored:
            self.stored[message_id] = {"id": f"sup_{len(self.stored) + 1:05d}", "key": key, "reference": reference}
            self.created[key] += 1
            self.keys_of.setdefault(reference, set()).add(key)
        return self.stored[message_id]


@dataclass(frozen=True)
class FaultPlan:
    """Which fault a request gets: drawn from ``seed``, the order's number in ``numbers`` (order reference -> the
    test's 0-based index, so a seed gives the same plan in every run) and the attempt, for the first
    ``max_faults`` requests of an order; ``reject`` holds the order references answered with 422."""

    seed: int
    numbers: Mapping[str, int]
    max_faults: int = 3
    reject: frozenset[str] = frozenset()

    def fault(self, reference: str, attempt: int) -> str:
        """Return the fault kind (a key of ``FAULT_WEIGHTS``) for the ``attempt``-th request (1-based) about the
        order ``reference``."""
        if attempt > self.max_faults:
            return "none"
        draw = random.Random(f"{self.seed}:{self.numbers.get(reference, reference)}:{attempt}")
        return draw.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]


def expected_webhook_id(key: str) -> str:
    """The ``webhook-id`` ADR 0009 derives from an order's idempotency key: ``msg_`` + 32 hex of SHA-256."""
    return "msg_" + hashlib.sha256(f"order.created\n{key}".encode()).hexdigest()[:32]


def signature_valid(headers: Any, body: bytes, key: bytes, *, now: float) -> bool:
    """Check a Standard Webhooks signature with HMAC-SHA256 over ``id.timestamp.body`` and the timestamp's age."""
    msg_id, stamp, signatures = (
        headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp.isdigit() and signatures) or abs(now - int(stamp)) > TIMESTAMP_TOLERANCE:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return any(
        version == "v1" and hmac.compare_digest(expected, value.encode())
        for version, _, value in (part.partition(",") for part in signatures.split())
    )


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the ledger is the record."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ledger, plan = self.server.ledger, self.server.plan
        if not signature_valid(self.headers, body, self.server.key, now=time.time()):
            with ledger.lock:
                ledger.bad_signatures += 1
            self._answer(401, {"error": "bad signature"})
            return
        event = json.loads(body)
        if event.get("type") != "order.created":
            self._answer(200, {})
            return
        message_id = self.headers["webhook-id"]
        key, reference = event["data"]["idempotency_key"], event["data"]["order_reference"]
        rejected = reference in plan.reject
        with ledger.lock:
            ledger.requests[key] += 1
            if message_id != expected_webhook_id(key):
                ledger.bad_ids += 1
            kind = plan.fault(reference, ledger.requests[key])
            if kind != "none":
                ledger.injected[kind] += 1
            if kind in ("reset_after_store", "timeout_after_store") and not rejected:
                ledger.store(message_id, key, reference)
        if kind == "http_429":
            self._answer(429, {"error": "slow down"}, retry_after="1")
        elif kind == "http_500":
            self._answer(500, {"error": "boom"})
        elif kind.startswith("reset"):
            self._reset()
        elif kind == "timeout_after_store":
            time.sleep(self.server.timeout_sleep)
            self._answer(200, {"id": "late"})  # the client has given up by now
        else:
            self._accept(message_id, key, reference, rejected)

    def _accept(self, message_id: str, key: str, reference: str, rejected: bool) -> None:
        ledger = self.server.ledger
        with ledger.lock:
            if rejected:
                ledger.injected["http_422"] += 1
            elif message_id in ledger.stored:
                ledger.injected["http_409"] += 1
            repeat = not rejected and message_id in ledger.stored
            order = None if rejected else ledger.store(message_id, key, reference)
        if order is None:
            self._answer(422, {"error": "we do not supply this order"})
        elif repeat:
            self._answer(409, {"webhook_id": message_id, "id": order["id"], "idempotency_key": key})
        else:
            self._answer(201, {"id": order["id"]})

    def _answer(self, status: int, answer: dict[str, Any], *, retry_after: str = "") -> None:
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client timed out and left

    def _reset(self) -> None:
        """Drop the connection with a TCP RST and no answer (SO_LINGER 0, then close)."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    ledger: SupplierLedger
    plan: FaultPlan
    key: bytes
    timeout_sleep: float


@dataclass
class Supplier:
    """A running receiver: POST to ``url``; ``ledger`` is what it saw."""

    url: str
    port: int
    ledger: SupplierLedger


@contextmanager
def supplier_running(*, secret: str, plan: FaultPlan, timeout_sleep: float) -> Iterator[Supplier]:
    """Serve the faulty supplier on a free loopback port until the block ends.

    ``secret`` is the ``whsec_<base64>`` the backend signs with; ``timeout_sleep`` (seconds) must exceed the
    workers' ``HTTP_READ_TIMEOUT`` so a ``timeout_after_store`` fault trips it.
    """
    server = _Server(("127.0.0.1", free_port()), _Handler)
    server.ledger, server.plan, server.timeout_sleep = SupplierLedger(), plan, timeout_sleep
    server.key = base64.b64decode(secret.removeprefix("whsec_"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        port = int(server.server_address[1])
        yield Supplier(url=f"http://127.0.0.1:{port}/hooks/orders", port=port, ledger=server.ledger)
    finally:
        server.shutdown()
        server.server_close()
