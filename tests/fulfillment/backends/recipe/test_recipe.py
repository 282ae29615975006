"""docs/extending.md "Add a commerce backend", done exactly as written: a backend folder (here a temporary package
on ``sys.path``, ``acme/__init__.py`` + ``acme/backend.py``) and one ``settings.COMMERCE_BACKENDS`` entry, and
nothing else. Against a stand-in for Acme's API on 127.0.0.1, through the outbox (``tests/pipeline.py``), it
submits, confirms, is checked by its own ``check()`` and is reconciled by its ``status``."""

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from healthcommerce.fulfillment.checks import commerce_backend_check
from healthcommerce.fulfillment.reconcile import fulfillment_reconcile
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_complete, purchase_link_verify
from tests.fulfillment.conftest import BIRTH_DATE, clinical_values
from tests.pipeline import deliver, downstream, rows_of

# The recipe's step 1-2: the folder and the class, as a newcomer would write them from extending.md.
BACKEND_PY = '''
"""The ``acme`` backend: orders on Acme's order API, idempotent on ``Idempotency-Key``."""

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from healthcommerce.core.http import outbound_session
from healthcommerce.fulfillment.backends.base import (
    BackendStatus,
    CommerceBackend,
    PermanentBackendError,
    SubmitResult,
    TemporaryBackendError,
    url_check,
)


class AcmeCommerceBackend(CommerceBackend):
    """Options: ``URL`` (env ``ACME_URL``)."""

    name = "acme"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.url = str(self.options.get("URL") or "")
        if not self.url:
            raise ImproperlyConfigured("ACME_URL must be set for the acme backend.")
        self.session = outbound_session(only_origin=self.url)

    @classmethod
    def check(cls, options: Any, *, selected: bool) -> list[Any]:
        errors = super().check(options, selected=selected)
        if selected and not errors:
            errors += url_check(str(options["URL"]), setting="ACME_URL")
        return errors

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self.url + path, **kwargs)
        if response.status_code == 429 or response.status_code >= 500:
            raise TemporaryBackendError(code=f"http_{response.status_code}")
        if response.status_code >= 400 and response.status_code != 409:
            raise PermanentBackendError(code=f"http_{response.status_code}")
        return response.json()

    def submit(self, order):
        answer = self._call("POST", "/orders", json=order.to_dict(), headers={"Idempotency-Key": order.idempotency_key})
        return SubmitResult(external_id=str(answer["id"]))

    def confirm(self, external_id, confirmation=None):
        body = confirmation.to_dict() if confirmation else {}
        self._call("POST", f"/orders/{external_id}/confirm", json=body)

    def status(self, external_id):
        answer = self._call("GET", f"/orders/{external_id}")
        return BackendStatus(answer["status"], tracking_number=answer.get("tracking_number", ""))
'''


class Acme:
    """A stand-in for Acme's order API: ``POST /orders`` (idempotent on ``Idempotency-Key``),
    ``POST /orders/<id>/confirm``, ``GET /orders/<id>``; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path, headers, body))
        if method == "POST" and path == "/orders":
            key = headers["Idempotency-Key"]
            order_id = self.by_key.setdefault(key, f"AC-{len(self.by_key) + 1}")
            self.orders.setdefault(order_id, {"status": "received"})
            return 201, {"id": order_id}
        order_id = path.split("/")[2]
        if order_id not in self.orders:
            return 404, {}
        if method == "POST" and path.endswith("/confirm"):
            self.orders[order_id]["status"] = "confirmed"
        return 200, {"id": order_id, **self.orders[order_id]}


@pytest.fixture
def acme() -> Iterator[tuple[Acme, str]]:
    api = Acme()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = api.handle(self.command, self.path, dict(self.headers), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def acme_configured(acme: tuple[Acme, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Acme:
    """Steps 1-2 (the folder) and step 8 (one settings entry), nothing else."""
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "__init__.py").write_text('"""The acme commerce backend."""\n')
    (folder / "backend.py").write_text(textwrap.dedent(BACKEND_PY))
    monkeypatch.syspath_prepend(str(tmp_path))
    api, url = acme
    settings.COMMERCE_BACKENDS = {
        **settings.COMMERCE_BACKENDS,
        "acme": {"BACKEND": "acme.backend.AcmeCommerceBackend", "OPTIONS": {"URL": url}},
    }
    settings.COMMERCE_BACKEND = "acme"
    return api


def test_the_recipes_backend_submits_confirms_and_is_reconciled_through_the_outbox(
    acme_configured: Acme, order: Order, message: OutboxMessage
) -> None:
    api = acme_configured

    deliver(message)  # fulfillment.submit, then what it published

    order.refresh_from_db()
    assert (order.status, order.commerce_backend, order.commerce_id) == ("submitted", "acme", "AC-1")
    method, path, headers, body = api.requests[0]
    assert (method, path, headers["Idempotency-Key"]) == ("POST", "/orders", message.idempotency_key)
    assert body["order_reference"] == order.reference
    sent = json.dumps([r[3] for r in api.requests])
    assert not [value for value in clinical_values(order) if value and value in sent]

    link = PurchaseLink.objects.get(order=order)
    assert purchase_link_verify(link=link, birth_date=BIRTH_DATE, ip="203.0.113.9")
    purchase_link_complete(link=link, actor_ip="203.0.113.9")
    downstream()
    assert ("POST", "/orders/AC-1/confirm") in [(r[0], r[1]) for r in api.requests]
    assert rows_of(order, "fulfillment.confirm").get().status == OutboxMessage.Status.DONE

    api.orders["AC-1"].update(status="shipped", tracking_number="AC-TRK-1")
    report = fulfillment_reconcile()
    order.refresh_from_db()
    assert (order.status, order.fulfillment_status, order.tracking_number) == ("fulfilled", "shipped", "AC-TRK-1")
    assert (report.checked, report.changed, report.skipped) == (1, 1, set())


def test_the_recipes_backend_is_checked_by_its_own_check(acme_configured: Acme, settings: Any) -> None:
    assert commerce_backend_check() == []
    entry = settings.COMMERCE_BACKENDS["acme"]
    settings.COMMERCE_BACKENDS = {**settings.COMMERCE_BACKENDS, "acme": {**entry, "OPTIONS": {"URL": ""}}}
    messages = commerce_backend_check()
    assert [m.id for m in messages] == ["healthcommerce.E101"] and "ACME_URL" in messages[0].msg
    plain = {"URL": "http://acme.example"}
    settings.COMMERCE_BACKENDS = {**settings.COMMERCE_BACKENDS, "acme": {**entry, "OPTIONS": plain}}
    assert [m.id for m in commerce_backend_check()] == ["healthcommerce.E102"]
