"""Launch-to-form with an injected EHR latency: how many EHR requests a launch makes, how many of them are
sequential rounds on the critical path, and the time it takes when each EHR request costs ``LATENCY_MS``.

Warm runs (discovery and the EHR's JWKS cached, as for every launch after a site's first). The browser's
hop to the EHR's authorize endpoint is counted like the app's own requests. Run with ``make bench``.
"""

import os
import statistics
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import requests

from healthcommerce.ehr.models import EHRSite
from healthcommerce.sandbox.latency import DELAYED_PREFIXES
from tests.conftest import complete_launch, sandbox_server

LATENCY_MS = int(os.environ.get("BENCH_EHR_LATENCY_MS", "150"))
RUNS = int(os.environ.get("BENCH_RUNS", "10"))


@contextmanager
def ehr_requests():
    """Record ``(path, start, end)`` (seconds, monotonic) of every HTTP request to the sandbox's API paths."""
    calls: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    original = requests.Session.send

    def send(self, request, **kwargs):
        started = time.monotonic()
        try:
            return original(self, request, **kwargs)
        finally:
            path = urlsplit(request.url).path
            if path.startswith(DELAYED_PREFIXES):
                with lock:
                    calls.append((path, started, time.monotonic()))

    requests.Session.send = send
    try:
        yield calls
    finally:
        requests.Session.send = original


def rounds(calls: list[tuple[str, float, float]]) -> int:
    """Return how many sequential rounds the requests took: overlapping requests count as one round."""
    count, end = 0, float("-inf")
    for _, started, finished in sorted(calls, key=lambda c: c[1]):
        if started >= end:
            count += 1
            end = finished
        else:
            end = max(end, finished)
    return count


@pytest.mark.django_db
def test_launch_to_form_with_ehr_latency(client, settings):
    settings.APP_BASE_URL = "http://testserver"
    with sandbox_server(SANDBOX_LATENCY_MS=str(LATENCY_MS)) as ehr:
        ehr.manage(
            "sandbox_client", "add", "--client-id", "bench", "--redirect-uri", "http://testserver/smart/callback"
        )
        EHRSite.objects.create(name="Bench", iss=ehr.fhir_base, client_id="bench")
        seconds, counts, sequential = [], [], []
        for run in range(RUNS + 1):
            client.cookies.clear()
            with ehr_requests() as calls:
                started = time.perf_counter()
                result = complete_launch(client, ehr, patient="pat014", request="DeviceRequest/devreq021")
                page = client.get(f"/o/{result.launch_id}/", follow=True)
                elapsed = time.perf_counter() - started
            assert b'id="sign"' in page.content
            if run == 0:
                first = (elapsed, len(calls), rounds(calls))
                continue  # discovery and JWKS are fetched once per site
            seconds.append(elapsed)
            counts.append(len(calls))
            sequential.append(rounds(calls))
    p50, p95 = statistics.median(seconds), statistics.quantiles(seconds, n=20)[-1]
    requests_per_launch, sequential_rounds = statistics.median(counts), statistics.median(sequential)
    overhead = p50 - sequential_rounds * LATENCY_MS / 1000
    print(
        f"\nEHR latency {LATENCY_MS} ms per request, {RUNS} warm launches of pat014's CPAP request:"
        f"\n  launch-to-form p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
        f"\n  EHR requests per launch {requests_per_launch:.0f}, sequential rounds {sequential_rounds:.0f}"
        f"\n  app overhead (p50 minus rounds x latency) {overhead * 1000:.0f} ms"
        f"\n  first launch (discovery, JWKS): {first[0] * 1000:.0f} ms, {first[1]} EHR requests in {first[2]} rounds"
    )
    if os.environ.get("BENCH_VERBOSE"):
        origin = min(c[1] for c in calls)
        for path, started, finished in sorted(calls, key=lambda c: c[1]):
            print(f"  {path[:60]:60} at {1000 * (started - origin):5.0f} ms, {1000 * (finished - started):4.0f} ms")
    # Authorize, token, one concurrent read round.
    assert sequential_rounds <= 3
