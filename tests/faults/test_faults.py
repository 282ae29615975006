"""``make test-faults`` (issue 7): sign at least 200 orders while the pipeline is being broken, and show that every
order ends fulfilled exactly once, or dead-lettered when the supplier refuses it, and none is lost.

Real processes: the Procfile's ``worker`` (2 workers) and ``beat`` on a private PostgreSQL cluster and a private
Redis (``tests/faults/stores.py``), the real ``webhook`` backend posting to a supplier that misbehaves on purpose
(``tests/faults/receiver.py``). Orders are signed here through ``order_sign``, the sign path the clinician's page
uses, so the outbox row commits with the signature. Meanwhile the test SIGKILLs worker processes at random
(``KILLS`` times), restarts Redis and PostgreSQL, and the supplier answers 429 with ``Retry-After``, 500, resets
connections, times out, answers 409 to repeats and 422 to a fixed set of orders. A worker or beat that exits on its
own is started again, as systemd's ``Restart=always`` would, and counted (``processes_exited_by_themselves``).

Fulfilled: the supplier created the order once (by idempotency key, and one key per order reference); the order is
``submitted`` with its ``fulfillment.submit`` and ``purchaselinks.deliver`` rows ``done``; it has one live, sent
purchase link, and an email carries that link's token. Email is at least once: a worker killed between the mail
relay's acceptance and the commit of ``sent_at`` leaves the retry to revoke that link and send a fresh one, so a
patient may get a second email whose link supersedes the first; the table counts those (``repeated_link_emails``)
and the test holds that every emailed token is one of the order's links.

Expected dead letter: a 422 order, whose submit row is ``dead`` (``http_422``), the order ``failed`` and the
supplier holding nothing. Anything else is lost.

Prints the table and writes it as JSON to ``<HC_VAR_DIR or var>/faults/last.json``. Needs PostgreSQL's server
binaries and ``redis-server``: a failure in CI, a skip elsewhere. ``FAULTS_SEED`` changes the draw.
"""

import base64
import contextlib
import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import environ
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import InterfaceError, OperationalError, connection, connections
from django.utils import timezone

from healthcommerce.catalog.models import Product
from healthcommerce.celery import app as celery_app
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import order_sign
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import token_hash
from tests.conftest import IN_CI
from tests.faults.processes import Fleet
from tests.faults.receiver import FaultPlan, Supplier, supplier_running
from tests.faults.stores import PrivatePostgres, PrivateRedis, missing_tools, private_postgres, private_redis
from tests.servers import base_env

pytestmark = pytest.mark.faults

ORDERS = 200
REJECTED = frozenset(range(7, ORDERS, 25))  # order numbers the supplier refuses (422): 8 expected dead letters
KILLS = 24
SIGN_SECONDS = 60.0  # the signatures are spread over this window, and so are the faults
REDIS_RESTART_AT, POSTGRES_RESTART_AT = 18.0, 38.0  # seconds into the window
DOWN_SECONDS = 3.0
DRAIN_SECONDS = 300
READ_TIMEOUT = 2.0  # the workers' HTTP_READ_TIMEOUT; the supplier's "timeout" fault sleeps longer
SEED = int(os.environ.get("FAULTS_SEED", "20261207"))
SECRET = "whsec_" + base64.b64encode(b"make-test-faults-shared-secret!!").decode()
PRACTITIONER = "Practitioner/pra1234"
# The broker options settings.py sets for Redis (docs/reliability.md "Celery and broker settings").
REDIS_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "max_retries": 2,
}
# What the worker and beat get on top of the production settings: short timeouts so a killed worker's claim
# (task time limit + 60 s) and an unconsumed publication (relay lease) run out within the test.
WORKER_ENV = {
    "COMMERCE_BACKEND": "webhook",
    "WEBHOOK_SECRET": SECRET,
    "HTTP_CONNECT_TIMEOUT": "2",
    "HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
    "CELERY_TASK_TIME_LIMIT": "15",
    "CELERY_TASK_SOFT_TIME_LIMIT": "12",
    "OUTBOX_RELAY_LEASE_SECONDS": "10",
    "OUTBOX_BACKOFF_BASE_SECONDS": "1",
    "SANDBOX_ENABLED": "true",
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
}
DB_ERRORS = (OperationalError, InterfaceError)
T = TypeVar("T")


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        message = "make test-faults needs " + ", ".join(missing)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message + "; CI runs it")


