from django.apps import AppConfig


class CoverageConfig(AppConfig):
    name = "healthcommerce.coverage"
    label = "coverage"
    verbose_name = "Coverage and eligibility"
    default_auto_field = "django.db.models.BigAutoField"
