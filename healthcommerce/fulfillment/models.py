"""Fulfillment's own rows: the status webhook events received (the local backend's orders live in its own app,
``healthcommerce.fulfillment.backends.local``; the outbox in ``healthcommerce.outbox``)."""

from django.db import models

from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import SiteSettings


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
