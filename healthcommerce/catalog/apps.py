from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "healthcommerce.catalog"
    label = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from healthcommerce.catalog.checks import retired_payer_rules_check

        checks.register(retired_payer_rules_check)  # reads the table: no database tag, so plain `check` shows it
