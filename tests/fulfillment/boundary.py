"""The commerce boundary, proven on the bytes: run a ``BoundaryCase`` (tests/fulfillment/boundary_strategies.py)
through a whole SMART launch against the fuzz sandbox EHR, the real pre-fill (``launch_prefill``), the
clinician's completion of what is missing (``order_update_draft``) and ``order_sign``, then deliver the
``order.signed`` outbox row to ``fulfillment.submit`` once per backend, each in a savepoint rolled back after.

What each delivery sends is captured where it leaves the process: every ``requests.Session.send`` (method, URL
with its query, headers, body), plus what a receiver recorded (the webhook's) or what the ``local`` backend
stored. Each is checked against that backend's allowlist, kept in its own test folder
(``tests/fulfillment/backends/<name>/allowlist.py``: key paths, query parameters, headers, routes; ``check_for``),
and no clinical value of the case or of the order may appear in it
anywhere (``leaks``).
"""

import datetime
import importlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote_plus

import requests
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client, override_settings

from healthcommerce.catalog.models import Product
from healthcommerce.ehr.models import Launch
from healthcommerce.fulfillment.commerce import commerce_order_build
from healthcommerce.orders.errors import OrderIncomplete
from healthcommerce.orders.events import order_subject
from healthcommerce.orders.fields import SHIP_TO_REQUIRED
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import launch_prefill, order_sign, order_update_draft
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_deliver
from tests.conftest import complete_launch, sandbox_database_copy, sandbox_server
from tests.fulfillment.boundary_strategies import SENTINEL_PREFIX, BoundaryCase
from tests.fulfillment.conftest import clinical_values
from tests.orders.fuzz_strategies import CANARY, path_text
from tests.orders.test_fuzz_prefill import CLIENT_ID, FuzzEHR, fixture_reads

FILLER_BIRTH_DATE = datetime.date(1951, 3, 17)
FILLER = {
    "patient_name": "Robin Filler",
    "ship_to": {"line": ["1 Filler Way"], "city": "Richmond", "state": "VA", "postal_code": "23219", "country": "US"},
    "contact_email": "robin.filler@example.org",
    "patient_birth_date": FILLER_BIRTH_DATE,
}


# --- the fuzz sandbox ----------------------------------------------------------------------------------------


@contextmanager
def boundary_sandbox(folder: Path) -> Iterator[FuzzEHR]:
    """A sandbox EHR over its own copy of the loaded database in ``folder`` (as the pre-fill fuzz test's)."""
    db = sandbox_database_copy(folder / "sandbox.sqlite3")
    originals, patients = fixture_reads(db)
    with sandbox_server(database=db) as sandbox:
        sandbox.manage(
            "sandbox_client", "add", "--client-id", CLIENT_ID, "--redirect-uri", "http://testserver/smart/callback"
        )
        yield FuzzEHR(sandbox=sandbox, db=db, originals=originals, patients=patients)


