"""``/readyz``: the pipeline is ready only while the outbox relay runs (beat and a worker are alive); a failed
check names what broke, and alerts once."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from healthcommerce.orders.models import Order
from healthcommerce.outbox import health, tasks
from healthcommerce.outbox.models import OutboxMessage
from tests.pipeline import signed


@pytest.fixture(autouse=True)
def clean_cache():
    cache.delete_many([health.RELAY_HEARTBEAT_KEY, "pipeline:alerted:beat", "pipeline:alerted:outbox"])
    yield
    cache.delete_many([health.RELAY_HEARTBEAT_KEY, "pipeline:alerted:beat", "pipeline:alerted:outbox"])


def test_it_is_ready_once_the_relay_task_has_run(client, db) -> None:
    tasks.relay()
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "outbox": "ok",
        "broker": "ok",
        "cache": "ok",
        "beat": "ok",
    }
    assert body["metrics"]["relay_last_run_seconds"] < 5
    assert response["Cache-Control"].startswith("max-age=0")


def test_without_beat_it_fails_naming_beat_and_alerts_once(client, db, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="healthcommerce.outbox.health"):
        first = client.get("/readyz")
        client.get("/readyz")
    assert first.status_code == 503
    assert "celery beat" in first.json()["checks"]["beat"]
    alerts = [r.getMessage() for r in caplog.records if "pipeline not ready: beat" in r.getMessage()]
    assert len(alerts) == 1


def test_a_relay_silent_for_over_a_minute_fails(client, db) -> None:
    cache.set(health.RELAY_HEARTBEAT_KEY, time.time() - 340, timeout=None)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "last ran 340 s ago" in response.json()["checks"]["beat"]


def test_a_due_row_nobody_consumes_fails_with_its_lag_and_the_queue_depth(
    client, make_order: Callable[..., Order]
) -> None:
    tasks.relay()
    for _ in range(2):
        signed(make_order())
    OutboxMessage.objects.update(available_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert "waited 600 s" in body["checks"]["outbox"]
    assert body["metrics"]["outbox_pending"] == 2 and body["metrics"]["outbox_dead"] == 0
