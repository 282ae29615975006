"""A loopback stand-in clearinghouse for the tests: ``http.server.ThreadingHTTPServer`` on 127.0.0.1, port 0, in a
thread, answering ``POST /x12`` (a 270, ``Authorization: Bearer sandbox-clearinghouse``) and
``POST /eligibility/v3`` (Stedi-shaped JSON, ``Authorization: sandbox-clearinghouse``) with the sandbox's pure
functions (``healthcommerce.sandbox.clearinghouse``: its own X12 reader and writer, independent of the code under
test). Faults are set per test on the ``StandIn``: ``delay`` (seconds before answering), ``status`` (an HTTP status
to answer instead; 429 and 503 carry ``Retry-After: 7``), ``garbage`` (a 200 with a body that is neither X12 nor
JSON) and ``drop`` (close the connection without answering). ``requests_seen`` holds every body received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from healthcommerce.sandbox.clearinghouse import SANDBOX_CLEARINGHOUSE_KEY, answer_json, answer_x12

GARBAGE = b"<html><body>Service temporarily moved</body></html>"


@dataclass
class StandIn:
    """The running stand-in: ``url`` (``http://127.0.0.1:<port>``), the faults to apply to the next requests and
    what it received (``requests_seen``: bodies as text; ``headers_seen``: their header dicts)."""

    url: str = ""
    delay: float = 0.0
    status: int | None = None
    garbage: bool = False
    drop: bool = False
    requests_seen: list[str] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def x12_url(self) -> str:
        return f"{self.url}/x12"

    @property
    def json_url(self) -> str:
        return f"{self.url}/eligibility/v3"


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class bound to ``stand_in``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: bodies hold test PHI
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            stand_in.requests_seen.append(body)
            stand_in.headers_seen.append(dict(self.headers.items()))
            if stand_in.delay:
                time.sleep(stand_in.delay)
            if stand_in.drop:
                self.close_connection = True
                self.connection.close()
                return
            if stand_in.status is not None:
                headers = {"Retry-After": "7"} if stand_in.status in (429, 503) else {}
                return self._send(stand_in.status, b"unavailable", "text/plain", headers)
            if stand_in.garbage:
                return self._send(200, GARBAGE, "text/html")
            if self.path == "/x12":
                return self._x12(body)
            if self.path == "/eligibility/v3":
                return self._json(body)
            return self._send(404, b"not found", "text/plain")

        def _x12(self, body: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {SANDBOX_CLEARINGHOUSE_KEY}":
                return self._send(401, b"unauthorized", "text/plain")
            status, text = answer_x12(body)
            self._send(status, text.encode(), "application/EDI-X12" if status == 200 else "text/plain")

        def _json(self, body: str) -> None:
            if self.headers.get("Authorization") != SANDBOX_CLEARINGHOUSE_KEY:
                return self._send(401, b'{"message": "Unauthorized"}', "application/json")
            try:
                status, answer = answer_json(json.loads(body))
            except ValueError:
                status, answer = 400, {"errors": [{"code": "33", "description": "Input Errors"}]}
            self._send(status, json.dumps(answer).encode(), "application/json")

        def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up first (a timeout test)
                self.close_connection = True

    return Handler


@contextmanager
def clearinghouse_stand_in() -> Iterator[StandIn]:
    """Run a ``StandIn`` on 127.0.0.1 (an ephemeral port) for the ``with`` block, then shut it down."""
    stand_in = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    server.daemon_threads = True
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="clearinghouse-stand-in", daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def clearinghouse() -> Iterator[StandIn]:
    """A fresh stand-in clearinghouse for one test (``clearinghouse_stand_in``)."""
    with clearinghouse_stand_in() as stand_in:
        yield stand_in


def eligibility_on(site: object, url: str, **changes: object) -> None:
    """Turn eligibility checks on for ``site`` against the stand-in (or the sandbox's) X12 endpoint ``url``, with the
    stand-in's key and test ids; ``changes`` override single settings (``timeout_seconds=2``, ``receiver_id=""``)."""
    from healthcommerce.ehr.sitefeatures import site_settings_update

    values: dict[str, object] = {
        "eligibility_enabled": True,
        "clearinghouse": "x12_https",
        "clearinghouse_url": url,
        "clearinghouse_api_key": SANDBOX_CLEARINGHOUSE_KEY,
        "submitter_id": "HEALTHCOMMERCE",
        "receiver_id": "STANDIN",
        "provider_npi": "1234567893",
        "provider_name": "CASCO SUPPLY",
    }
    site_settings_update(site, values | changes)  # type: ignore[arg-type]
