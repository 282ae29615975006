"""Staff logins end after 15 idle minutes and 12 hours (healthcommerce/core/staffsessions.py); the clock is moved
by writing the session's timestamps back in time."""

import time

import pytest
from django.test import Client

from healthcommerce.core.staffsessions import SEEN, STARTED
from tests.staff import staff_login, staff_user


@pytest.fixture
def staff_client(db: None, django_user_model) -> Client:
    return staff_login(Client(), staff_user(django_user_model, "ada", "admin"))


def _age(client: Client, **seconds_ago: float) -> None:
    session = client.session
    for key, ago in seconds_ago.items():
        session[key] = time.time() - ago
    session["clinician_data"] = "kept"
    session.save()


def _in_admin(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_a_new_staff_login_is_stamped_and_reaches_the_admin(staff_client) -> None:
    assert _in_admin(staff_client)
    assert {STARTED, SEEN} <= set(staff_client.session.keys())


def test_fifteen_idle_minutes_end_the_staff_login(staff_client) -> None:
    _age(staff_client, staff_seen_at=15 * 60 + 1, staff_started_at=20 * 60)
    assert not _in_admin(staff_client)
    assert staff_client.session.get("clinician_data") == "kept"  # a launch in the same browser keeps working
    assert "_auth_user_id" not in staff_client.session


def test_admin_activity_within_fifteen_minutes_keeps_the_login(staff_client) -> None:
    _age(staff_client, staff_seen_at=14 * 60, staff_started_at=3 * 3600)
    assert _in_admin(staff_client)
    assert time.time() - staff_client.session[SEEN] < 60


def test_twelve_hours_end_the_login_however_active(staff_client) -> None:
    _age(staff_client, staff_seen_at=1, staff_started_at=12 * 3600 + 1)
    assert not _in_admin(staff_client)


def test_pages_outside_the_admin_do_not_count_as_staff_activity(staff_client) -> None:
    _age(staff_client, staff_seen_at=10 * 60, staff_started_at=3600)
    staff_client.get("/healthz")
    assert time.time() - staff_client.session[SEEN] >= 10 * 60 - 5


def test_a_cookie_unknown_here_is_not_dropped_outside_the_admin(db: None) -> None:
    """The sandbox EHR shares 127.0.0.1 with the app in tests and the demo: it must not delete the app's cookie."""
    from django.conf import settings

    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = "a-session-of-another-app"
    response = client.get("/healthz")
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_a_session_without_the_stamps_is_ended(staff_client) -> None:
    session = staff_client.session
    del session[STARTED]
    session.save()
    assert not _in_admin(staff_client)


def test_sessions_of_anonymous_visitors_are_left_alone(db: None) -> None:
    client = Client()
    session = client.session
    session["clinician_data"] = "kept"
    session.save()
    client.get("/healthz")
    assert client.session.get("clinician_data") == "kept"