def _retrying(call: Callable[[], T], *, seconds: float = 120) -> T:
    """Run ``call``, again after a PostgreSQL restart (``OperationalError``/``InterfaceError``: drop the dead
    connection and wait), for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except DB_ERRORS:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _forget_connection() -> None:
    """Close and drop this thread's default connection, so the next query opens one from the current settings."""
    connection.close()
    with contextlib.suppress(AttributeError):  # this thread never opened one
        del connections["default"]


@contextmanager
def _this_process_on(pg: PrivatePostgres, redis_url: str, blocker: Any) -> Iterator[None]:
    """Point this process's database connection at ``pg`` and its Celery producer at ``redis_url`` (the sign
    path's on-commit publication), restoring both afterwards."""
    saved_db = connections.settings["default"]
    saved_conf = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    with blocker.unblock():
        _forget_connection()
        connections.settings["default"] = connections.configure_settings(
            {"default": environ.Env.db_url_config(pg.url) | {"CONN_HEALTH_CHECKS": True}}
        )["default"]
        celery_app.conf.broker_url, celery_app.conf.broker_transport_options = redis_url, REDIS_TRANSPORT_OPTIONS
        celery_app._pool, celery_app.amqp._producer_pool = None, None
        try:
            yield
        finally:
            _forget_connection()
            connections.settings["default"] = saved_db
            celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved_conf
            celery_app._pool, celery_app.amqp._producer_pool = None, None


def _drafts() -> tuple[Launch, list[Order]]:
    """Create a site, a product, a practitioner's launch and ``ORDERS`` complete drafts (synthetic people)."""
    site = EHRSite.objects.create(name="Faults clinic", iss="https://fhir.faults.example/R4", client_id="faults")
    product = Product.objects.create(sku="CPAP-E0601", name="CPAP device", kind=Product.Kind.DEVICE, hcpcs_code="E0601")
    launch = Launch.objects.create(
        site=site,
        status=Launch.Status.ACTIVE,
        state="faults-state",
        code_verifier="v",
        nonce="n",
        launch_token="t",
        expires_at=timezone.now() + timedelta(hours=2),
        fhir_user=PRACTITIONER,
        patient_id="pat-faults",
    )
    drafts = [
        Order.objects.create(
            site=site,
            launch=launch,
            patient_fhir_id=f"pat-{n}",
            request_reference=f"DeviceRequest/faults-{n:03d}",
            product=product,
            quantity=1,
            order_date=date(2026, 12, 7),
            patient_name=f"Test Patient {n}",
            patient_birth_date=date(1970, 1, 1) + timedelta(days=n),
            practitioner_reference=PRACTITIONER,
            practitioner_name="Dr. Test Practitioner",
            practitioner_npi="1234567893",
            ship_to={
                "line": [f"{n} Test St"],
                "city": "Springfield",
                "state": "VA",
                "postal_code": "22150",
                "country": "US",
            },
            contact_email=f"patient{n}@example.org",
        )
        for n in range(ORDERS)
    ]
    return Launch.objects.select_related("site").get(pk=launch.pk), drafts


def _sign(order_pk: Any, launch: Launch) -> None:
    """Sign one draft through ``order_sign``; a try whose commit went through before PostgreSQL went away is done."""

    def attempt() -> None:
        order = Order.objects.get(pk=order_pk)
        if order.status == Order.Status.DRAFT:
            order_sign(order=order, launch=launch)

    _retrying(attempt)


