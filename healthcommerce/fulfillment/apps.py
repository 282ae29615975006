from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    name = "healthcommerce.fulfillment"
    label = "fulfillment"
    default_auto_field = "django.db.models.BigAutoField"
