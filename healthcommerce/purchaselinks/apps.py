from django.apps import AppConfig


class PurchaselinksConfig(AppConfig):
    """Purchase links subscribe to ``order.submitted`` (send the link) and ``order.status_changed`` (tell the
    patient it shipped, was delivered or cancelled) (ADR 0008), and to their own ``purchase_link.reminder_due``
    (a reminder before the link expires, published by beat)."""

    name = "healthcommerce.purchaselinks"
    verbose_name = "Purchase links"
    label = "purchaselinks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the outbox subscribers of this stage, its system checks and its per-site settings."""
        from healthcommerce.ehr.sitefeatures import site_feature_register
        from healthcommerce.orders.events import (
            TOPIC_ORDER_STATUS_CHANGED,
            TOPIC_ORDER_SUBMITTED,
            TOPIC_PATIENT_CONFIRMED,
        )
        from healthcommerce.outbox.subscribers import subscribe
        from healthcommerce.purchaselinks import checks  # noqa: F401  (registers the Stripe deploy check)
        from healthcommerce.purchaselinks.models import PatientLinkSite
        from healthcommerce.purchaselinks.reminders import TOPIC_LINK_REMINDER_DUE

        subscribe(
            name="purchaselinks.deliver",
            topic=TOPIC_ORDER_SUBMITTED,
            handler="healthcommerce.purchaselinks.services.purchase_link_deliver",
        )
        subscribe(
            name="purchaselinks.remind",
            topic=TOPIC_LINK_REMINDER_DUE,  # published by this stage's own beat task (reminders.py)
            handler="healthcommerce.purchaselinks.reminders.purchase_link_remind",
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
        site_feature_register(name="purchaselinks", title="Purchase links", model=PatientLinkSite)
