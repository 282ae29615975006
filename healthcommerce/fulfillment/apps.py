from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    """Fulfillment subscribes to ``order.signed``, ``order.patient_confirmed`` and ``order.cancelled`` (ADR 0008)."""

    name = "healthcommerce.fulfillment"
    label = "fulfillment"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the outbox subscribers of this stage, its system checks and its per-site settings."""
        from healthcommerce.ehr.sitefeatures import site_feature_register
        from healthcommerce.fulfillment import checks  # noqa: F401  (registers the deploy check)
        from healthcommerce.fulfillment.models import FulfillmentSite
        from healthcommerce.orders.events import TOPIC_ORDER_CANCELLED, TOPIC_ORDER_SIGNED, TOPIC_PATIENT_CONFIRMED
        from healthcommerce.outbox.subscribers import subscribe

        subscribe(
            name="fulfillment.submit",
            topic=TOPIC_ORDER_SIGNED,
            handler="healthcommerce.fulfillment.services.fulfillment_submit",
            on_dead="healthcommerce.fulfillment.services.fulfillment_dead",
            batch_handler="healthcommerce.fulfillment.services.fulfillment_submit_batch",
            batch_if="healthcommerce.fulfillment.services.fulfillment_submits_in_batches",
        )
        subscribe(
            name="fulfillment.cancel",
            topic=TOPIC_ORDER_CANCELLED,
            handler="healthcommerce.fulfillment.services.fulfillment_cancel",
            on_dead="healthcommerce.fulfillment.services.fulfillment_cancel_failed",
        )
        subscribe(
            name="fulfillment.confirm",
            topic=TOPIC_PATIENT_CONFIRMED,
            handler="healthcommerce.fulfillment.services.fulfillment_confirm",
        )
        site_feature_register(
            name="fulfillment",
            title="Fulfillment",
            model=FulfillmentSite,
            backend_needs=lambda site: FulfillmentSite.of(site).backend_needs(),
        )
