"""Every outbound call is counted at the one outbound client by site, endpoint kind and outcome class, with its
latency (docs/reliability.md "Integration health"). Real HTTP servers on loopback."""

import socket

import pytest
import requests
from prometheus_client import REGISTRY

from healthcommerce.core import metrics
from healthcommerce.core.http import outbound_session
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import oauth_session
from tests.core.test_http import Server, servers  # noqa: F401  (fixture)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, float]]:
    """What ``core.metrics.record`` was called with, besides doing its work."""
    calls: list[tuple[str, str, str, float]] = []
    real = metrics.record

    def record(*, site: str, endpoint: str, outcome: str, seconds: float) -> None:
        calls.append((site, endpoint, outcome, seconds))
        real(site=site, endpoint=endpoint, outcome=outcome, seconds=seconds)

    monkeypatch.setattr(metrics, "record", record)
    return calls


def counter(site: str, endpoint: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "hc_integration_requests_total", {"site": site, "endpoint": endpoint, "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (302, "ok"), (400, "4xx"), (401, "401"), (403, "403"), (404, "404"), (409, "4xx"),
     (422, "422"), (429, "429"), (500, "5xx"), (503, "5xx")],
)  # fmt: skip
def test_each_status_is_counted_in_its_class(servers, captured, status: int, outcome: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ehr, _ = servers
    ehr.routes["/fhir/Patient/p1"] = (status, {}, b"{}")
    before = counter("Clinic A", "fhir:Patient", outcome)
    session = outbound_session(only_origin=ehr.url, site="Clinic A", kind="fhir", base=f"{ehr.url}/fhir/")
    session.get(f"{ehr.url}/fhir/Patient/p1?_elements=name", allow_redirects=False)
    assert captured[-1][:3] == ("Clinic A", "fhir:Patient", outcome)
    assert captured[-1][3] >= 0
    assert counter("Clinic A", "fhir:Patient", outcome) == before + 1


def test_a_timeout_and_a_refused_connection_are_their_own_classes(captured) -> None:  # type: ignore[no-untyped-def]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    session = outbound_session(site="Clinic A", kind="token")
    with pytest.raises(requests.Timeout):
        session.get(f"http://127.0.0.1:{port}/token", timeout=(1, 0.2))
    listener.close()
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{port}/token", timeout=1)
    assert [c[2] for c in captured] == ["timeout", "connection"]
    assert {c[:2] for c in captured} == {("Clinic A", "token")}


def test_a_fhir_path_that_is_not_a_resource_type_is_not_a_label(servers, captured) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ehr, _ = servers
    session = outbound_session(site="Clinic A", kind="fhir", base=f"{ehr.url}/fhir/")
    session.get(f"{ehr.url}/fhir/patient-jane-doe/1")
    session.get(f"{ehr.url}/elsewhere/Patient")
    assert [c[1] for c in captured] == ["fhir:other", "fhir:other"]


def test_the_callers_block_labels_a_sessions_calls(servers, captured) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ehr, _ = servers
    session = outbound_session(site="commerce:webhook", kind="commerce_submit")
    with metrics.integration(kind="commerce_cancel"):
        session.post(f"{ehr.url}/orders")
    session.post(f"{ehr.url}/orders")
    assert [c[:2] for c in captured] == [
        ("commerce:webhook", "commerce_cancel"),
        ("commerce:webhook", "commerce_submit"),
    ]


@pytest.mark.django_db
def test_the_token_session_counts_as_the_sites_token_endpoint(servers, captured) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ehr, _ = servers
    ehr.routes["/token"] = (401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}')
    site = EHRSite(name="Clinic B", iss=f"{ehr.url}/fhir", client_id="app")
    client = oauth_session(site, redirect_uri="http://testserver/smart/callback")
    with pytest.raises(Exception):
        client.fetch_token(f"{ehr.url}/token", code="c0de", code_verifier="v" * 43)
    assert captured[-1][:3] == ("Clinic B", "token", "401")


def test_buckets_gather_per_minute_and_flush_to_the_sink(settings) -> None:  # type: ignore[no-untyped-def]
    stored: list[dict] = []
    metrics.pending_clear()
    metrics.sink_set(lambda buckets: stored.append(dict(buckets)))
    try:
        for seconds in (0.05, 0.3, 12.0):
            metrics.record(site="Clinic C", endpoint="token", outcome="ok", seconds=seconds)
        metrics.record(site="Clinic C", endpoint="token", outcome="401", seconds=0.2)
        settings.INTEGRATION_FLUSH_SECONDS = 3600
        assert metrics.flush() == 0  # not due yet
        assert metrics.flush(force=True) == 2
    finally:
        from healthcommerce.monitoring.services import buckets_store

        metrics.sink_set(buckets_store)
    (flushed,) = stored
    ok = next(b for (_, site, _, outcome), b in flushed.items() if site == "Clinic C" and outcome == "ok")
    assert (ok.count, round(ok.latency_sum, 2), ok.le) == (3, 12.35, [1, 0, 1, 0, 0, 0, 0])


def test_a_failing_sink_keeps_the_counts_for_the_next_flush() -> None:
    metrics.pending_clear()
    kept: list[int] = []

    def broken(buckets: dict) -> None:
        raise OSError("database down")

    metrics.sink_set(broken)
    try:
        metrics.record(site="Clinic D", endpoint="jwks", outcome="ok", seconds=0.1)
        assert metrics.flush(force=True) == 0
        metrics.sink_set(lambda buckets: kept.extend(b.count for b in buckets.values()))
        assert metrics.flush(force=True) == 1
    finally:
        from healthcommerce.monitoring.services import buckets_store

        metrics.sink_set(buckets_store)
    assert kept == [1]