@dataclass
class Chaos:
    """The injections made from this side: kills by kind, restarts, and when the last one happened."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _chaos(fleet: Fleet, pg: PrivatePostgres, rds: PrivateRedis, started: float, rng: random.Random) -> Chaos:
    """Kill ``KILLS`` times at random moments (1.5 to 4 s apart) from the start of the signing window on, restart
    Redis and PostgreSQL at their moments; return what was done."""
    chaos = Chaos()
    events = [(REDIS_RESTART_AT, "redis"), (POSTGRES_RESTART_AT, "postgres")]
    moment = 1.0
    for _ in range(KILLS):
        moment += rng.uniform(1.5, 4.0)
        events.append((moment, "kill"))
    for at, what in sorted(events):
        time.sleep(max(0.0, started + at - time.monotonic()))
        try:
            if what == "kill":
                chaos.kills[fleet.kill_random(rng)] += 1
            elif what == "redis":
                rds.restart(down_seconds=DOWN_SECONDS)
                chaos.restarts["redis_restart"] += 1
            else:
                pg.restart(down_seconds=DOWN_SECONDS)
                chaos.restarts["postgres_restart"] += 1
        except Exception as exc:  # reported in the table and failed on below
            chaos.errors.append(f"{what}: {type(exc).__name__}: {exc}")
    return chaos


def _sign_all(drafts: list[Order], launch: Launch, *, started: float) -> float:
    """Sign the drafts one by one, spread evenly over ``SIGN_SECONDS`` from ``started`` (monotonic seconds; a
    PostgreSQL restart delays them); return when the last was signed."""
    for number, order in enumerate(drafts):
        time.sleep(max(0.0, started + number * SIGN_SECONDS / len(drafts) - time.monotonic()))
        _sign(order.pk, launch)
    return time.monotonic()


def _drain(*, deadline: float) -> float:
    """Wait until the pipeline is settled or ``deadline`` (monotonic seconds) passes; return when it stopped."""
    while not _retrying(_settled) and time.monotonic() < deadline:
        time.sleep(1)
    return time.monotonic()


def _settled() -> bool:
    """Whether nothing is pending any more and every order has its submit row finished."""
    rows = OutboxMessage.objects
    finished = rows.filter(subscriber="fulfillment.submit", status__in=["done", "dead"]).count()
    return finished >= ORDERS and not rows.filter(status=OutboxMessage.Status.PENDING).exists()


_MAIL_RE = re.compile(r"Subject: Your order (HC-[0-9A-Z]+) is ready.*?/p/([A-Za-z0-9_-]+)/", re.S)


def _emailed_tokens(mail_dir: Path) -> dict[str, list[str]]:
    """Order reference -> the token hashes of every link email the file backend wrote."""
    found: dict[str, list[str]] = {}
    for path in mail_dir.glob("*.log") if mail_dir.exists() else []:
        for reference, token in _MAIL_RE.findall(path.read_text(errors="replace")):
            found.setdefault(reference, []).append(token_hash(token))
    return found


@dataclass
class Pipeline:
    """What the app and the supplier hold after the drain, per order: outbox rows by (subject, subscriber),
    orders by pk, links by order pk (``(token_hash, live and sent)``), emailed token hashes by reference."""

    supplier: Supplier
    rows: dict[tuple[str, str], OutboxMessage]
    orders: dict[Any, Order]
    links: dict[Any, list[tuple[str, bool]]]
    emails: dict[str, list[str]]

    @classmethod
    def read(cls, supplier: Supplier, mail_dir: Path) -> "Pipeline":
        """Read it all (retry around it: PostgreSQL may just have restarted)."""
        links: dict[Any, list[tuple[str, bool]]] = {}
        for order_id, digest, revoked, sent in PurchaseLink.objects.values_list(
            "order_id", "token_hash", "revoked_at", "sent_at"
        ):
            links.setdefault(order_id, []).append((digest, revoked is None and sent is not None))
        return cls(
            supplier=supplier,
            rows={(r.subject, r.subscriber): r for r in OutboxMessage.objects.all()},
            orders={o.pk: o for o in Order.objects.all()},
            links=links,
            emails=_emailed_tokens(mail_dir),
        )

    def row(self, order: Order, subscriber: str) -> OutboxMessage | None:
        return self.rows.get((f"Order/{order.pk}", subscriber))

    def fulfilled(self, order: Order) -> bool:
        """Created once at the supplier under one key, ``submitted``, both hand-overs ``done``, one live sent link
        whose token was emailed, and no email whose token is not one of the order's links (a repeated email after
        a crash between sending and recording it carries a link that the retry revoked)."""
        submit, deliver = self.row(order, "fulfillment.submit"), self.row(order, "purchaselinks.deliver")
        live = [digest for digest, usable in self.links.get(order.pk, []) if usable]
        emailed = self.emails.get(order.reference, [])
        return (
            self.orders[order.pk].status == Order.Status.SUBMITTED
            and self.supplier.ledger.created[f"{order.pk}:v1"] == 1
            and self.supplier.ledger.keys_of.get(order.reference) == {f"{order.pk}:v1"}
            and (submit is not None and submit.status == OutboxMessage.Status.DONE)
            and (deliver is not None and deliver.status == OutboxMessage.Status.DONE)
            and len(live) == 1
            and live[0] in emailed
            and set(emailed) <= {digest for digest, _ in self.links[order.pk]}
        )

    def dead_as_expected(self, order: Order) -> bool:
        """Refused by the supplier (422): the submit row ``dead`` with ``http_422``, the order ``failed``, nothing
        created at the supplier."""
        submit = self.row(order, "fulfillment.submit")
        return (
            submit is not None
            and submit.status == OutboxMessage.Status.DEAD
            and submit.last_error == "http_422"
            and self.orders[order.pk].status == Order.Status.FAILED
            and not self.supplier.ledger.created[f"{order.pk}:v1"]
        )

    def describe(self, order: Order) -> dict[str, Any]:
        """One order's state, for the failure message (no PHI: statuses, counts, error codes)."""
        return {
            "status": self.orders[order.pk].status,
            "rows": {
                s: [r.status, r.attempts, r.last_error]
                for (subj, s), r in self.rows.items()
                if subj == f"Order/{order.pk}"
            },
            "supplier_requests": self.supplier.ledger.requests[f"{order.pk}:v1"],
            "supplier_created": self.supplier.ledger.created[f"{order.pk}:v1"],
            "links_live_and_sent": sum(usable for _, usable in self.links.get(order.pk, [])),
            "emails": len(self.emails.get(order.reference, [])),
        }


