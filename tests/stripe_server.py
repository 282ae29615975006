"""localstripe (a fake Stripe API and stripe.js, PyPI ``localstripe``) on loopback for tests, and a recorder for the
webhooks it sends.

``python -m tests.stripe_server --port N`` runs localstripe's own aiohttp app, but on 127.0.0.1 only and with its
store in memory: its ``localstripe`` command listens on every interface (``::``) and pickles its store to
``/tmp/localstripe.pickle`` after every write, a file every run on the machine would share.

What localstripe 1.15.10 does and does not do, as the tests here found: PaymentIntents (create with
``payment_method_types``, not ``automatic_payment_methods``; update; confirm; cancel), ``pm_card_visa`` and
other test payment methods, Refunds by PaymentIntent, signed webhooks (``Stripe-Signature``, registered through
``POST /_config/webhooks/<id>``, sent a second after the event) for ``payment_intent.succeeded`` and
``payment_intent.payment_failed``; stripe.js at ``/js.stripe.com/v3/``. It ignores ``Idempotency-Key`` (the
same key creates a new PaymentIntent), sends no ``charge.refunded``, and declines at charge time only
4000000000000341 (``pm_card_chargeCustomerFail``), 4000008260003178 and 4000008400001629: Stripe's "generic
decline" 4000000000000002 (``pm_card_visa_chargeDeclined``) is declined only when attached to a customer.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.servers import ROOT, free_port, wait_http


@contextmanager
def localstripe_server() -> Iterator[str]:
    """Run localstripe on a free loopback port until the block ends; yield its base URL ``http://127.0.0.1:N``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stripe_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"{base}/js.stripe.com/v3/", proc, seconds=30)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Delivery:
    """One webhook request as received: the raw body and the ``Stripe-Signature`` header."""

    body: bytes
    signature: str

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookRecorder:
    """An HTTP server on loopback that keeps every POST localstripe sends it (``url``), to replay into the app."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)

    def wait_for(self, event_type: str, object_id: str, *, seconds: float = 10) -> Delivery:
        """Return the first delivery of ``event_type`` about ``object_id``; raise ``AssertionError`` after
        ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for delivery in list(self.deliveries):
                event = delivery.event
                if event["type"] == event_type and event["data"]["object"]["id"] == object_id:
                    return delivery
            time.sleep(0.1)
        seen = [d.event["type"] for d in self.deliveries]
        raise AssertionError(f"no {event_type} for {object_id} in {seconds} s; got {seen}")


@contextmanager
def webhook_recorder(stripe_base: str, *, webhook_id: str, secret: str) -> Iterator[WebhookRecorder]:
    """Run a recorder and register it with localstripe at ``stripe_base`` as webhook ``webhook_id`` signed with
    ``secret`` (``POST /_config/webhooks/<id>``); the registration points at a dead port on exit."""
    deliveries: list[Delivery] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            deliveries.append(Delivery(body=body, signature=self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe/"
    config = f"{stripe_base}/_config/webhooks/{webhook_id}"
    requests.post(config, data={"url": url, "secret": secret}, timeout=5).raise_for_status()
    try:
        yield WebhookRecorder(url=url, deliveries=deliveries)
    finally:
        dead = f"http://127.0.0.1:{free_port()}/"
        requests.post(config, data={"url": dead, "secret": secret}, timeout=5)
        server.shutdown()
        server.server_close()


def main() -> None:
    """Serve localstripe's app on ``127.0.0.1:--port`` with its store in memory only."""
    from aiohttp import web
    from localstripe import resources, server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    web.run_app(server.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
