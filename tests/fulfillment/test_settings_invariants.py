"""Settings invariants from docs/reliability.md "Celery and broker settings", checked against the production
settings module."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from django.conf import settings

from healthcommerce.outbox import services
from healthcommerce.outbox.services import BACKOFF_CAP_SECONDS, backoff_seconds

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "healthcommerce" / "settings.py"


def load_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> ModuleType:
    """Execute ``healthcommerce/settings.py`` afresh with ``env`` (the running settings stay untouched)."""
    monkeypatch.setenv("HC_VAR_DIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("hc_settings_under_test", SETTINGS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_redis_visibility_timeout_exceeds_the_task_time_limit_plus_the_longest_backoff(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prod = load_settings(monkeypatch, tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    max_backoff = max(backoff_seconds(attempt=a, retry_after=r) for a in range(1, 40) for r in (None, 10**6))
    assert max_backoff <= BACKOFF_CAP_SECONDS
    visibility_timeout = prod.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility_timeout > prod.CELERY_TASK_TIME_LIMIT + BACKOFF_CAP_SECONDS


def test_publishing_to_redis_cannot_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prod = load_settings(monkeypatch, tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    options = prod.CELERY_BROKER_TRANSPORT_OPTIONS
    assert 0 < options["socket_timeout"] <= 10
    assert 0 < options["socket_connect_timeout"] <= 10
    assert 0 < prod.CELERY_BROKER_CONNECTION_TIMEOUT <= 10


def test_workers_ack_late_and_keep_one_task_at_a_time() -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_BEAT_SCHEDULE["relay-outbox"]["task"] == "healthcommerce.outbox.tasks.relay"


def test_a_workers_claim_outlives_the_task_time_limit() -> None:
    assert services._claim_lease().total_seconds() > settings.CELERY_TASK_TIME_LIMIT


def test_worker_pool_processes_keep_their_database_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Celery's Django fixup closes the connection after every task unless CELERY_DB_REUSE_MAX is set.
    prod = load_settings(monkeypatch, tmp_path)
    assert prod.WORKER_CONN_MAX_AGE == 60
    assert prod.CELERY_DB_REUSE_MAX
    off = load_settings(monkeypatch, tmp_path, WORKER_CONN_MAX_AGE="0")
    assert off.CELERY_DB_REUSE_MAX is None


def test_a_pool_process_applies_the_workers_conn_max_age(settings) -> None:
    from django.db import connections

    from healthcommerce.celery import _keep_worker_connections

    original = connections.settings["default"]["CONN_MAX_AGE"]
    settings.WORKER_CONN_MAX_AGE = 45
    try:
        _keep_worker_connections()
        assert connections["default"].settings_dict["CONN_MAX_AGE"] == 45
    finally:
        connections.settings["default"]["CONN_MAX_AGE"] = original
