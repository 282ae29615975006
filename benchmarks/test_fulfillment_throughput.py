"""Fulfillment throughput and sign-to-acknowledgement latency through the real pipeline: outbox -> Redis ->
Celery worker -> local backend -> order.submitted -> purchase link, on PostgreSQL and Redis (issue 7).

- Sign-to-ack when idle: after ``BENCH_WARMUP_ORDERS`` unmeasured orders, ``BENCH_IDLE_ORDERS`` orders one at a
  time; each is timed from the start of its hand-over transaction until the backend's acknowledgement (the
  local backend's committed ``LocalCommerceOrder`` row) is visible, polled every 5 ms. The next order starts
  only once the previous one's downstream work (its purchase-link row) is done, so each runs on an idle
  pipeline. p50 and p95 (milliseconds).
- Stream: ``BENCH_STREAM_ORDERS`` orders, each handed over in its own transaction by 4 threads (``_stream``).
- Throughput: ``BENCH_ORDERS`` signed orders handed over in one transaction; orders per second until the last
  one was acknowledged by the backend (its ``LocalCommerceOrder.created_at``, written by the worker), until
  the last was recorded ``submitted``, and until the last purchase link was sent. CPU seconds of each process
  group over that phase (Linux ``/proc``), per order.

Printed and saved as JSON in ``BENCH_RESULTS_DIR`` (default ``benchmarks/results``),
``fulfillment-<UTC timestamp>.json``. Run with ``make bench`` (PostgreSQL and Redis in the environment:
DATABASE_URL, CELERY_BROKER_URL); skipped without them. Not part of ``make test``. Targets (issue 7): at
least 100 orders/s on a 2-core machine, idle sign-to-ack p95 under 1 s.
"""

import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from healthcommerce.catalog.models import Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.events import TOPIC_ORDER_SIGNED, order_event_key, order_subject
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_publish
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.servers import ROOT, app_cluster, free_port

ORDERS = int(os.environ.get("BENCH_ORDERS", "300"))
IDLE_ORDERS = int(os.environ.get("BENCH_IDLE_ORDERS", "60"))
WARMUP_ORDERS = int(os.environ.get("BENCH_WARMUP_ORDERS", "10"))
STREAM_ORDERS = int(os.environ.get("BENCH_STREAM_ORDERS", "300"))
STREAM_THREADS = 4
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
WORKER_CONCURRENCY = 2  # tests.servers.app_cluster starts each worker with WORKER_CONCURRENCY=2
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", str(ROOT / "benchmarks" / "results")))
TARGET_ORDERS_PER_SECOND = 100
TARGET_IDLE_P95_SECONDS = 1.0
POLL_SECONDS = 0.005  # idle acknowledgement polling interval
LINK_SUBSCRIBER = "purchaselinks.deliver"

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _orders(count: int, site: EHRSite, product: Product) -> list[Order]:
    now = timezone.now()
    rows = [
        Order(
            site=site,
            status=Order.Status.SIGNED,
            patient_fhir_id=f"bench-{n}",
            product=product,
            quantity=1,
            order_date=date.today(),
            patient_name="Bench Patient",
            patient_birth_date=date(1980, 1, 1),
            practitioner_reference="Practitioner/pra1234",
            practitioner_name="Dr. Bench",
            ship_to={"line": ["1 Main St"], "city": "McLean", "state": "VA", "postal_code": "22102", "country": "US"},
            contact_email=f"bench{n}@example.org",
            signed_by="Practitioner/pra1234",
            signed_at=now,
            content_hash="b" * 64,
        )
        for n in range(count)
    ]
    return Order.objects.bulk_create(rows)


def _hand_over(orders: list[Order]) -> list[str]:
    """Publish ``order.signed`` for ``orders`` (as ``order_sign`` does); return the rows' ids."""
    with transaction.atomic():
        return [
            str(row.pk)
            for order in orders
            for row in outbox_publish(
                topic=TOPIC_ORDER_SIGNED, key=order_event_key(order), subject=order_subject(order)
            )
        ]


def _stream(site: EHRSite, product: Product) -> dict[str, float]:
    """A stream of separate sign-offs: ``BENCH_STREAM_ORDERS`` orders, each handed over in its own transaction
    (its own ``deliver`` task) by ``STREAM_THREADS`` threads at once, as web threads signing do; orders per second
    from the first hand-over until the backend acknowledged the last (workers drain queued rows in batches)."""
    orders = _orders(STREAM_ORDERS, site, product)
    started_at, started = timezone.now(), time.monotonic()

    def sign(chunk: list[Order]) -> None:
        try:
            for order in chunk:
                _hand_over([order])
        finally:
            connection.close()

    with ThreadPoolExecutor(STREAM_THREADS) as pool:
        list(pool.map(sign, [orders[i::STREAM_THREADS] for i in range(STREAM_THREADS)]))
    handed = time.monotonic() - started
    references = [o.reference for o in orders]
    acks = LocalCommerceOrder.objects.filter(order_reference__in=references)
    _wait(lambda: acks.count() >= STREAM_ORDERS, seconds=300, interval=0.05)
    ack_s = _since(started_at, acks.aggregate(last=Max("created_at"))["last"]) or 0.0
    return {
        "orders": STREAM_ORDERS,
        "threads": STREAM_THREADS,
        "acknowledged": acks.count(),
        "hand_over_s": round(handed, 3),
        "last_ack_s": round(ack_s, 3),
        "orders_per_s_acknowledged": round(STREAM_ORDERS / ack_s, 1) if ack_s else 0.0,
    }


