"""Personalized purchase links sent to the patient."""

from django.db import models

from healthcommerce.core.encryption import EncryptedCharField
from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import SiteSettings
from healthcommerce.orders.models import Order


class PurchaseLink(BaseModel):
    """A link ``/p/<token>/``; only the SHA-256 of the >= 256-bit token is stored (docs/reliability.md
    "Purchase links").

    Expires at ``expires_at``; locked after ``PURCHASE_LINK_MAX_FAILURES`` wrong dates of birth;
    single use once ``completed_at`` is set; revocable. ``sent_to``/``sent_at`` record the email,
    ``sms_sent_to`` (E.164)/``sms_sent_at`` the text message it went out in (docs/adr/0010). ``purpose`` says
    which message carried it: the first link, or a reminder before the first one expires (``reminders``).
    """

    class Purpose(models.TextChoices):
        LINK = "link"
        REMINDER = "reminder"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="purchase_links")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    failed_attempts = models.PositiveIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    sent_to = EncryptedCharField(max_length=300, blank=True)  # an email address: encrypted (docs/adr/0016)
    sent_at = models.DateTimeField(null=True, blank=True)
    sms_sent_to = EncryptedCharField(verbose_name="SMS sent to", max_length=20, blank=True)
    sms_sent_at = models.DateTimeField(verbose_name="SMS sent at", null=True, blank=True)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.LINK)
    # Retention: when ``sent_to``/``sms_sent_to`` were blanked (the order's PHI went; the link is revoked).
    phi_purged_at = models.DateTimeField(verbose_name="PHI purged at", null=True, blank=True)

    def __str__(self) -> str:
        return f"Link for {self.order.reference}"


class Payment(BaseModel):
    """The patient's payment for one version of an order, through a Stripe PaymentIntent (docs/adr/0012).

    ``amount_cents`` is in the minor unit of ``currency`` (ISO 4217, upper case). ``status`` only moves forward
    (``purchaselinks.payments``): ``requires_payment`` (waiting for the patient) and ``failed`` (the last
    attempt was declined, ``last_error_code`` says why; the patient may try again) go to ``processing`` or
    ``succeeded``; ``succeeded`` goes only to ``refunded``; ``cancelled`` (never charged) is final. One live
    (not cancelled) payment per order version. ``idempotency_key`` is sent as Stripe's ``Idempotency-Key`` when
    creating the PaymentIntent, so a retried create returns the same one. ``card_brand``/``card_last4`` (e.g.
    ``Visa``/``4242``) are what the receipt shows (PCI DSS allows showing the last four digits). Holds no PHI and
    no client secret.
    """

    class Status(models.TextChoices):
        REQUIRES_PAYMENT = "requires_payment"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REFUNDED = "refunded"
        CANCELLED = "cancelled"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    order_version = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField(
        verbose_name="amount (cents)",
    )
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUIRES_PAYMENT, db_index=True)
    stripe_payment_intent_id = models.CharField(verbose_name="Stripe PaymentIntent ID", max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    last_error_code = models.CharField(max_length=100, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(verbose_name="card last 4", max_length=4, blank=True)
    amount_refunded_cents = models.PositiveIntegerField(verbose_name="amount refunded (cents)", default=0)
    stripe_refund_id = models.CharField(verbose_name="Stripe refund ID", max_length=255, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "order_version"],
                condition=~models.Q(status="cancelled"),
                name="payment_live_once_per_order_version",
            ),
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"],
                condition=~models.Q(stripe_payment_intent_id=""),
                name="payment_intent_once",
            ),
        ]

    def __str__(self) -> str:
        return f"Payment for {self.order.reference} ({self.status})"


class StripeEvent(BaseModel):
    """A Stripe webhook event received, kept to deduplicate on Stripe's event id (``evt_...``).

    Written in the same transaction as the change the event made, so a redelivery finds it and changes nothing.
    ``outcome`` is ``applied``, ``unchanged`` (not newer than what the payment has) or ``ignored`` (not ours or
    not a type we act on). Holds no PHI: ids, a type and a code.
    """

    event_id = models.CharField(verbose_name="event ID", max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=20)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.outcome})"


class PatientLinkSite(SiteSettings):
    """The purchase-link stage's own settings for an EHR site: how links reach patients and the number they call
    (registered in ``apps.py``; docs/extending.md "Add a site setting")."""

    sms_enabled = models.BooleanField(
        verbose_name="SMS enabled",
        default=False,
        help_text="Text purchase links to patients' mobile numbers too (the health system's consent policy allows "
        "it; docs/adr/0010). Email is always sent.",
    )
    patient_support_phone = models.CharField(
        max_length=40,
        blank=True,
        default="",
        help_text="The number patients call about an order, printed in their emails and on their pages, e.g. "
        "(207) 555-0100. Empty: they are told to contact the clinic.",
    )

    class Meta:
        verbose_name = "patient link settings"
        verbose_name_plural = "patient link settings"