# --- what leaves the process ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One outbound HTTP request as sent (or as a receiver got it): method, full URL, headers, body bytes."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything in it as one string: the URL raw and decoded, the headers, the body (raw and, for JSON,
        re-serialized without ASCII escapes)."""
        body = self.body.decode(errors="replace")
        with suppress(ValueError):
            body += json.dumps(json.loads(self.body), ensure_ascii=False)
        return "\n".join([self.url, unquote_plus(self.url), json.dumps(self.headers, ensure_ascii=False), body])


def _bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode()


@contextmanager
def outbound_capture() -> Iterator[list[Sent]]:
    """Record every request any ``requests`` session sends inside the block (the prepared request: the bytes
    that go on the wire, before TLS)."""
    sent: list[Sent] = []
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(Sent(str(request.method), str(request.url), dict(request.headers), _bytes(request.body)))
        return original(self, request, **kwargs)

    with mock.patch.object(requests.Session, "send", send):
        yield sent


# --- the checks ----------------------------------------------------------------------------------------------


def distinctive(values: list[str], allowed: list[str]) -> list[str]:
    """The values worth looking for: at least 5 characters and inside none of the values allowed to cross (a
    request display equal to the product name cannot be told apart from it)."""
    folded = [value.lower() for value in allowed]
    return sorted({v for v in values if len(v) >= 5 and not any(v.lower() in a for a in folded)})


def leaks(text: str, clinical: list[str]) -> list[str]:
    """The clinical values found in ``text``: sentinels case-insensitively (a backend may change case), the
    others (codes, ids, dates) exactly, so a short code never matches inside a random hex digest."""
    lowered = text.lower()
    found = [v for v in clinical if (v.lower() in lowered if v.startswith(SENTINEL_PREFIX) else v in text)]
    if SENTINEL_PREFIX.lower() in lowered and not found:
        found.append(f"a {SENTINEL_PREFIX} sentinel")
    return found


def json_body(body: bytes) -> Any:
    """``body`` parsed as JSON (``{}`` when empty), or ``None`` when it is not JSON."""
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return None


Check = Callable[[Order, list[Sent], list[str]], list[str]]


def check_for(name: str) -> Check:
    """Backend ``name``'s boundary check: ``problems`` in its own test folder,
    ``tests/fulfillment/backends/<name>/allowlist.py`` (its allowlist lives beside its tests)."""
    module = importlib.import_module(f"tests.fulfillment.backends.{name}.allowlist")
    check: Check = module.problems
    return check


@dataclass
class Backend:
    """A backend to deliver to: its name, and what its receiver recorded since ``reset`` (for a backend whose
    far side the test runs; the client-side capture is always taken)."""

    name: str
    received: Callable[[], list[Sent]] = list
    reset: Callable[[], None] = lambda: None


# --- one example ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one example did: orders signed, per backend ``crossed`` (submitted) or the row's error code,
    requests checked, clinical values looked for, and every problem found."""

    signed: int = 0
    results: list[str] = field(default_factory=list)
    requests: int = 0
    values: int = 0
    problems: list[str] = field(default_factory=list)


class _Rollback(Exception):
    def __init__(self, outcome: Outcome | None = None) -> None:
        super().__init__()
        self.outcome = outcome


def _complete(order: Order, actor: str) -> Order:
    """Fill in, as the clinician would on the form, what the EHR did not give; a product when none matched."""
    changes: dict[str, Any] = {}
    if order.product_id is None:
        changes["product"] = Product.objects.filter(is_active=True).order_by("sku").first()
    for name in ("patient_name", "contact_email", "patient_birth_date"):
        if not getattr(order, name):
            changes[name] = FILLER[name]
    if not all((order.ship_to or {}).get(key) for key in SHIP_TO_REQUIRED):
        changes["ship_to"] = FILLER["ship_to"]
    return order_update_draft(order=order, actor=actor, changes=changes) if changes else order


def _clinical(planted: tuple[str, ...], order: Order, key: str) -> list[str]:
    """The values ``planted`` and those of ``order`` that must not cross, minus those indistinguishable from allowed
    ones."""
    try:
        allowed = [str(v) for v in _leaves(commerce_order_build(order=order, idempotency_key=key).to_dict())]
    except OrderIncomplete:
        allowed = []
    values = [
        *planted,
        *clinical_values(order),
        CANARY,
        order.signed_by,
        order.request_reference.partition("/")[2],
        FILLER_BIRTH_DATE.isoformat(),
    ]
    return distinctive([v for v in values if v and v != "devreq021"], allowed)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for child in value.values() for leaf in _leaves(child)]
    if isinstance(value, list | tuple):
        return [leaf for child in value for leaf in _leaves(child)]
    return [value]


