"""Pipeline health for monitoring: is the outbox relay running (so Celery beat and a worker are alive), how
deep is the outbox, how late is its oldest due row, how many dead letters wait for an admin.

``GET /readyz`` answers 200 when the pipeline can move signed orders and 503 naming what broke otherwise.
Point monitoring at it, not the load balancer: the web stays useful (clinicians can sign; the outbox keeps
the orders) while beat is down. Source: docs/deploy.md "Processes" (exactly one beat is required).
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min
from django.utils import timezone

from healthcommerce.outbox.models import OutboxMessage

logger = logging.getLogger(__name__)

RELAY_HEARTBEAT_KEY = "pipeline:relay-ran-at"
# Beat queues the relay every 5 s; a relay silent for this long (seconds) means beat or every worker is down.
RELAY_STALE_SECONDS = 60
# A due row waiting longer than this (seconds) means the relay runs but nothing consumes what it publishes.
OUTBOX_LAG_LIMIT_SECONDS = 300
ALERT_EVERY_SECONDS = 300
BROKER_CHECK_TIMEOUT = 2  # seconds


def relay_heartbeat() -> None:
    """Record that the outbox relay ran now (epoch seconds in the shared cache; called by the relay task)."""
    cache.set(RELAY_HEARTBEAT_KEY, time.time(), timeout=None)


@dataclass
class PipelineHealth:
    """``ok`` and per-check results: ``checks`` maps a check name to ``"ok"`` or what is wrong (no PHI);
    ``metrics`` holds numbers (rows, seconds)."""

    ok: bool = True
    checks: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def fail(self, check: str, problem: str) -> None:
        """Record ``problem`` for ``check`` and mark the pipeline not ready."""
        self.ok = False
        self.checks[check] = problem


def _outbox(health: PipelineHealth) -> None:
    now = timezone.now()
    pending = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING)
    oldest = pending.filter(available_at__lte=now).aggregate(oldest=Min("available_at"))["oldest"]
    lag = (now - oldest).total_seconds() if oldest else 0.0
    health.metrics |= {
        "outbox_pending": pending.count(),
        "outbox_dead": OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD).count(),
        "outbox_oldest_due_seconds": round(lag, 1),
    }
    health.checks["outbox"] = "ok"
    if lag > OUTBOX_LAG_LIMIT_SECONDS:
        health.fail("outbox", f"a due outbox row has waited {lag:.0f} s: are the Celery workers consuming the queue?")


_migrated = False  # once every migration is applied it stays so for this process (a deploy restarts it)


def _migrations(health: PipelineHealth) -> None:
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            health.fail("migrations", f"{len(plan)} migrations are not applied: run `manage.py migrate` (make release)")
            return
        _migrated = True
    health.checks["migrations"] = "ok"


def _broker(health: PipelineHealth) -> None:
    """Open a connection to the Celery broker (``BROKER_CHECK_TIMEOUT`` seconds, no retries) and close it."""
    from celery import current_app

    started = time.monotonic()
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_CHECK_TIMEOUT)
            if conn.transport.driver_type == "redis":
                conn.default_channel.client.ping()  # type: ignore[attr-defined]  # kombu's Redis channel
    except Exception as exc:  # kombu and redis raise many types for "down": OperationalError, OSError, ...
        health.fail("broker", f"the Celery broker does not answer ({type(exc).__name__})")
        return
    health.metrics["broker_check_seconds"] = round(time.monotonic() - started, 3)
    health.checks["broker"] = "ok"


def pipeline_health() -> PipelineHealth:
    """Check the database, applied migrations, the broker, the shared cache and the relay heartbeat (beat seen
    recently); return the result (never raises)."""
    health = PipelineHealth()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        health.checks["database"] = "ok"
        _migrations(health)
        _outbox(health)
    except DatabaseError as exc:
        health.fail("database", f"the database does not answer ({type(exc).__name__})")
    _broker(health)
    try:
        ran_at = cache.get(RELAY_HEARTBEAT_KEY)
        health.checks["cache"] = "ok"
    except Exception as exc:  # any cache backend error: Redis down, wrong URL
        health.fail("cache", f"the shared cache does not answer ({type(exc).__name__})")
        return health
    if ran_at is None:
        health.fail("beat", "the outbox relay has never run: start exactly one `celery beat` and a worker")
    else:
        age = time.time() - float(ran_at)
        health.metrics["relay_last_run_seconds"] = round(age, 1)
        if age > RELAY_STALE_SECONDS:
            health.fail("beat", f"the outbox relay last ran {age:.0f} s ago: is `celery beat` (exactly one) running?")
        else:
            health.checks["beat"] = "ok"
    return health


def pipeline_alert(health: PipelineHealth) -> None:
    """Log one ERROR line naming each failed check, at most every ``ALERT_EVERY_SECONDS`` per check."""
    for check, problem in health.checks.items():
        if problem == "ok":
            continue
        try:
            first = cache.add(f"pipeline:alerted:{check}", 1, timeout=ALERT_EVERY_SECONDS)
        except Exception:  # the cache itself is down: alert every time
            first = True
        if first:
            logger.error("pipeline not ready: %s: %s", check, problem)
