"""The local backend's orders, in their own app (``commerce_local``), on the table they always had."""

from django.db import models

from healthcommerce.core.encryption import EncryptedJSONField
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
    payload = EncryptedJSONField()  # ship-to and contact: PHI, encrypted at rest (docs/adr/0016)
    # The patient's confirmation (a corrected ship-to, a delivery preference): kept apart so ``payload`` stays
    # exactly what was submitted under the idempotency key.
    confirmation = EncryptedJSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    carrier = models.CharField(max_length=100, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    tracking_url = models.URLField(verbose_name="tracking URL", max_length=500, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Retention: when ship-to and contact were removed from ``payload`` and ``confirmation`` (the order's PHI went).
    phi_purged_at = models.DateTimeField(verbose_name="PHI purged at", null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        db_table = "fulfillment_localcommerceorder"  # from when it lived in ``fulfillment``: no data moved

    def __str__(self) -> str:
        return f"{self.order_reference} ({self.status})"
