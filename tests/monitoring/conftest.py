"""Integration health tests: buckets written straight into the table, as flushed processes would."""

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from healthcommerce.core.metrics import Bucket
from healthcommerce.monitoring.services import buckets_store


@pytest.fixture
def calls(db: None) -> Callable[..., None]:
    """``calls(site, endpoint, outcome, n, minutes_ago=1, seconds=0.2)``: store ``n`` calls in one bucket."""

    def add(
        site: str, endpoint: str, outcome: str, n: int, *, minutes_ago: int = 1, seconds: float = 0.2,
        now: datetime | None = None,
    ) -> None:  # fmt: skip
        minute = ((now or timezone.now()) - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0)
        bucket = Bucket()
        for _ in range(n):
            bucket.add(seconds)
        buckets_store({(minute, site, endpoint, outcome): bucket})

    return add