def _deliver(message: OutboxMessage, backend: Backend) -> tuple[list[Sent], str]:
    """Deliver ``message`` with ``backend`` selected; return what was sent and ``crossed`` or the row's error."""
    backend.reset()
    with override_settings(COMMERCE_BACKEND=backend.name), outbound_capture() as sent:
        outbox_deliver(message_id=message.pk)
    message.refresh_from_db()
    result = "crossed" if message.status == OutboxMessage.Status.DONE else message.last_error or message.status
    return [*sent, *backend.received()], f"{backend.name}:{result}"


def fulfil(planted: tuple[str, ...], order: Order, backends: list[Backend], outcome: Outcome) -> None:
    """Deliver ``order``'s ``order.signed`` row to each backend (each in a savepoint rolled back after) and add to
    ``outcome`` what crossed and every problem: a key outside the backend's allowlist, or a value of ``planted``
    or of the order's clinical values in what it sent."""
    message = OutboxMessage.objects.get(subject=order_subject(order), subscriber="fulfillment.submit")
    clinical = _clinical(planted, order, message.idempotency_key)
    outcome.values += len(clinical)
    _eligibility(planted, order, outcome)
    for backend in backends:
        try:
            with transaction.atomic():
                sent, result = _deliver(message, backend)
                outcome.results.append(result)
                outcome.requests += len(sent)
                outcome.problems += [f"[{order.reference}] {p}" for p in check_for(backend.name)(order, sent, clinical)]
                raise _Rollback()
        except _Rollback:
            pass


def _eligibility(planted: tuple[str, ...], order: Order, outcome: Outcome) -> None:
    """Deliver ``order``'s ``order.eligibility`` row, when the site checks its coverage (in a savepoint rolled back
    after), and add what crossed to the clearinghouse and every problem (tests/coverage/boundary270.py): a 270
    carries the member's name, birth date and member id, and nothing else of the chart."""
    from tests.coverage.boundary270 import problems, sent_270

    message = OutboxMessage.objects.filter(subject=order_subject(order), topic="order.eligibility").first()
    if message is None:
        outcome.results.append("clearinghouse:not asked")
        return
    clinical = [*planted, *clinical_values(order), CANARY]
    try:
        with transaction.atomic():
            with outbound_capture() as sent:
                outbox_deliver(message_id=message.pk)
            message.refresh_from_db()
            result = "crossed" if sent_270(sent) else message.last_error or message.result or message.status
            outcome.results.append(f"clearinghouse:{result}")
            outcome.requests += len(sent)
            outcome.problems += [f"[{order.reference}] {p}" for p in problems(order, sent, clinical)]
            raise _Rollback()
    except _Rollback:
        pass


def exercise(case: BoundaryCase, ehr: FuzzEHR, backends: list[Backend]) -> Outcome:
    """Launch, pre-fill, complete and sign every draft, deliver each signed order to every backend, check."""
    outcome = Outcome()
    client = Client()
    result = complete_launch(client, ehr.sandbox, patient=case.fuzz.patient, request=case.fuzz.request)
    if not result.launch_id:
        outcome.results.append("no launch")
        return outcome
    launch = Launch.objects.get(pk=result.launch_id)
    launch_prefill(launch=launch)
    for draft in Order.objects.filter(launch=launch, status=Order.Status.DRAFT).select_related("product", "site"):
        try:
            # A product picked for an unmapped request is confirmed, as the clinician ticks it on the form.
            order = order_sign(order=_complete(draft, launch.fhir_user), launch=launch, mismatch_confirmed=True)
        except OrderIncomplete as exc:
            outcome.results.append(f"unsigned:{exc.code}")
            continue
        outcome.signed += 1
        fulfil(case.planted, order, backends, outcome)
    return outcome


