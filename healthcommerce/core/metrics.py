"""Integration metrics: every outbound EHR and commerce call counted by site, endpoint kind and outcome class,
with its latency (docs/adr/0018-integration-health.md, docs/reliability.md "Integration health").

Two paths, both cheap on the request's thread (a lock, a dict update and prometheus_client's mmap write):
- prometheus_client counters and histograms, exposed by ``/metrics`` (multiprocess mode when
  ``PROMETHEUS_MULTIPROC_DIR`` is set, so every gunicorn and Celery process on a host is summed);
- per-minute buckets aggregated in memory and handed to a sink (``monitoring`` registers one that inserts rows)
  at most every ``INTEGRATION_FLUSH_SECONDS``, at the end of a request or a task: the alert rules and the
  24-hour dashboard read those rows, across every process and host.

Labels are a site's name (or ``commerce:<backend>``), an endpoint kind from a fixed list and an outcome class:
never a URL, an id or anything about a patient.
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings
from prometheus_client import Counter, Histogram

logger = logging.getLogger(__name__)

# Outcome classes (docs/reliability.md "Integration health"): the statuses a caller must tell apart, the rest.
# HL7 v2 calls (``hl7_status``) add the ACK codes a peer refuses with: AE (error), AR (reject); eligibility checks
# (``eligibility``) add ``unavailable``: the payer answered through the clearinghouse that it cannot answer now.
OUTCOMES = (
    "ok",
    "401",
    "403",
    "404",
    "422",
    "429",
    "4xx",
    "5xx",
    "timeout",
    "connection",
    "other",
    "AE",
    "AR",
    "unavailable",
)
ERROR_OUTCOMES = frozenset(OUTCOMES) - {"ok"}
# Endpoint kinds: fixed, so a label's values stay few. FHIR reads are ``fhir:<ResourceType>``.
KINDS = (
    "discovery",
    "token",
    "jwks",
    "style",
    "fhir",
    "commerce_submit",
    "commerce_confirm",
    "commerce_cancel",
    "commerce_status",
    "alert_webhook",
    "sign_to_ack",
    "hl7_receive",  # inbound: one HL7 v2 message received over MLLP (healthcommerce.intake.services)
    "hl7_status",  # outbound: one HL7 v2 status message to a site's MLLP endpoint (healthcommerce.orders.hl7status)
    # outbound: one X12 270/271 eligibility check through a clearinghouse (healthcommerce.coverage.services), labelled
    # "<site>: <clearinghouse kind:host> <payer id>"
    "eligibility",
    "other",
)
# Upper bounds (seconds) of the latency buckets, Prometheus's and the stored rows' (``le_*`` columns).
LATENCY_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RESOURCE = re.compile(r"[A-Z][A-Za-z]{1,40}")

REQUESTS = Counter(
    "hc_integration_requests_total",
    "Outbound EHR and commerce requests by site, endpoint kind and outcome class.",
    ["site", "endpoint", "outcome"],
)
LATENCY = Histogram(
    "hc_integration_latency_seconds",
    "Outbound request latency (seconds, response body read) by site and endpoint kind.",
    ["site", "endpoint"],
    buckets=LATENCY_BOUNDS,
)
SIGN_TO_ACK = Histogram(
    "hc_sign_to_ack_seconds",
    "Seconds from the clinician's signature to the commerce backend's acknowledgement, by site.",
    ["site"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600),
)

_site: ContextVar[str | None] = ContextVar("hc_integration_site", default=None)
_kind: ContextVar[str | None] = ContextVar("hc_integration_kind", default=None)


@contextmanager
def integration(*, site: str | None = None, kind: str | None = None) -> Iterator[None]:
    """Label the outbound calls made inside the block (this thread or task) with ``site`` and ``kind``; a
    session's own labels (``outbound_session(site=..., kind=...)``) give way to these."""
    tokens = (_site.set(site) if site is not None else None, _kind.set(kind) if kind is not None else None)
    try:
        yield
    finally:
        if tokens[1] is not None:
            _kind.reset(tokens[1])
        if tokens[0] is not None:
            _site.reset(tokens[0])


def labels_for(*, site: str, kind: str, url: str, base: str | None) -> tuple[str, str]:
    """Return the (site, endpoint) labels of a call to ``url``: the context's labels, else the session's; kind
    ``fhir`` becomes ``fhir:<ResourceType>`` from the path after ``base`` (``fhir:other`` when it is not one)."""
    site = (_site.get() or site or "unknown")[:100]
    kind = _kind.get() or kind or "other"
    if kind == "fhir":
        rest = url[len(base) :] if base and url.lower().startswith(base.lower()) else ""
        head = rest.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        kind = f"fhir:{head}" if _RESOURCE.fullmatch(head) else "fhir:other"
    return site, kind


