from axes import apps as axes_apps
from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django_otp.plugins.otp_totp import apps as totp_apps


class CoreConfig(AppConfig):
    name = "healthcommerce.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Stamp each staff login's session for the idle and absolute limits (``core/staffsessions.py``)."""
        from django.contrib.auth.signals import user_logged_in

        from healthcommerce.core.staffsessions import staff_session_start

        user_logged_in.connect(staff_session_start, dispatch_uid="healthcommerce.core.staff_session_start")


class StaffAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with the two-factor site (``core/adminsite.py``) as ``admin.site``; named in
    ``INSTALLED_APPS`` in its place."""

    default = False  # not the AppConfig of healthcommerce.core

    default_site = "healthcommerce.core.adminsite.StaffAdminSite"


class TwoFactorDevicesConfig(totp_apps.DefaultConfig):
    """django-otp's TOTP devices under a name an admin reads ("Two-factor devices", not "Otp_Totp"); named in
    ``INSTALLED_APPS`` in its place (the app label stays ``otp_totp``, so its tables and URLs are unchanged)."""

    default = False
    verbose_name = "Two-factor devices"


class LoginLockoutsConfig(axes_apps.AppConfig):
    """django-axes' login attempts and lockouts under a name an admin reads ("Login lockouts", not "Axes");
    named in ``INSTALLED_APPS`` in its place (label ``axes`` unchanged)."""

    default = False
    verbose_name = "Login lockouts"
