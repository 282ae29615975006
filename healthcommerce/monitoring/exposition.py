"""The ``/metrics`` body: prometheus_client's metrics (ours from ``core.metrics`` and django-prometheus's) and
gauges read from the database at scrape time (outbox depth, lag, dead letters, open alerts, broker queue length,
seconds since the alert rules last ran).

With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts; docs/deploy.md "Metrics") every gunicorn worker
and Celery process on the host writes its counters there and any one of them answers for all
(``MultiProcessCollector``). Without it each process answers for itself.
"""

import os
import time
from collections.abc import Iterator

from django.core.cache import cache
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from healthcommerce.monitoring.models import Alert
from healthcommerce.monitoring.tasks import ALERTS_HEARTBEAT_KEY
from healthcommerce.outbox.models import OutboxMessage


class DatabaseCollector(Collector):
    """Gauges computed from the database on each scrape (a few aggregate queries)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the outbox and alert gauges, and the broker's queue length when it is Redis."""
        now = timezone.now()
        pending = GaugeMetricFamily(
            "hc_outbox_pending", "Outbox rows not yet done, by subscriber.", labels=["subscriber"]
        )
        dead = GaugeMetricFamily(
            "hc_outbox_dead", "Outbox rows dead-lettered (waiting for an admin), by subscriber.", labels=["subscriber"]
        )
        by_status = (
            OutboxMessage.objects.filter(status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.DEAD])
            .values_list("status", "subscriber")
            .annotate(n=Count("pk"))
        )
        for status, subscriber, n in by_status:
            (pending if status == OutboxMessage.Status.PENDING else dead).add_metric([subscriber], n)
        yield pending
        yield dead
        oldest = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING, available_at__lte=now).aggregate(
            oldest=Min("available_at")
        )["oldest"]
        yield GaugeMetricFamily(
            "hc_outbox_lag_seconds",
            "Seconds the oldest due pending outbox row has waited.",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
        alerts = GaugeMetricFamily(
            "hc_alerts_open", "Open integration alerts, by rule and site.", labels=["rule", "site"]
        )
        for rule, site in Alert.objects.filter(status=Alert.Status.OPEN).values_list("rule", "site"):
            alerts.add_metric([rule, site], 1)
        yield alerts
        ran_at = cache.get(ALERTS_HEARTBEAT_KEY)
        if ran_at is not None:
            yield GaugeMetricFamily(
                "hc_alerts_last_run_seconds",
                "Seconds since beat last evaluated the alert rules (every 60 s when beat and a worker run).",
                value=time.time() - float(ran_at),
            )
        depth = _broker_queue_length()
        if depth is not None:
            yield GaugeMetricFamily("hc_broker_queue_length", "Tasks waiting in the Celery queue (Redis).", value=depth)


def _broker_queue_length() -> int | None:
    from celery import current_app

    try:
        with current_app.connection_for_read() as conn:
            if conn.transport.driver_type != "redis":
                return None
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
            return int(client.llen(current_app.conf.task_default_queue or "celery"))
    except Exception:  # the broker is down: /readyz says so; the scrape still answers
        return None


def metrics_text() -> tuple[bytes, str]:
    """Return the exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    return generate_latest(registry) + generate_latest(database), CONTENT_TYPE_LATEST
