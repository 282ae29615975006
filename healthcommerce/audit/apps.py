from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "healthcommerce.audit"
    verbose_name = "Audit trail"
    label = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the login, lockout and admin-change receivers (``audit.receivers``)."""
        from axes.signals import user_locked_out
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import post_save

        from healthcommerce.audit import receivers

        user_logged_in.connect(receivers.logged_in, dispatch_uid="audit.logged_in")
        user_logged_out.connect(receivers.logged_out, dispatch_uid="audit.logged_out")
        user_login_failed.connect(receivers.login_failed, dispatch_uid="audit.login_failed")
        user_locked_out.connect(receivers.locked_out, dispatch_uid="audit.locked_out")
        post_save.connect(receivers.log_entry_saved, sender=LogEntry, dispatch_uid="audit.log_entry")