def hl7_exercise(lines: list[str], planted: tuple[str, ...], site: Any, backends: list[Backend]) -> Outcome:
    """Store the HL7 v2 message ``lines`` for ``site`` and hand it to the intake handler (``order_hl7_handle``), in
    a savepoint always rolled back; deliver the order it signs to every backend and check; also check that the
    order's own columns keep none of ``planted`` (DG1, NTE, OBX ... are never stored beyond the raw copy)."""
    from healthcommerce.orders.hl7 import order_hl7_handle
    from tests.orders.hl7_samples import hl7_orders_deliver, intake_context

    outcome = Outcome()
    try:
        with transaction.atomic():
            parsed, ctx = intake_context(site, "\r".join(lines))
            answer = order_hl7_handle(parsed, ctx)
            hl7_orders_deliver()
            order = Order.objects.filter(reference=answer.order, status=Order.Status.SIGNED).first()
            if order is None:
                outcome.results.append(f"hl7:{answer.code}:{answer.location}")
                raise _Rollback()
            outcome.signed += 1
            kept = " ".join(str(getattr(order, f.attname)) for f in Order._meta.concrete_fields)
            outcome.problems += [f"[{order.reference}] the order keeps {v!r}" for v in leaks(kept, list(planted))]
            fulfil(planted, order, backends, outcome)
            raise _Rollback()
    except _Rollback:
        pass
    return outcome


def run_case(case: BoundaryCase, ehr: FuzzEHR, backends: list[Backend]) -> Outcome:
    """Serve the case, exercise it inside a savepoint that is always rolled back, restore the sandbox."""
    changed = ehr.serve(case.fuzz)
    try:
        with transaction.atomic():
            raise _Rollback(exercise(case, ehr, backends))
    except _Rollback as done:
        assert done.outcome is not None
        return done.outcome
    finally:
        ehr.restore(changed)


@dataclass
class Tally:
    """Totals over the examples run (shrinking included), written to ``var/<name>.json`` and stdout (``-s``)."""

    name: str
    max_examples: int
    examples: int = 0
    signed: int = 0
    requests: int = 0
    values: int = 0
    results: dict[str, int] = field(default_factory=dict)
    sites: dict[str, int] = field(default_factory=dict)  # where clinical content was planted, in examples signed
    started: float = field(default_factory=time.monotonic)

    def add(self, case: BoundaryCase, outcome: Outcome) -> None:
        self.examples += 1
        self.signed += outcome.signed
        self.requests += outcome.requests
        self.values += outcome.values
        for result in outcome.results:
            self.results[result] = self.results.get(result, 0) + 1
        for mutation in case.fuzz.mutations if outcome.signed else ():
            if mutation.kind == "clinical":
                site = f"{mutation.target.partition('/')[0]}.{path_text(mutation.path)}"
                self.sites[site] = self.sites.get(site, 0) + 1

    def crossed(self, backend: str) -> int:
        return self.results.get(f"{backend}:crossed", 0)

    def write(self) -> None:
        seconds = time.monotonic() - self.started
        record = {
            "examples": self.examples,
            "max_examples": self.max_examples,
            "seconds": round(seconds, 1),
            "orders_signed": self.signed,
            "requests_checked": self.requests,
            "clinical_values_checked": self.values,
            "results": dict(sorted(self.results.items())),
            "planted_sites_signed": dict(sorted(self.sites.items())),
        }
        path = Path(django_settings.VAR_DIR) / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        print(f"\n{self.name}: {json.dumps(record)}")


def run_examples(ehr: FuzzEHR, backends: list[Backend], tally: Tally, max_examples: int) -> None:
    """Run ``max_examples`` derandomized hypothesis examples (``boundary_cases``) through ``run_case`` for
    ``backends``, adding each to ``tally`` and failing on the first problem; ``tally`` is written either way."""
    import hypothesis
    from hypothesis import HealthCheck, given

    from tests.fulfillment.boundary_strategies import boundary_cases

    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=boundary_cases(ehr.patients, ehr.originals))
    def check(case: BoundaryCase) -> None:
        outcome = run_case(case, ehr, backends)
        tally.add(case, outcome)
        assert not outcome.problems, "\n".join(outcome.problems)

    try:
        check()
    finally:
        tally.write()
