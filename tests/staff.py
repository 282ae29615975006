"""Staff logins for tests: the admin needs a session verified by a second factor (healthcommerce/core/adminsite.py)."""

from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


def totp_device(user: Any) -> TOTPDevice:
    """Return the user's TOTP device, made the first time."""
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="test", defaults={"confirmed": True})
    return device


def totp_code(device: TOTPDevice, offset_steps: int = 0) -> str:
    """Return the device's code now (or ``offset_steps`` time steps away), zero-padded."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + offset_steps)
    return f"{totp.token():0{device.digits}d}"


def staff_login(client: Client, user: Any) -> Client:
    """Log ``user`` in on ``client`` as if with password and TOTP code: a session verified by their device."""
    device = totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def staff_user(django_user_model: Any, username: str, role: str) -> Any:
    """Return a staff user (password ``password``) in the group ``role`` (``support`` or ``admin``)."""
    user = django_user_model.objects.create_user(username=username, password="password", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user
