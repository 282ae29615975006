"""Personalized purchase links sent to the patient."""

from django.db import models

from healthcommerce.core.models import BaseModel
from healthcommerce.orders.models import Order


class PurchaseLink(BaseModel):
    """A link ``/p/<token>/``; only the SHA-256 of the >= 256-bit token is stored (docs/reliability.md
    "Purchase links").

    Expires at ``expires_at``; locked after ``PURCHASE_LINK_MAX_FAILURES`` wrong dates of birth;
    single use once ``completed_at`` is set; revocable. ``sent_to``/``sent_at`` record the email,
    ``sms_sent_to`` (E.164)/``sms_sent_at`` the text message it went out in (docs/adr/0010).
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="purchase_links")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    failed_attempts = models.PositiveIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    sent_to = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sms_sent_to = models.CharField(max_length=20, blank=True)
    sms_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Link for {self.order.reference}"
