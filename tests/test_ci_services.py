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
