"""The local backend's orders (the outbox lives in ``healthcommerce.outbox``)."""

from django.db import models

from healthcommerce.core.encryption import EncryptedJSONField
from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import SiteSettings


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

    def __str__(self) -> str:
        return f"{self.order_reference} ({self.status})"


class InboundStatusEvent(BaseModel):
    """A status webhook event received from a commerce backend, kept to deduplicate on the sender's event id.

    One row per (``backend``, ``event_id``): a replay of the same event finds it and changes nothing. ``outcome``
    is what the event did: ``applied``, ``unchanged`` (not newer than what the order has) or ``refused`` (e.g.
    cancelled after shipping). Holds no PHI: the order, a status and codes.
    """

    backend = models.CharField(max_length=40)
    event_id = models.CharField(max_length=200)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=20)
    outcome = models.CharField(max_length=20)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["backend", "event_id"], name="inbound_status_event_once")]

    def __str__(self) -> str:
        return f"{self.backend} {self.event_id} ({self.outcome})"


class FulfillmentSite(SiteSettings):
    """The fulfillment stage's own settings for an EHR site (registered in ``apps.py``; docs/extending.md "Add a
    site setting")."""

    shipto_reread = models.BooleanField(
        verbose_name="ship-to re-read",
        default=False,
        help_text="Notify, then pull: re-read only the patient's address with backend services just before fulfilment.",
    )

    class Meta:
        verbose_name = "fulfillment settings"
        verbose_name_plural = "fulfillment settings"

    def backend_needs(self) -> dict[str, str]:
        """Return ``{"ship-to re-read": "system/Patient.r"}`` when the site re-reads the ship-to, else ``{}``."""
        return {"ship-to re-read": "system/Patient.r"} if self.shipto_reread else {}