def outcome_for_status(status: int) -> str:
    """Return the outcome class of an HTTP status: ``ok`` below 400, the status itself for 401, 403, 404, 422 and
    429, ``5xx`` from 500 and ``4xx`` for any other client error."""
    if status < 400:
        return "ok"
    if status >= 500:
        return "5xx"
    text = str(status)
    return text if text in OUTCOMES else "4xx"


def outcome_for_exception(exc: BaseException) -> str:
    """Return ``timeout`` for ``requests.Timeout``, ``connection`` for ``requests.ConnectionError`` (a connect
    timeout is a timeout), ``other`` for anything else (a body over the cap, a TLS error that is neither)."""
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection"
    return "other"


@dataclass
class Bucket:
    """One minute of one (site, endpoint, outcome): ``count`` calls, ``latency_sum`` seconds, and ``le`` the
    count per ``LATENCY_BOUNDS`` bucket (not cumulative; calls slower than the last bound are counted only in
    ``count``)."""

    count: int = 0
    latency_sum: float = 0.0
    le: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS))

    def add(self, seconds: float) -> None:
        """Count one call that took ``seconds``."""
        self.count += 1
        self.latency_sum += seconds
        for i, bound in enumerate(LATENCY_BOUNDS):
            if seconds <= bound:
                self.le[i] += 1
                break


BucketKey = tuple[datetime, str, str, str]  # (minute, site, endpoint, outcome)
Sink = Callable[[dict[BucketKey, Bucket]], None]

_lock = threading.Lock()
_pending: dict[BucketKey, Bucket] = {}
_last_flush = time.monotonic()
_sink: Sink | None = None
_MAX_KEYS = 10_000  # a sink that keeps failing must not grow memory without bound


def sink_set(sink: Sink | None) -> None:
    """Install the function that stores flushed buckets (``monitoring.apps``); ``None`` keeps them in memory."""
    global _sink
    _sink = sink


def record(*, site: str, endpoint: str, outcome: str, seconds: float) -> None:
    """Count one call: Prometheus's counter and histogram, and this minute's in-memory bucket."""
    REQUESTS.labels(site, endpoint, outcome).inc()
    LATENCY.labels(site, endpoint).observe(seconds)
    _bucket_add(site, endpoint, outcome, seconds)


def sign_to_ack_record(*, site: str, seconds: float) -> None:
    """Record the seconds from an order's signature to its backend's acknowledgement (``fulfillment._submitted``):
    Prometheus's histogram, and a bucket of kind ``sign_to_ack`` for the dashboard."""
    SIGN_TO_ACK.labels(site[:100]).observe(seconds)
    _bucket_add(site[:100], "sign_to_ack", "ok", seconds)


def _bucket_add(site: str, endpoint: str, outcome: str, seconds: float) -> None:
    minute = datetime.fromtimestamp(int(time.time()) // 60 * 60, tz=UTC)
    key = (minute, site, endpoint, outcome)
    with _lock:
        bucket = _pending.get(key)
        if bucket is None:
            if len(_pending) >= _MAX_KEYS:
                return
            bucket = _pending[key] = Bucket()
        bucket.add(seconds)


def flush(*, force: bool = False) -> int:
    """Hand the buckets gathered since the last flush to the sink when ``INTEGRATION_FLUSH_SECONDS`` have passed
    (or ``force``); return how many were handed over. Called at the end of each request and task and by the
    alert task. A failing sink is logged and its buckets are put back (merged into newer ones). Never raises."""
    global _pending, _last_flush
    now = time.monotonic()
    if _sink is None or (not force and now - _last_flush < settings.INTEGRATION_FLUSH_SECONDS):
        return 0
    with _lock:
        taken, _pending, _last_flush = _pending, {}, now
    if not taken:
        return 0
    try:
        _sink(taken)
    except Exception as exc:  # the database is down or not reachable here: keep the counts for the next flush
        logger.warning("integration metrics not stored (%s); kept for the next flush", type(exc).__name__)
        with _lock:
            for key, bucket in taken.items():
                if len(_pending) >= _MAX_KEYS and key not in _pending:
                    continue
                mine = _pending.setdefault(key, Bucket())
                mine.count += bucket.count
                mine.latency_sum += bucket.latency_sum
                mine.le = [a + b for a, b in zip(mine.le, bucket.le, strict=True)]
        return 0
    return len(taken)


def flush_on_signal(**_: Any) -> None:
    """A signal receiver (``request_finished``, Celery's ``task_postrun``) that flushes when due."""
    flush()


def pending_clear() -> None:
    """Drop the buckets not yet flushed (tests)."""
    with _lock:
        _pending.clear()
