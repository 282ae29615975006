"""django-axes on the admin login (healthcommerce/core/lockout.py): a username on one address locks after 5
failures, a username from rotating addresses after 20; one address cannot lock every admin."""

import pytest
from django.test import Client

from tests.staff import staff_user, totp_code, totp_device

LOGIN = "/admin/login/?next=/admin/"


def _fail(username: str, ip: str) -> int:
    response = Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": "wrong", "otp_token": ""})
    return response.status_code


def _login(username: str, ip: str) -> bool:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username=username)
    client = Client(REMOTE_ADDR=ip)
    client.post(LOGIN, {"username": username, "password": "password", "otp_token": totp_code(device)})
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)  # the next test login may use the same time step
    return client.get("/admin/").status_code == 200


@pytest.fixture(autouse=True)
def _axes_on(settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_ENABLED = True  # off in tests/settings.py for the rest of the suite


@pytest.fixture
def admins(db: None, django_user_model) -> list[str]:
    names = ["ada", "grace", "alan"]
    for name in names:
        totp_device(staff_user(django_user_model, name, "admin"))
    return names


def test_five_failures_lock_that_username_on_that_address(admins) -> None:
    for _ in range(5):
        _fail("ada", "203.0.113.9")
    assert _fail("ada", "203.0.113.9") == 429
    assert not _login("ada", "203.0.113.9")


def test_one_address_cannot_lock_every_admin(admins) -> None:
    for _ in range(5):
        _fail("ada", "203.0.113.9")
    assert not _login("ada", "203.0.113.9")
    assert _login("grace", "203.0.113.9")
    assert _login("ada", "198.51.100.7")


def test_rotating_addresses_still_lock_the_username(admins) -> None:
    for n in range(19):
        assert _fail("ada", f"203.0.113.{n + 1}") != 429
    _fail("ada", "203.0.113.100")
    assert not _login("ada", "198.51.100.7")
    assert _login("grace", "198.51.100.7")
