"""The local backend's orders (the outbox lives in ``healthcommerce.outbox``)."""

from django.db import models

from healthcommerce.core.models import BaseModel


class LocalCommerceOrder(BaseModel):
    """An order as the default ``local`` commerce backend holds it: only the minimized ``CommerceOrder``.

    Status moves ``received -> confirmed`` (the patient completed the purchase link) ``-> shipped ->
    delivered``; an admin marks it shipped, then delivered. Before it ships it may be ``cancelled``. It never goes
    back.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        CONFIRMED = "confirmed"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    idempotency_key = models.CharField(max_length=100, unique=True)
    # Every submit with this key counts, replays included: more than one means the pipeline sent it again.
    submit_count = models.PositiveIntegerField(default=0, help_text="Submit calls received with this idempotency key.")
    order_reference = models.CharField(max_length=20, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    tracking_number = models.CharField(max_length=100, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.order_reference} ({self.status})"
