"""``/metrics`` (Prometheus text), the per-site dashboard (staff only, inline SVG) and ``/readyz``'s broker and
migrations checks (docs/reliability.md "Integration health")."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from healthcommerce.core import metrics as core_metrics
from healthcommerce.monitoring.models import Alert
from healthcommerce.monitoring.tasks import evaluate
from healthcommerce.outbox import health
from tests.staff import staff_login

pytestmark = pytest.mark.django_db


def test_metrics_exposes_our_counters_django_prometheus_and_the_database_gauges(client, calls) -> None:  # type: ignore[no-untyped-def]
    core_metrics.record(site="Clinic A", endpoint="fhir:Patient", outcome="5xx", seconds=0.4)
    evaluate()  # beat's alert task, which records when it ran
    Alert.objects.create(rule="fhir_errors", site="Clinic A", status=Alert.Status.OPEN, text="FHIR errors ...")
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    for name in (
        "hc_integration_requests",
        "hc_integration_latency_seconds",
        "hc_sign_to_ack_seconds",
        "hc_outbox_pending",
        "hc_outbox_dead",
        "hc_outbox_lag_seconds",
        "hc_alerts_open",
        "hc_alerts_last_run_seconds",
        "django_http_requests_before_middlewares",
    ):
        assert name in families, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families["hc_integration_requests"].samples}
    key = ("hc_integration_requests_total", (("endpoint", "fhir:Patient"), ("outcome", "5xx"), ("site", "Clinic A")))
    assert samples[key] >= 1
    assert families["hc_alerts_open"].samples[0].labels == {"rule": "fhir_errors", "site": "Clinic A"}


def test_metrics_are_not_shown_to_the_internet_but_to_a_bearer_token(settings) -> None:  # type: ignore[no-untyped-def]
    outsider = Client(REMOTE_ADDR="203.0.113.9")
    assert outsider.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-me-0123456789"
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789").status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert outsider.get("/metrics").status_code == 200


def test_the_dashboard_shows_a_sites_day_as_svg_and_its_open_alerts_to_staff_only(client, calls) -> None:  # type: ignore[no-untyped-def]
    calls("Clinic A", "fhir:Patient", "ok", 30, minutes_ago=90, seconds=0.3)
    calls("Clinic A", "fhir:Patient", "timeout", 3, minutes_ago=60)
    calls("Clinic A", "token", "401", 4, minutes_ago=5)
    calls("Clinic A", "sign_to_ack", "ok", 2, minutes_ago=5, seconds=12)
    Alert.objects.create(
        rule="auth_failures", site="Clinic A", status=Alert.Status.OPEN, text="Authentication failures on Clinic A"
    )
    assert client.get("/admin/monitoring/dashboard/?site=Clinic A").status_code == 302  # to the admin login
    User.objects.create_user("clerk", password="pw-0123456789")
    client.login(username="clerk", password="pw-0123456789")
    assert client.get("/admin/monitoring/dashboard/").status_code == 302  # not staff
    client.logout()
    staff_login(client, User.objects.create_user("ops", password="pw-0123456789", is_staff=True))  # with TOTP
    index = client.get("/admin/monitoring/dashboard/").content.decode()
    assert "?site=Clinic%20A" in index and "Authentication failures on Clinic A" in index
    page = client.get("/admin/monitoring/dashboard/", {"site": "Clinic A"}).content.decode()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 5
    assert not re.search(r"<script[^>]*src=\"(https?:)?//", page)  # nothing from another server (admin's own JS only)
    assert re.search(r"Calls per 30 minutes \(max 3[03]\)", page)
    assert "Authentication failures on Clinic A" in page
    assert "<td>fhir:Patient</td>" in page and "<td>token</td>" in page


def test_readyz_fails_when_the_broker_does_not_answer(client, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from celery import current_app
    from kombu import Connection

    monkeypatch.setattr(current_app, "connection_for_write", lambda: Connection("redis://127.0.0.1:9/0"))
    health.relay_heartbeat()
    body = client.get("/readyz").json()
    assert body["checks"]["broker"].startswith("the Celery broker does not answer")
    assert body["status"] == "failing"


def test_readyz_fails_while_a_migration_is_not_applied(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(health, "_migrated", False)
    monkeypatch.setattr(
        health.MigrationExecutor, "migration_plan", lambda self, targets: [("monitoring.0002_next", False)]
    )
    body = client.get("/readyz").json()
    assert body["checks"]["migrations"] == "1 migrations are not applied: run `manage.py migrate` (make release)"


def test_the_admin_index_and_a_sites_page_link_to_the_dashboard(admin_client) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.ehr.models import EHRSite

    assert 'href="/admin/monitoring/dashboard/"' in admin_client.get("/admin/").content.decode()
    site = EHRSite.objects.create(name="Clinic A", iss="https://ehr.example/fhir", client_id="c")
    page = admin_client.get(f"/admin/ehr/ehrsite/{site.pk}/change/").content.decode()
    assert 'href="/admin/monitoring/dashboard/?site=Clinic%20A"' in page


def test_the_dashboard_asks_for_the_second_factor_like_every_admin_page(client) -> None:  # type: ignore[no-untyped-def]
    """A staff session that passed the password but not the TOTP code (django-otp's ``is_verified``) is sent to the
    login page, as the admin itself does (issue 18: the dashboard only checked staff status)."""
    user = User.objects.create_user("half", password="pw-12345678", is_staff=True, is_superuser=True)
    client.force_login(user)

    response = client.get("/admin/monitoring/dashboard/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
