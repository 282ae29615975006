"""Orders: the pre-filled Standard Written Order a clinician signs, and its timeline."""

import secrets
from collections.abc import Callable
from typing import ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _

from healthcommerce.catalog.models import Product
from healthcommerce.catalog.pricing import money_format
from healthcommerce.core.encryption import (
    EncryptedCharField,
    EncryptedDateField,
    EncryptedEmailField,
    EncryptedJSONField,
)
from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import EHRSite, Launch, SiteSettings


def new_reference() -> str:
    """Return an opaque order reference such as ``HC-7K3M9QXW2D`` (no PHI, ~50 bits)."""
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    return "HC-" + "".join(secrets.choice(alphabet) for _ in range(10))


class FulfillmentStatus(models.TextChoices):
    """An order's status at the commerce backend (``CommerceBackend.status``), in the order it moves."""

    RECEIVED = "received"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class DeliveryPreference(models.TextChoices):
    """How the patient wants the parcel delivered (sent to the commerce backend with the confirmation)."""

    STANDARD = "standard", _("No preference")
    LEAVE_AT_DOOR = "leave_at_door", _("Leave it at my door")
    SIGNATURE = "signature", _("Hand it to me (signature)")


class CoverageStatus(models.TextChoices):
    """How the order's payer record (``Order.payer``) was decided."""

    NONE = "", "No coverage in the chart"
    MATCHED = "matched", "Matched from the chart's coverage"
    PICKED = "picked", "Picked by the clinician"
    NOT_RECOGNISED = "not_recognised", "The chart's coverage matched no payer record"
    SELF_PAY = "self_pay", "Self-pay, chosen by the clinician"


