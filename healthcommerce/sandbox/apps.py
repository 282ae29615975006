from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "healthcommerce.sandbox"
    verbose_name = "Sandbox EHR"
    label = "sandbox"
    default_auto_field = "django.db.models.BigAutoField"
