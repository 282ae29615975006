"""The admin site: password and a TOTP code from the staff member's device on one login form (django-otp).

Every admin page needs a session verified by an OTP device (``OTPAdminSite.has_permission``): a password alone
logs nobody in, and a code is refused a second time (django-otp's ``TOTPDevice`` keeps the last time step it
accepted, ``last_t``). A right password with a missing or wrong code counts as a failed login for django-axes,
so guessing codes is locked out like guessing passwords (``core/lockout.py``). Staff enrol a device with
``manage.py staff_totp add <username>`` (docs/deploy.md "Staff accounts").

Source: OWASP ASVS 5.0 V6.3 (multi-factor for privileged accounts), V6.5 (one-time passwords used once), HIPAA
164.312(d) person or entity authentication.
"""

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice


class StaffAuthenticationForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form (``username``, ``password``, ``otp_token``) that reports a refused second
    factor to django-axes. Raises ``ValidationError`` for a wrong password or a missing, wrong or replayed code.

    django-otp 1.7 asks for a device choice first; a staff member with one TOTP device (``staff_totp add``) logs
    in with username, password and code in one step, and the password is never written back into the page."""

    def _chosen_device(self, user: Any) -> Device | None:
        """Return the device chosen on the form, else the user's one confirmed TOTP device, else ``None``."""
        device = super()._chosen_device(user)
        if device is None and not self.cleaned_data.get("otp_device"):
            devices = list(TOTPDevice.objects.devices_for_user(user, confirmed=True))
            device = devices[0] if len(devices) == 1 else None
        return device

    def _update_form(self, user: Any) -> None:
        """Offer the user's devices, but keep the password out of the re-rendered page."""
        super()._update_form(user)
        self.fields["password"].widget.render_value = False  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        """Check the password, then the code; a refused code after a right password sends ``user_login_failed``."""
        try:
            return super().clean()
        except ValidationError:
            if self.user_cache is not None:
                # the password was right: axes counts this attempt like a wrong password
                user_login_failed.send(
                    sender=__name__,
                    credentials={"username": self.cleaned_data.get("username", "")},
                    request=self.request,
                )
            raise


class StaffAdminSite(OTPAdminSite):
    """``admin.site`` for the whole project (``core/apps.py`` ``StaffAdminConfig.default_site``): django-otp's
    ``OTPAdminSite`` kept under the name ``admin``, so ``admin:`` URL names and ``/admin/`` stay as they were."""

    login_form = StaffAuthenticationForm
    site_header = "healthcommerce administration"  # the page header (Django's default: "Django administration")
    site_title = "healthcommerce admin"  # the end of every <title>
    index_title = "Orders, EHR sites and integrations"  # the index page's heading

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
