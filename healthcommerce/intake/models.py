"""Intake: messages that arrive by themselves (HL7 v2 over MLLP, FHIR Subscription notifications), kept as they came,
encrypted, with the answer given; and each site's intake settings (ADR 0024)."""

from django.db import models

from healthcommerce.core.encryption import EncryptedCharField, EncryptedTextField
from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import EHRSite, SiteSettings


class IntakeMessage(BaseModel):
    """One inbound message, stored before it is answered (HL7 v2.5.1 2.9.2: the ACK follows the commit).

    ``sender`` with ``control_id`` identifies it: for HL7 v2, MSH-3 and MSH-4 (``"EPIC^SANDBOX-HOSP"``) and MSH-10;
    for a FHIR notification, the site's endpoint and the bundle's event number. A resend with the same pair gets the
    stored ``ack`` again and creates nothing. ``raw`` is the message as received, encrypted (ADR 0016), blanked with
    the order's PHI (``raw_purged_at``); nothing else of a clinical segment is kept.
    """

    class Kind(models.TextChoices):
        HL7V2 = "hl7v2", "HL7 v2"
        FHIR_NOTIFICATION = "fhir_notification", "FHIR notification"

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HL7V2)
    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.PROTECT, related_name="intake_messages")
    sender = models.CharField(max_length=200, help_text="MSH-3^MSH-4, or the notification endpoint's site.")
    control_id = models.CharField(verbose_name="control ID", max_length=200, help_text="MSH-10, or the event number.")
    message_type = models.CharField(max_length=40, blank=True, help_text="MSH-9, e.g. ORM^O01.")
    raw = EncryptedTextField(blank=True, help_text="The message as received (encrypted).")
    ack_code = models.CharField(verbose_name="ACK code", max_length=2, blank=True, help_text="MSA-1: AA, AE, AR, CA...")
    ack = models.TextField(verbose_name="ACK", blank=True, help_text="The answer sent (no PHI).")
    error_location = models.CharField(max_length=40, blank=True, help_text="The segment and field, e.g. PID-11.")
    error_text = models.CharField(max_length=500, blank=True)
    order_reference = models.CharField(max_length=20, blank=True, help_text="The order it created or changed.")
    raw_purged_at = models.DateTimeField(verbose_name="raw message purged at", null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "sender", "control_id"], name="intake_message_once"),
        ]

    def __str__(self) -> str:
        return f"{self.message_type or self.kind} {self.control_id} ({self.ack_code or 'unanswered'})"


class IntakeSite(SiteSettings):
    """The intake's own settings for an EHR site (registered in ``apps.py``; docs/interface-hl7.md): how its HL7 v2
    feed identifies itself, the client certificate it must present, its field quirks, where status messages go back
    and whether it may post FHIR notifications."""

    hl7_enabled = models.BooleanField(verbose_name="HL7 v2 intake enabled", default=False)
    hl7_sending_application = models.CharField(
        verbose_name="sending application (MSH-3)", max_length=180, blank=True, default="", help_text="e.g. EPIC"
    )
    hl7_sending_facility = models.CharField(
        verbose_name="sending facility (MSH-4)", max_length=180, blank=True, default="", help_text="e.g. SANDBOXHOSP"
    )
    hl7_client_certificate = models.CharField(
        verbose_name="allowed client certificate (SHA-256)",
        max_length=100,
        blank=True,
        default="",
        help_text="SHA-256 fingerprint (hex, colons optional) of the certificate the site's interface engine presents.",
    )
    hl7_email_repetition = models.PositiveSmallIntegerField(
        verbose_name="PID-13 email repetition",
        default=0,
        help_text="Which PID-13 repetition holds the email (1, 2 ...); 0: the first with type NET or an @.",
    )
    hl7_ignore_segments = models.CharField(
        verbose_name="segments to ignore",
        max_length=200,
        blank=True,
        default="",
        help_text="Comma-separated Z-segments this site sends that carry nothing for the order, e.g. ZPV,ZOR.",
    )
    hl7_status_endpoint = models.CharField(
        verbose_name="status back endpoint (MLLP)",
        max_length=300,
        blank=True,
        default="",
        help_text="host:port of the site's inbound MLLP interface for status messages; blank: none are sent.",
    )

    fhir_notify_enabled = models.BooleanField(
        verbose_name="FHIR notifications enabled",
        default=False,
        help_text="The site may POST Subscriptions Backport IG notifications (id-only) to /intake/fhir/<site>/notify;"
        " the app then reads the named request with backend services.",
    )
    fhir_notify_token = EncryptedCharField(
        verbose_name="FHIR notification bearer token",
        max_length=200,
        blank=True,
        default="",
        help_text="The bearer token the site's notifications carry (encrypted; a secret of the site record).",
    )

    class Meta:
        verbose_name = "intake settings"
        verbose_name_plural = "intake settings"

    def ignored_segments(self) -> set[str]:
        """Return the segment ids of ``hl7_ignore_segments``, upper case (``{"ZPV", "ZOR"}``)."""
        return {part.strip().upper() for part in self.hl7_ignore_segments.split(",") if part.strip()}
