from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    """CDS Hooks 2.0 discovery and services (``/cds-services``) for sites that enable them."""

    name = "healthcommerce.cdshooks"
    label = "cdshooks"
    verbose_name = "CDS Hooks"
    default_auto_field = "django.db.models.BigAutoField"