def _outcomes(orders: list[Order], rejected: set[str], pipeline: Pipeline) -> dict[str, Any]:
    """Sort every order into fulfilled, expected dead letter or lost; count duplicates at the supplier, dead
    letters nobody expected and repeated link emails."""
    ledger = pipeline.supplier.ledger
    fulfilled = [o for o in orders if o.reference not in rejected and pipeline.fulfilled(o)]
    expected_dead = [o for o in orders if o.reference in rejected and pipeline.dead_as_expected(o)]
    settled = {o.pk for o in fulfilled + expected_dead}
    lost = [o for o in orders if o.pk not in settled]
    dead = [r for r in pipeline.rows.values() if r.status == OutboxMessage.Status.DEAD]
    return {
        "fulfilled": len(fulfilled),
        "dead_lettered_expected": len(expected_dead),
        "dead_lettered_unexpected": len(dead) - len(expected_dead),
        "lost": len(lost),
        "duplicated": sum(n - 1 for n in ledger.created.values() if n > 1)
        + sum(len(keys) - 1 for keys in ledger.keys_of.values() if len(keys) > 1),
        "repeated_link_emails": sum(len(v) - 1 for v in pipeline.emails.values() if len(v) > 1),
        "lost_orders": {o.reference: pipeline.describe(o) for o in lost},
    }


def _table(report: dict[str, Any]) -> str:
    """Render the report as the fixed-width table CI prints."""
    lines = ["", f"make test-faults (seed {report['seed']})", "-" * 52]
    for kind, count in sorted(report["injections"].items()):
        lines.append(f"  injected {kind:<31}{count:>10}")
    for name in (
        "orders",
        "fulfilled",
        "lost",
        "duplicated",
        "dead_lettered_expected",
        "dead_lettered_unexpected",
        "repeated_link_emails",
        "kills_mid_task",
        "processes_exited_by_themselves",
        "tasks_lost_by_pool_children",
        "supplier_requests",
    ):
        lines.append(f"  {name:<40}{report[name]:>10}")
    lines.append(f"  {'signing window (s)':<40}{report['signing_seconds']:>10.1f}")
    lines.append(f"  {'time to drain after last signature (s)':<40}{report['drain_seconds']:>10.1f}")
    lines.append("-" * 52)
    return "\n".join(lines)


