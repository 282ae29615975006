"""The admin site: password and a TOTP code from the staff member's device on one login form (django-otp).

Every admin page needs a session verified by an OTP device (``OTPAdminSite.has_permission``): a password alone
logs nobody in, and a code is refused a second time (django-otp's ``TOTPDevice`` keeps the last time step it
accepted, ``last_t``). A right password with a missing or wrong code counts as a failed login for django-axes,
so guessing codes is locked out like guessing passwords (``core/lockout.py``). Staff enrol a device with
``manage.py staff_totp add <username>`` (docs/deploy.md "Staff accounts").

A refused login says one thing (``LOGIN_REFUSED``) whatever failed: a wrong username or password, a missing, wrong
or replayed code, a device django-otp has throttled after wrong codes, or a lockout by django-axes
(``staff_lockout_response``, ``AXES_LOCKOUT_CALLABLE``). The page after a right password looks like the page after a
wrong one (no device list), so the form never tells a guesser that they have the password.

Source: OWASP ASVS 5.0 V6.3 (multi-factor for privileged accounts), V6.5 (one-time passwords used once), V6.3.8
(no disclosure of which factor failed), HIPAA 164.312(d) person or entity authentication.
"""

from typing import Any

from django import forms
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

LOGIN_REFUSED = (
    "Login refused. Check your username, password and the current code from your authenticator app, then try "
    "again. After repeated failures logins for the account are paused for up to an hour; another administrator "
    "can help if it keeps failing."
)


class StaffAuthenticationForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form (``username``, ``password``, ``otp_token``) that reports a refused second
    factor to django-axes. Raises ``ValidationError(LOGIN_REFUSED, code="invalid_login")`` for any refusal: a wrong
    password, an inactive account, a missing, wrong or replayed code, a throttled device.

    django-otp 1.7 asks for a device choice first; a staff member logs in with username, password and code in one
    step (the code is checked against their confirmed TOTP devices), the password is never written back into the
    page, and no device list is shown (it would show that the password was right)."""

    error_messages = {
        **OTPAdminAuthenticationForm.error_messages,
        "invalid_login": LOGIN_REFUSED,
        "inactive": LOGIN_REFUSED,
    }

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

    def _verify_token(self, user: Any, token: str, device: Device | None = None) -> Device | None:
        """Check ``token`` on the chosen device, or (a staff member with several TOTP devices and no list to choose
        from) on each confirmed TOTP device until one accepts it. Raises ``ValidationError`` when none does."""
        if device is not None or self.cleaned_data.get("otp_device"):
            return super()._verify_token(user, token, device)
        for candidate in TOTPDevice.objects.devices_for_user(user, confirmed=True):
            allowed, _ = candidate.verify_is_allowed()
            if allowed and candidate.verify_token(token):
                return candidate
        raise ValidationError(LOGIN_REFUSED, code="invalid_login")

    def clean(self) -> dict[str, Any]:
        """Check the password, then the code; a refused code after a right password sends ``user_login_failed``.
        Any refusal raises the one ``LOGIN_REFUSED`` error, and the form is left as a wrong password leaves it."""
        try:
            return super().clean()
        except ValidationError as exc:
            if self.get_user() is not None:
                # the password was right: axes counts this attempt like a wrong password
                user_login_failed.send(
                    sender=__name__,
                    credentials={"username": self.cleaned_data.get("username", "")},
                    request=self.request,
                )
                self.user_cache = None  # the page must not differ from a wrong password's
            raise ValidationError(LOGIN_REFUSED, code="invalid_login") from exc


def staff_lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """The login page with ``LOGIN_REFUSED`` for a login django-axes refuses (``AXES_LOCKOUT_CALLABLE``): a locked
    out account reads like any other refused login. Status 429 (axes' default), body as any refusal."""
    from django.contrib import admin

    username = str((credentials or {}).get("username") or request.POST.get("username", ""))[:150]
    form = StaffAuthenticationForm(request, initial={"username": username})
    form.cleaned_data = {}
    form.add_error(None, forms.ValidationError(LOGIN_REFUSED, code="invalid_login"))
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "app_path": request.get_full_path(),
        "form": form,
        REDIRECT_FIELD_NAME: request.GET.get(REDIRECT_FIELD_NAME, request.POST.get(REDIRECT_FIELD_NAME, "")),
        "username": username,
    }
    return render(request, StaffAdminSite.login_template, context, status=429)


class StaffAdminSite(OTPAdminSite):
    """``admin.site`` for the whole project (``core/apps.py`` ``StaffAdminConfig.default_site``): django-otp's
    ``OTPAdminSite`` kept under the name ``admin``, so ``admin:`` URL names and ``/admin/`` stay as they were."""

    login_form = StaffAuthenticationForm
    login_template = "admin/staff_login.html"
    site_header = "healthcommerce administration"  # the page header (Django's default: "Django administration")
    site_title = "healthcommerce admin"  # the end of every <title>
    index_title = "Orders, EHR sites and integrations"  # the index page's heading

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
