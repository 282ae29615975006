from django.apps import AppConfig


class PurchaselinksConfig(AppConfig):
    name = "healthcommerce.purchaselinks"
    label = "purchaselinks"
    default_auto_field = "django.db.models.BigAutoField"