def test_every_order_is_fulfilled_once_or_dead_lettered_while_processes_die_and_the_backend_misbehaves(
    django_db_blocker: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require_tools()
    rng = random.Random(SEED)
    with (
        private_postgres() as pg,
        private_redis(tmp_path / "redis.log") as rds,
        _this_process_on(pg, rds.url(0), django_db_blocker),
    ):
        call_command("migrate", interactive=False, verbosity=0)
        launch, drafts = _drafts()
        rejected = {drafts[n].reference for n in REJECTED}
        numbers = {order.reference: number for number, order in enumerate(drafts)}
        plan = FaultPlan(seed=SEED, numbers=numbers, reject=frozenset(rejected))
        with supplier_running(secret=SECRET, plan=plan, timeout_sleep=READ_TIMEOUT + 1.5) as supplier:
            mail_dir = tmp_path / "mail"
            env = base_env(
                **WORKER_ENV,
                DATABASE_URL=pg.url,
                CELERY_BROKER_URL=rds.url(0),
                HC_VAR_DIR=str(tmp_path / "var"),
                WEBHOOK_URL=supplier.url,
                EMAIL_FILE_PATH=str(mail_dir),
            )
            fleet = Fleet(env, tmp_path / "logs", busy_ports={pg.port, supplier.port}, workers=2)
            try:
                fleet.start()
                started = time.monotonic()
                chaos_result: list[Chaos] = []
                chaos = threading.Thread(
                    target=lambda: chaos_result.append(_chaos(fleet, pg, rds, started, rng)), daemon=True
                )
                chaos.start()
                signed_at = _sign_all(drafts, launch, started=started)
                drained_at = _drain(deadline=signed_at + DRAIN_SECONDS)
                chaos.join(120)
                alive = fleet.alive()
            finally:
                fleet.stop()
            outcome = _outcomes(drafts, rejected, _retrying(lambda: Pipeline.read(supplier, mail_dir)))
            done = chaos_result[0] if chaos_result else Chaos(errors=["the chaos thread did not finish"])
            report = {
                "seed": SEED,
                "injections": dict(done.kills + done.restarts + supplier.ledger.injected),
                "orders": len(drafts),
                **{k: v for k, v in outcome.items() if k != "lost_orders"},
                "kills_mid_task": fleet.kills_mid_task,
                "processes_exited_by_themselves": sum(fleet.exits.values()),
                "exits_by_process": dict(fleet.exits),
                "tasks_lost_by_pool_children": fleet.lost_tasks(),
                "supplier_requests": sum(supplier.ledger.requests.values()),
                "signing_seconds": round(signed_at - started, 1),
                "drain_seconds": round(drained_at - signed_at, 1),
                "bad_signatures": supplier.ledger.bad_signatures,
                "bad_webhook_ids": supplier.ledger.bad_ids,
                "chaos_errors": done.errors,
                "processes_alive_at_end": alive,
                "lost_orders": outcome["lost_orders"],
            }
    out = Path(settings.VAR_DIR) / "faults" / "last.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True))
    with capsys.disabled():  # the table belongs in the CI log
        print(_table(report) + f"\n  (JSON: {out})")

    logs = fleet.log_tail()
    assert report["lost"] == 0, json.dumps(report["lost_orders"], indent=1)[:6000] + logs
    assert report["duplicated"] == 0
    assert report["fulfilled"] == ORDERS - len(REJECTED)
    assert report["dead_lettered_expected"] == len(REJECTED) and report["dead_lettered_unexpected"] == 0
    assert report["bad_signatures"] == 0 and report["bad_webhook_ids"] == 0
    assert not done.errors, done.errors
    injected = report["injections"]
    assert injected.get("worker_child", 0) + injected.get("worker_group", 0) >= 20
    assert injected.get("redis_restart") == 1 and injected.get("postgres_restart") == 1
    for kind in ("http_409", "http_422", "http_429", "http_500", "reset_before_store", "reset_after_store"):
        assert injected.get(kind, 0) >= 1, kind
    assert injected.get("timeout_after_store", 0) >= 1, "timeout_after_store"
    assert alive["beat"], "beat died" + logs
