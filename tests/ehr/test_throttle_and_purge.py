"""``/smart/launch`` is throttled per client address before any row is written, and beat purges ended launches
and expired sessions (issue 9 "Outbound and supply chain", "Retention")."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.services import launch_tokens_clear, launches_purge
from healthcommerce.ehr.tasks import clear_tokens, purge
from healthcommerce.orders.models import Order

pytestmark = pytest.mark.django_db
EHR = "https://ehr.example.org"


@pytest.fixture
def site(settings) -> EHRSite:  # type: ignore[no-untyped-def]
    settings.LAUNCH_RATE_LIMIT = "3/m"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    cache.clear()
    discovered = {
        "authorization_endpoint": "https://ehr.example.org/authorize",
        "token_endpoint": "https://ehr.example.org/token",
    }
    return EHRSite.objects.create(
        name="Throttled",
        iss="https://ehr.example.org/fhir",
        client_id="hc",
        discovery=discovered,
        discovered_at=timezone.now(),
    )


def launch(client, *, ip: str, forwarded: str = ""):  # type: ignore[no-untyped-def]
    extra = {"REMOTE_ADDR": ip} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    return client.get("/smart/launch", {"iss": "https://ehr.example.org/fhir", "launch": "abc"}, **extra)


def test_past_the_limit_one_address_gets_429_and_no_launch_row(client, site: EHRSite) -> None:  # type: ignore[no-untyped-def]
    answers = [launch(client, ip="198.51.100.9").status_code for _ in range(5)]

    assert answers == [302, 302, 302, 429, 429]
    assert Launch.objects.count() == 3
    refused = launch(client, ip="198.51.100.9")
    assert refused["Retry-After"] == "60" and b"Too many launches" in refused.content
    assert launch(client, ip="198.51.100.10").status_code == 302  # another address is not held back


def test_the_limit_counts_the_client_behind_a_trusted_proxy_not_the_proxy(client, site: EHRSite) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert launch(client, ip="10.0.0.5", forwarded="203.0.113.7").status_code == 302
    assert launch(client, ip="10.0.0.5", forwarded="203.0.113.7").status_code == 429
    assert launch(client, ip="10.0.0.5", forwarded="203.0.113.8").status_code == 302  # same proxy, another clinic


def test_an_empty_limit_turns_the_throttle_off(client, site: EHRSite, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LAUNCH_RATE_LIMIT = ""

    assert {launch(client, ip="198.51.100.9").status_code for _ in range(6)} == {302}


def test_beat_purges_launches_ended_a_day_ago_and_expired_sessions_and_audits_it(site: EHRSite, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"  # the database engine, where purge deletes rows
    now = timezone.now()
    old = Launch.objects.create(site=site, state="s-old", expires_at=now - timedelta(hours=25), access_token="t-old")
    recent = Launch.objects.create(site=site, state="s-new", expires_at=now - timedelta(hours=23))
    live = Launch.objects.create(site=site, state="s-live", expires_at=now + timedelta(minutes=30))
    order = Order.objects.create(site=site, launch=old, patient_fhir_id="p1", order_date=now.date())
    expired = SessionStore()
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=now - timedelta(minutes=1))
    current = SessionStore()
    current.create()

    assert purge() == {"launches": 1, "sessions": 1}

    assert set(Launch.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    order.refresh_from_db()
    assert order.launch_id is None  # the order keeps its data
    assert list(Session.objects.values_list("session_key", flat=True)) == [current.session_key]
    row = AuditEvent.objects.get(action="retention.purge")
    assert row.detail == {"launches": 1, "sessions": 1, "retention_hours": 24}
    assert launches_purge().launches == 0  # idempotent


def test_beat_clears_the_tokens_of_expired_launches_and_expired_access_tokens_and_audits_it(site: EHRSite) -> None:
    now = timezone.now()
    held = {"access_token": "a-token", "refresh_token": "r-token", "token_expires_at": now + timedelta(minutes=5)}
    expired = Launch.objects.create(site=site, state="s-exp", expires_at=now - timedelta(seconds=1), **held)
    live = Launch.objects.create(site=site, state="s-live", expires_at=now + timedelta(minutes=30), **held)
    spent = held | {"token_expires_at": now - timedelta(seconds=1)}
    lapsed = Launch.objects.create(site=site, state="s-lapsed", expires_at=now + timedelta(minutes=30), **spent)

    assert clear_tokens() == 2

    cleared = Launch.objects.get(pk=expired.pk)
    assert (cleared.access_token, cleared.refresh_token, cleared.token_expires_at) == ("", "", None)
    kept = Launch.objects.get(pk=live.pk)
    assert (kept.access_token, kept.refresh_token) == ("a-token", "r-token")
    # A live launch whose access token expired keeps only its refresh token, until the launch itself expires.
    access_gone = Launch.objects.get(pk=lapsed.pk)
    assert (access_gone.access_token, access_gone.refresh_token) == ("", "r-token")
    assert access_gone.token_expires_at == access_gone.expires_at
    row = AuditEvent.objects.get(action="retention.purge", target="Launch.tokens")
    assert row.detail == {"launches": 1, "access_tokens": 1} and row.actor == "system:retention"
    assert launch_tokens_clear() == 0  # idempotent, and a run that clears nothing writes no audit row
    assert AuditEvent.objects.filter(target="Launch.tokens").count() == 1