def _wait(condition, *, seconds: float, interval: float) -> bool:
    """Poll ``condition()`` every ``interval`` seconds for up to ``seconds``; return whether it came true."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _link_done(order: Order) -> bool:
    return OutboxMessage.objects.filter(
        subscriber=LINK_SUBSCRIBER, subject=order_subject(order), status=OutboxMessage.Status.DONE
    ).exists()


def _sign_to_ack(order: Order) -> float:
    """Hand ``order`` over on an idle pipeline; return the seconds until the backend's acknowledgement is
    visible. Then wait until its purchase link is done, so the next order finds the pipeline idle again."""
    started = time.monotonic()
    _hand_over([order])
    acked = _wait(
        lambda: LocalCommerceOrder.objects.filter(order_reference=order.reference).exists(),
        seconds=60,
        interval=POLL_SECONDS,
    )
    elapsed = time.monotonic() - started
    assert acked, f"order {order.reference} not acknowledged in 60 s"
    assert _wait(lambda: _link_done(order), seconds=60, interval=0.01)
    return elapsed


# --- CPU accounting (Linux /proc; empty elsewhere) ---

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float, float]:
    """Return ``(ppid, own CPU seconds, reaped children's CPU seconds)`` of ``pid`` from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ppid, utime, stime, cutime, cstime = int(fields[1]), *(int(f) for f in fields[11:15])
    return ppid, (utime + stime) / _TICK, (cutime + cstime) / _TICK


def _cpu_by_role(database: str) -> dict[str, float]:
    """CPU seconds so far of each process group: ``workers`` (Celery worker parents and pool children),
    ``beat``, ``web`` (gunicorn), ``bench`` (this process: the hand-over and polling), ``postgres`` (every
    PostgreSQL process, with the exited connections its postmaster reaped: includes other databases' load),
    ``postgres_bench_db`` (live backends of ``database`` only), ``redis`` (the server, shared)."""
    if not Path("/proc/self/stat").exists():
        return {}
    me = os.getpid()
    procs: dict[int, tuple[int, float, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, own, reaped = _proc_stat(int(entry.name))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry.name)] = (ppid, own, reaped, cmdline)

    def descends_from(pid: int, ancestor: int) -> bool:
        while pid in procs and pid > 1:
            if pid == ancestor:
                return True
            pid = procs[pid][0]
        return pid == ancestor

    totals = dict.fromkeys(("workers", "beat", "web", "bench", "postgres", "postgres_bench_db", "redis"), 0.0)
    for pid, (_ppid, own, reaped, cmdline) in procs.items():
        if pid == me:
            totals["bench"] += own
        elif descends_from(pid, me):
            role = "workers" if " worker" in cmdline else "beat" if " beat" in cmdline else "web"
            totals[role] += own
        elif cmdline.startswith("postgres") or cmdline.split(" ")[0].endswith("/bin/postgres"):
            totals["postgres"] += own + reaped  # the postmaster's reaped children: connections that ended
            if f" {database} " in cmdline:
                totals["postgres_bench_db"] += own
        elif cmdline.startswith("redis-server"):
            totals["redis"] += own
    return totals


def _machine() -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    try:
        import redis

        redis_version = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5).info("server")[
            "redis_version"
        ]
    except Exception:  # informational only
        redis_version = "unknown"
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": redis_version,
        "load_average_at_start": list(os.getloadavg()),
    }


