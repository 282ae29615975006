from django.apps import AppConfig


class OutboxConfig(AppConfig):
    """The transactional outbox of named topics through which the stages hand over (ADR 0008)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "healthcommerce.outbox"
    label = "outbox"
    verbose_name = "Outbox"
