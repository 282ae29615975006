from django.apps import AppConfig


class GoLiveConfig(AppConfig):
    """Per-site go-live: the site record file and the readiness check (``manage.py ehr_site``)."""

    name = "healthcommerce.golive"
    label = "golive"
    verbose_name = "Go-live"
    default_auto_field = "django.db.models.BigAutoField"
