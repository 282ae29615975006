"""Celery tasks of integration health, run by beat (docs/style.md 3)."""

import time

from celery import shared_task
from django.core.cache import cache

from healthcommerce.core import metrics
from healthcommerce.monitoring import services

ALERTS_HEARTBEAT_KEY = "monitoring:alerts-ran-at"


@shared_task(name="healthcommerce.monitoring.tasks.evaluate")
def evaluate() -> int:
    """Flush this process's buckets, evaluate the alert rules (every minute from beat) and record the run for
    ``/readyz``; return how many alerts opened or resolved."""
    metrics.flush(force=True)
    changed = len(services.alerts_evaluate())
    cache.set(ALERTS_HEARTBEAT_KEY, time.time(), timeout=None)
    return changed


@shared_task(name="healthcommerce.monitoring.tasks.purge")
def purge() -> int:
    """Delete buckets past ``INTEGRATION_RETENTION_DAYS`` (daily from beat); return how many."""
    return services.buckets_purge()
