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
