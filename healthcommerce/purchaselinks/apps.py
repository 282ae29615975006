from django.apps import AppConfig


class PurchaselinksConfig(AppConfig):
    """Purchase links subscribe to ``order.submitted`` (send the link) and ``order.status_changed`` (tell the
    patient it shipped, was delivered or cancelled) (ADR 0008)."""

    name = "healthcommerce.purchaselinks"
    label = "purchaselinks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the outbox subscribers of this stage and its system checks."""
        from healthcommerce.orders.events import (
            TOPIC_ORDER_STATUS_CHANGED,
            TOPIC_ORDER_SUBMITTED,
            TOPIC_PATIENT_CONFIRMED,
        )
        from healthcommerce.outbox.subscribers import subscribe
        from healthcommerce.purchaselinks import checks  # noqa: F401  (registers the Stripe deploy check)

        subscribe(
            name="purchaselinks.deliver",
            topic=TOPIC_ORDER_SUBMITTED,
            handler="healthcommerce.purchaselinks.services.purchase_link_deliver",
        )
        subscribe(
            name="purchaselinks.notify_confirmed",
            topic=TOPIC_PATIENT_CONFIRMED,
            handler="healthcommerce.purchaselinks.status_notices.confirmation_notify",
        )
        subscribe(
            name="purchaselinks.notify_status",
            topic=TOPIC_ORDER_STATUS_CHANGED,
            handler="healthcommerce.purchaselinks.status_notices.status_notify",
        )
