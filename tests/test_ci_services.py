"""In CI the suite must run against PostgreSQL and Redis; a missing service fails here instead of being skipped."""

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import IN_CI

pytestmark = pytest.mark.skipif(not IN_CI, reason="outside CI the embedded SQLite + filesystem broker are used")


@pytest.mark.django_db
def test_ci_runs_against_postgresql():
    assert connection.vendor == "postgresql", "CI must set DATABASE_URL to PostgreSQL"
    with connection.cursor() as cursor:
        cursor.execute("select 1")
        assert cursor.fetchone() == (1,)


def test_ci_runs_against_redis():
    import redis

    assert settings.CELERY_BROKER_URL.startswith("redis://"), "CI must set CELERY_BROKER_URL to Redis"
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=3).ping()


def test_ci_shares_the_cache_across_processes_on_redis():
    import secrets
    import subprocess
    import sys

    from django.core.cache import cache

    from tests.servers import ROOT

    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    key, value = f"ci-probe-{secrets.token_hex(8)}", secrets.token_hex(8)
    cache.set(key, value, 60)
    read = f"import django; django.setup(); from django.core.cache import cache; print(cache.get({key!r}))"
    done = subprocess.run([sys.executable, "-c", read], cwd=ROOT, capture_output=True, text=True, check=True)

    assert done.stdout.strip() == value
