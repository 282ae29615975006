from django.apps import AppConfig


class EhrConfig(AppConfig):
    name = "healthcommerce.ehr"
    verbose_name = "EHR"
    label = "ehr"
    default_auto_field = "django.db.models.BigAutoField"