def _save(result: dict[str, object]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"fulfillment-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _since(started_at: datetime, instant: datetime | None) -> float | None:
    return (instant - started_at).total_seconds() if instant else None


def test_fulfillment_throughput_and_sign_to_ack(tmp_path):
    redis_broker = settings.CELERY_BROKER_URL.startswith("redis://")
    if not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and redis_broker):
        pytest.skip("needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL)")
    # The workers share this process's broker, so the hand-over's own on-commit publish reaches them, as a
    # sign-off in a web process does.
    broker = settings.CELERY_BROKER_URL
    machine = _machine()
    database = connection.settings_dict["NAME"]
    site = EHRSite.objects.create(name="Bench", iss="https://ehr.bench.example/fhir", client_id="bench")
    product = Product.objects.get(sku="DME-CPAP-STD")

    with app_cluster(tmp_path, ports=[free_port()], workers=WORKERS, broker_url=broker) as cluster:
        time.sleep(3)  # workers connected
        for order in _orders(WARMUP_ORDERS, site, product):  # imports, connections, caches: not measured
            _sign_to_ack(order)
        latencies = [_sign_to_ack(order) for order in _orders(IDLE_ORDERS, site, product)]

        batch = _orders(ORDERS, site, product)
        ids = [o.pk for o in batch]
        cpu_before = _cpu_by_role(database)
        started_at, started = timezone.now(), time.monotonic()
        _hand_over(batch)
        published = time.monotonic() - started
        links = OutboxMessage.objects.filter(
            subscriber=LINK_SUBSCRIBER, subject__in=[order_subject(o) for o in batch], status="done"
        )
        _wait(lambda: links.count() >= ORDERS, seconds=300, interval=0.05)
        wall = time.monotonic() - started
        cpu_after = _cpu_by_role(database)
        stream = _stream(site, product)
        log_tail = cluster.log_tail()

    references = [o.reference for o in batch]
    acks = LocalCommerceOrder.objects.filter(order_reference__in=references)
    acked = acks.count()
    ack_s = _since(started_at, acks.aggregate(last=Max("created_at"))["last"])
    submitted = OrderEvent.objects.filter(order_id__in=ids, kind="status", to_status=Order.Status.SUBMITTED)
    submitted_s = _since(started_at, submitted.aggregate(last=Max("created_at"))["last"])
    linked_s = _since(started_at, PurchaseLink.objects.filter(order_id__in=ids).aggregate(last=Max("sent_at"))["last"])
    cpu = {role: round(cpu_after[role] - cpu_before.get(role, 0.0), 2) for role in cpu_after}
    ms = sorted(latency * 1000 for latency in latencies)
    p50, p95 = statistics.median(ms), statistics.quantiles(ms, n=20)[-1]
    per_second = ORDERS / ack_s if ack_s else 0.0
    result = {
        "benchmark": "fulfillment",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine | {"load_average_at_end": list(os.getloadavg())},
        "settings": {
            "orders": ORDERS,
            "idle_orders": IDLE_ORDERS,
            "warmup_orders": WARMUP_ORDERS,
            "workers": WORKERS,
            "worker_concurrency": WORKER_CONCURRENCY,
            "worker_prefetch_multiplier": settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
            "task_acks_late": settings.CELERY_TASK_ACKS_LATE,
            "commerce_backend": settings.COMMERCE_BACKEND,
        },
        "idle_sign_to_ack_ms": {
            "samples": len(ms),
            "p50": round(p50, 1),
            "p95": round(p95, 1),
            "min": round(ms[0], 1),
            "max": round(ms[-1], 1),
        },
        "throughput": {
            "orders": ORDERS,
            "acknowledged": acked,
            "hand_over_s": round(published, 3),
            "last_ack_s": round(ack_s or 0, 3),
            "orders_per_s_acknowledged": round(per_second, 1),
            "last_submitted_s": round(submitted_s or 0, 3),
            "last_link_sent_s": round(linked_s or 0, 3),
            "orders_per_s_with_links": round(ORDERS / linked_s, 1) if linked_s else 0.0,
            "wall_s": round(wall, 3),
        },
        "stream": stream,
        "cpu_s": cpu,
        "cpu_ms_per_order": {role: round(1000 * seconds / ORDERS, 1) for role, seconds in cpu.items()},
        "targets": {
            "orders_per_s": TARGET_ORDERS_PER_SECOND,
            "idle_p95_ms": TARGET_IDLE_P95_SECONDS * 1000,
            "orders_per_s_met": per_second >= TARGET_ORDERS_PER_SECOND,
            "idle_p95_met": p95 < TARGET_IDLE_P95_SECONDS * 1000,
        },
    }
    path = _save(result)
    print(
        f"\nfulfillment on PostgreSQL + Redis, {WORKERS} worker(s) x {WORKER_CONCURRENCY} processes, local backend"
        f" ({machine['cpu_count']} CPUs, load {machine['load_average_at_start'][0]:.2f} at start):"
        f"\n  sign-to-ack when idle ({len(ms)} orders one at a time after {WARMUP_ORDERS} warm-up): "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
        f"\n  throughput: {ORDERS} orders handed over (one transaction) in {published:.2f} s; last acknowledged "
        f"by the backend at {ack_s or 0:.2f} s = {per_second:.0f} orders/s; last recorded submitted at "
        f"{submitted_s or 0:.2f} s; last purchase link sent at {linked_s or 0:.2f} s"
        f" = {result['throughput']['orders_per_s_with_links']:.0f} orders/s"
        f"\n  CPU ms per order: "
        + ", ".join(f"{role} {value}" for role, value in result["cpu_ms_per_order"].items())
        + f"\n  stream of separate sign-offs ({STREAM_ORDERS} orders, each its own transaction, {STREAM_THREADS}"
        f" threads): last acknowledged at {stream['last_ack_s']:.2f} s = {stream['orders_per_s_acknowledged']:.0f}"
        " orders/s" + f"\n  saved {path}"
    )
    assert acked == ORDERS, log_tail
    assert LocalCommerceOrder.objects.filter(submit_count__gt=1).count() == 0  # nothing submitted twice
