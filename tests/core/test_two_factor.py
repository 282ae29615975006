"""The admin's second factor (healthcommerce/core/adminsite.py): password alone is refused, password and a TOTP
code log in, a code is refused the second time; and ``staff_totp`` enrols devices."""

import io

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.staff import staff_user, totp_code, totp_device

LOGIN = "/admin/login/?next=/admin/"


def _login(client: Client, username: str, password: str = "password", token: str = "") -> None:
    client.post(LOGIN, {"username": username, "password": password, "otp_token": token})


def _in_admin(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def staff(db: None, django_user_model):  # type: ignore[no-untyped-def]
    user = staff_user(django_user_model, "ada", "admin")
    totp_device(user)
    return user


def test_the_admin_refuses_a_password_only_login(staff) -> None:
    client = Client()
    _login(client, "ada")
    assert not _in_admin(client)


def test_a_staff_user_without_a_device_cannot_log_in(db: None, django_user_model) -> None:
    staff_user(django_user_model, "nodevice", "admin")
    client = Client()
    _login(client, "nodevice", token="123456")
    assert not _in_admin(client)


def test_password_and_a_valid_totp_code_log_in(staff) -> None:
    client = Client()
    _login(client, "ada", token=totp_code(totp_device(staff)))
    assert _in_admin(client)


def test_a_replayed_totp_code_is_refused(staff) -> None:
    code = totp_code(totp_device(staff))
    first = Client()
    _login(first, "ada", token=code)
    assert _in_admin(first)
    second = Client()
    _login(second, "ada", token=code)
    assert not _in_admin(second)


def test_a_wrong_code_after_a_right_password_counts_as_a_failed_login(staff, settings) -> None:
    settings.AXES_ENABLED = True
    client = Client()
    _login(client, "ada", token="000000" if totp_code(totp_device(staff)) != "000000" else "111111")
    assert not _in_admin(client)
    assert AccessAttempt.objects.filter(username="ada").get().failures_since_start == 1


def test_staff_totp_add_prints_an_otpauth_uri_and_replace_removes_the_old_device(staff) -> None:
    out = io.StringIO()
    call_command("staff_totp", "add", "ada", "--name", "phone", "--replace", stdout=out)
    assert "otpauth://totp/" in out.getvalue() and "secret=" in out.getvalue()
    assert list(TOTPDevice.objects.filter(user=staff).values_list("name", flat=True)) == ["phone"]


def test_the_admin_never_shows_a_device_secret(staff, django_user_model) -> None:
    from tests.staff import staff_login

    device = totp_device(staff)
    client = staff_login(Client(), staff)
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert page.status_code == 200 and device.key not in page.content.decode()
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").status_code == 403


def test_staff_totp_code_is_refused_outside_embedded_mode(staff, settings) -> None:
    settings.SANDBOX_ENABLED = False
    with pytest.raises(CommandError):
        call_command("staff_totp", "code", "ada")


def test_staff_totp_code_prints_a_code_that_logs_in_in_embedded_mode(staff, settings) -> None:
    settings.SANDBOX_ENABLED = True
    out = io.StringIO()
    call_command("staff_totp", "code", "ada", stdout=out)
    client = Client()
    _login(client, "ada", token=out.getvalue().strip())
    assert _in_admin(client)


def _refusal(response) -> str:  # type: ignore[no-untyped-def]
    """The page's error notes, as text (one per refused login)."""
    import re

    notes = re.findall(r'<p class="errornote"[^>]*>\s*(.*?)\s*</p>', response.content.decode(), re.S)
    return " | ".join(notes)


def test_every_refused_login_says_the_same_thing_whatever_failed(staff, settings) -> None:
    """Wrong password, missing code, wrong code after a right password, a device throttled after wrong codes, and
    an account locked by django-axes: one message, and the page never shows that the password was right."""
    from django.utils import timezone

    device = totp_device(staff)
    wrong = "000000" if totp_code(device) != "000000" else "111111"
    attempts = {
        "wrong password": ("wrong", totp_code(device)),
        "right password, no code": ("password", ""),
        "right password, wrong code": ("password", wrong),
    }
    pages = {}
    for name, (password, token) in attempts.items():
        pages[name] = Client().post(LOGIN, {"username": "ada", "password": password, "otp_token": token})
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=3, throttling_failure_timestamp=timezone.now()
    )
    pages["throttled device"] = Client().post(
        LOGIN, {"username": "ada", "password": "password", "otp_token": totp_code(device)}
    )
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    settings.AXES_ENABLED = True
    for _ in range(5):
        Client().post(LOGIN, {"username": "ada", "password": "wrong", "otp_token": ""})
    pages["locked out"] = Client().post(
        LOGIN, {"username": "ada", "password": "password", "otp_token": totp_code(device)}
    )
    messages = {name: _refusal(page) for name, page in pages.items()}
    assert len(set(messages.values())) == 1, messages
    assert "Login refused" in messages["wrong password"]
    for name, page in pages.items():
        html = page.content.decode()
        assert "Verification" not in html and "id_otp_device" not in html and "otp_challenge" not in html, name
        assert 'name="password"' in html and 'value="password"' not in html, name


def test_a_staff_member_with_two_devices_logs_in_with_a_code_from_either(staff) -> None:
    first = totp_device(staff)
    second = TOTPDevice.objects.create(user=staff, name="backup", confirmed=True)
    client = Client()
    _login(client, "ada", token=totp_code(second))
    assert _in_admin(client)
    assert first.pk != second.pk
