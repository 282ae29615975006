from django.apps import AppConfig


class LocalCommerceConfig(AppConfig):
    """The ``local`` commerce backend as its own small app: its model (``LocalCommerceOrder``, table
    ``fulfillment_localcommerceorder`` kept from when it lived in ``fulfillment``), its admin and its tasks."""

    name = "healthcommerce.fulfillment.backends.local"
    label = "commerce_local"
    verbose_name = "Local commerce"
    default_auto_field = "django.db.models.BigAutoField"