class Order(BaseModel):
    """One order for one product for one patient.

    Status moves ``draft -> signed -> submitted -> fulfilled``, or to ``failed``/``cancelled``; it never
    goes back (see ``orders.services.order_transition``). Once signed, the content is immutable and
    ``content_hash`` is the SHA-256 of its canonical JSON.
    """

    class Status(models.TextChoices):
        DRAFT = "draft"
        HELD = "held"  # arrived signed in the EHR but incomplete: staff complete it in the intake queue (ADR 0024)
        SIGNED = "signed"
        SUBMITTED = "submitted"
        FULFILLED = "fulfilled"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Source(models.TextChoices):
        """Where the order came from: the app (a clinician signed it here, after a SMART launch or a CDS Hooks card),
        or by itself, signed in the EHR (ADR 0024): an HL7 v2 order message or a FHIR notification."""

        APP = "app", "Signed in the app"
        HL7V2 = "hl7v2", "HL7 v2 order from the EHR"
        FHIR_NOTIFICATION = "fhir_notification", "FHIR notification from the EHR"

    reference = models.CharField(max_length=20, unique=True, default=new_reference, editable=False)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.APP, db_index=True)
    # An order that arrived by itself: the EHR's own order number (ORC-2 placer order number, or the request's
    # FHIR id) and the message it came in; status messages back name it.
    placer_order_number = models.CharField(max_length=200, blank=True, db_index=True)
    intake_message = models.ForeignKey(
        "intake.IntakeMessage", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    # ``held``: what staff must complete before it proceeds (user-facing lines, no PHI).
    hold_reasons = models.JSONField(default=list, blank=True)
    site = models.ForeignKey(EHRSite, on_delete=models.PROTECT, related_name="orders")
    launch = models.ForeignKey(Launch, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    # Every launch whose pre-fill found this draft (its creator included): a second launch of the same patient
    # shares the draft instead of taking it from the first, so each launch's page keeps listing it.
    launches = models.ManyToManyField(Launch, blank=True, related_name="shared_orders")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True)
    version = models.PositiveIntegerField(default=1)
    # What the EHR asked for.
    patient_fhir_id = models.CharField(verbose_name="patient FHIR ID", max_length=200)
    request_reference = models.CharField(max_length=300, blank=True, help_text="e.g. DeviceRequest/devreq021")
    request_system = models.CharField(max_length=200, blank=True)
    request_code = models.CharField(max_length=64, blank=True)
    request_display = models.CharField(max_length=300, blank=True)
    # Standard Written Order elements (CMS SWO: beneficiary name, order date, item, quantity, practitioner, NPI).
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(default=1)
    order_date = models.DateField()
    # PHI columns are encrypted at rest (docs/adr/0016); patient_fhir_id, an identifier, stays searchable.
    patient_name = EncryptedCharField(max_length=300)
    patient_birth_date = EncryptedDateField(null=True, blank=True)
    practitioner_reference = models.CharField(max_length=500, blank=True)
    practitioner_name = models.CharField(max_length=300, blank=True)
    practitioner_npi = models.CharField(verbose_name="practitioner NPI", max_length=20, blank=True)
    # Fulfillment: ship-to, contact, payer.
    ship_to = EncryptedJSONField(default=dict, blank=True)
    contact_email = EncryptedEmailField(blank=True)
    contact_phone = EncryptedCharField(max_length=40, blank=True)
    # The language to write to the patient in: a code of settings.LANGUAGES ("es"), "" for the default (English).
    # From Patient.communication at pre-fill, then the patient's own choice on the purchase pages (ADR 0013).
    patient_language = models.CharField(max_length=35, blank=True, help_text="e.g. es; blank: English")
    # The chart's own payer text (Coverage payor display or class; HL7 IN1-4), read-only; who pays is ``payer``, a
    # payer record matched from the chart's coverage (``payer_keys``, ``payer_name``) or picked by the clinician.
    payer_name = models.CharField(max_length=300, blank=True)
    payer = models.ForeignKey(
        "catalog.Payer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # a payer that priced orders is deactivated, never deleted
        related_name="orders",
    )
    coverage_status = models.CharField(max_length=20, choices=CoverageStatus.choices, blank=True, default="")
    # The Coverage's payor keys (references, system|value identifiers, bare values; HL7 IN1-3): not PHI.
    payer_keys = models.JSONField(default=list, blank=True)
    payer_member_id = EncryptedCharField(verbose_name="payer member ID", max_length=100, blank=True)
    # Sign-off.
    signed_by = models.CharField(max_length=500, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    # Fulfillment, as the commerce backend reports it (fulfillment.status): where the order went and how far it
    # got there. ``fulfillment_status`` never goes back (received < confirmed < shipped < delivered; cancelled
    # only before shipping).
    commerce_backend = models.CharField(max_length=40, blank=True, help_text="The backend that took the order.")
    commerce_id = models.CharField(
        verbose_name="commerce ID", max_length=200, blank=True, help_text="The backend's own id for the order."
    )
    fulfillment_status = models.CharField(
        max_length=20, choices=FulfillmentStatus.choices, blank=True, help_text="As the commerce backend reports it."
    )
    fulfillment_updated_at = models.DateTimeField(null=True, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    tracking_url = models.URLField(verbose_name="tracking URL", max_length=500, blank=True)
    # The patient's choices on the purchase page. The signed ship-to above is never changed: a corrected
    # address goes here (same shape) and is what the commerce backend gets with the confirmation.
    patient_ship_to = EncryptedJSONField(default=dict, blank=True, help_text="The patient's corrected ship-to.")
    # Notify, then pull (ADR 0022): the patient's address as the EHR had it just before fulfilment, when it differed
    # from the signed ship-to (same shape; empty: the signed one stands). The commerce backend gets this one.
    ehr_ship_to = EncryptedJSONField(
        verbose_name="EHR ship-to",
        default=dict,
        blank=True,
        help_text="The ship-to re-read from the EHR before fulfilment, when it changed.",
    )
    delivery_preference = models.CharField(max_length=20, choices=DeliveryPreference.choices, blank=True)
    terms_accepted_at = models.DateTimeField(null=True, blank=True)
    terms_version = models.CharField(max_length=20, blank=True)
    # Retention (orders.services.orders_phi_purge): when the PHI columns of this closed order were blanked.
    phi_purged_at = models.DateTimeField(
        verbose_name="PHI purged at", null=True, blank=True, help_text="When the PHI of this closed order was purged."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reference} ({self.status})"

    @property
    def current_ship_to(self) -> dict:
        """The address the order ships to now: the patient's correction, else the one re-read from the EHR before
        fulfilment, else the signed one (``Order.ship_to`` shape)."""
        return self.patient_ship_to or self.ehr_ship_to or self.ship_to or {}


class OrderEvent(BaseModel):
    """One entry on an order's timeline: a status change or a fulfillment event (shipped, delivered)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    LABELS = {
        "shipped": "Shipped",
        "delivered": "Delivered",
        "cancelled_by_platform": "Cancelled by the supplier",
        "cancelled_at_backend": "Cancelled at the supplier",
        "cancel_failed": "Cancel did not reach the supplier: call them",
        "status_conflict": "The supplier reported a conflicting status: call them",
        "tracking_updated": "Tracking updated",
        "submitted_after_cancel": "Reached the supplier as it was cancelled: cancelling there",
        "fulfillment_failed": "Could not be sent to the supplier",
        "product_mismatch_confirmed": "The signer confirmed the item fulfils the EHR request",
        "link_sent": "Purchase link sent to the patient",
        "link_revoked": "Purchase link withdrawn",
        "link_not_sent": "Purchase link not sent",
        "patient_confirmed": "Patient confirmed the order",
        "ship_to_changed_by_patient": "Patient corrected the ship-to address",
        "payment_succeeded": "Patient paid",
        "payment_failed": "A card payment was declined (the patient can try again)",
        "payment_refunded": "Payment refunded to the patient",
        "status_notified": "Patient notified",
        "writeback_done": "Recorded in the EHR",
        "writeback_failed": "Could not be recorded in the EHR",
        "hl7_status_sent": "Status sent to the EHR",
        "hl7_status_failed": "Status not delivered to the EHR",
        "shipto_reread": "Ship-to re-read from the EHR",
        "shipto_reread_warning": "Ship-to not re-read: the signed address was used",
        "coverage_confirmed": "Coverage confirmed active with the payer",
        "coverage_inactive": "Coverage NOT active per the payer: the patient is offered self-pay",
        "coverage_not_found": "The payer did not find the member: check the member ID and name",
        "coverage_rejected": "The payer rejected the eligibility check",
        "coverage_unconfirmed": "Coverage could not be confirmed with the payer: the patient sees an estimate",
    }
    # ``kind="status"`` entries, by the status reached.
    STATUS_LABELS = {
        "held": "Held at intake: staff must complete it",
        "signed": "Signed",
        "submitted": "Sent to the supplier",
        "fulfilled": "Shipped by the supplier",
        "failed": "Failed: not sent to the supplier",
        "cancelled": "Cancelled",
    }
    # ``link_not_sent``: why (``detail.reason``), as the clinician would say it.
    NOT_SENT = {
        "no_birth_date": "Purchase link not sent: no date of birth to check the patient against",
        "no_contact_email": "No email sent: no patient email on file",
        "no_contact_phone": "No text sent: no mobile number on file",
        "phone_unparseable": "No text sent: the phone number on file could not be read",
        "phone_not_mobile": "No text sent: the phone number on file is not a mobile number",
        "sms_rejected": "No text sent: the text provider refused the number",
        "email_error": "Purchase link email failed: it is retried automatically",
        "sms_error": "Purchase link text failed: it is retried automatically",
    }
    CHANNELS = {"email": "by email", "sms": "by text"}
    NOTIFIED = {
        "confirmed": "that the order is confirmed",
        "shipped": "that it shipped",
        "delivered": "that it was delivered",
        "cancelled": "that it was cancelled",
    }

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.order.reference} {self.kind}"

    @property
    def label(self) -> str:
        """A clinician-readable label for this entry, with what its ``detail`` adds (the channel, the reason, the
        amount); the kind itself, spaced, when none is set."""
        detail = self.detail or {}
        if self.kind == "status":
            return self.STATUS_LABELS.get(self.to_status, self.to_status.capitalize())
        if self.kind == "link_not_sent":
            return self.NOT_SENT.get(str(detail.get("reason")), self.LABELS["link_not_sent"])
        label = self.LABELS.get(self.kind, self.kind.replace("_", " ").capitalize())
        more = self._ADDS.get(self.kind)
        return more(self, label, detail) if more is not None else label

    def _link_sent(self, label: str, detail: dict) -> str:
        reminder = " (reminder)" if detail.get("reminder") else ""
        return f"{label} {self.CHANNELS.get(str(detail.get('channel')), '')}".rstrip() + reminder

    def _status_notified(self, label: str, detail: dict) -> str:
        what = self.NOTIFIED.get(str(detail.get("status")), "of a status change")
        return f"{label} {what} {self.CHANNELS.get(str(detail.get('channel')), '')}".rstrip()

    def _tracking(self, label: str, detail: dict) -> str:
        carrier, number = str(detail.get("carrier") or "").strip(), str(detail.get("tracking_number") or "").strip()
        parts = " · ".join(part for part in (f"via {carrier}" if carrier else "", number) if part)
        return f"{label} {parts}".rstrip()

    def _payment(self, label: str, detail: dict) -> str:
        if detail.get("amount_cents") is None:
            return label
        product = self.order.product  # the order is the one whose timeline this is: no query
        return f"{label} {money_format(int(detail['amount_cents']), product.currency if product else 'USD')}"

    # What a kind's ``detail`` adds to its label.
    _ADDS: ClassVar[dict[str, Callable[["OrderEvent", str, dict], str]]] = {
        "link_sent": _link_sent,
        "status_notified": _status_notified,
        "shipped": _tracking,
        "delivered": _tracking,
        "tracking_updated": _tracking,
        "payment_succeeded": _payment,
    }


class Writeback(models.TextChoices):
    """What the app writes into the EHR after sign-off (SMART-EPIC.md: Epic offers no DeviceRequest create)."""

    OFF = "off", "Nothing (default)"
    COMMUNICATION = "communication", "A Communication"
    DOCUMENT_REFERENCE = "document_reference", "A DocumentReference (clinical note)"


# The backend-services scope each write-back needs (ADR 0022).
WRITEBACK_SCOPES = {
    Writeback.COMMUNICATION: "system/Communication.c",
    Writeback.DOCUMENT_REFERENCE: "system/DocumentReference.c",
}


class OrderSite(SiteSettings):
    """The orders stage's own settings for an EHR site (registered in ``apps.py``; docs/extending.md "Add a site
    setting")."""

    writeback = models.CharField(
        verbose_name="EHR write-back",
        max_length=20,
        choices=Writeback.choices,
        default=Writeback.OFF,
        help_text="After sign-off, record in the EHR that the order was signed and sent (no commerce data).",
    )

    class Meta:
        verbose_name = "order settings"
        verbose_name_plural = "order settings"

    def backend_needs(self) -> dict[str, str]:
        """Return ``{"write-back (<kind>)": scope}`` when the site writes back, else ``{}`` (readiness)."""
        if self.writeback not in WRITEBACK_SCOPES:
            return {}
        return {f"write-back ({self.get_writeback_display()})": WRITEBACK_SCOPES[Writeback(self.writeback)]}


class HeldOrder(Order):
    """The admin's intake queue: ``Order`` rows in status ``held`` (signed in the EHR, incomplete), where staff fix
    contact, ship-to or the site's code mapping and release them (``orders.intake_admin``; ADR 0024)."""

    class Meta:
        proxy = True
        verbose_name = "held order"
        verbose_name_plural = "held orders"
