"""Coverage: each site's eligibility settings (which clearinghouse, with which ids) and every eligibility check made,
with what was sent and what came back, encrypted (ADR 0026)."""

from django.core.validators import RegexValidator
from django.db import models

from healthcommerce.core.encryption import EncryptedCharField, EncryptedJSONField, EncryptedTextField
from healthcommerce.core.models import BaseModel
from healthcommerce.coverage import types
from healthcommerce.ehr.models import EHRSite, SiteSettings


class CoverageSite(SiteSettings):
    """The eligibility settings of one EHR site (registered in ``apps.py``; docs/interface-eligibility.md): whether
    coverage is checked with the payer (X12 270/271 005010X279A1) after sign-off and at checkout, through which
    clearinghouse, and the ids that clearinghouse knows us by. ``clearinghouse_api_key`` is a site-record secret."""

    LIST_COLUMNS = ()  # the site list stays narrow: eligibility on/off is one of its filters

    class Kind(models.TextChoices):
        X12_HTTPS = "x12_https", "X12 over HTTPS"
        STEDI_JSON = "stedi_json", "Stedi JSON"

    eligibility_enabled = models.BooleanField(
        verbose_name="eligibility checks enabled",
        default=False,
        help_text="Check the patient's coverage with the payer after sign-off and again at checkout.",
    )
    clearinghouse = models.CharField(max_length=20, choices=Kind.choices, default=Kind.X12_HTTPS)
    clearinghouse_url = models.CharField(
        verbose_name="clearinghouse URL",
        max_length=300,
        blank=True,
        default="",
        help_text="The HTTPS endpoint that takes the 270 (or the JSON request) and answers with the 271.",
    )
    clearinghouse_api_key = EncryptedCharField(
        verbose_name="clearinghouse API key",
        max_length=300,
        blank=True,
        default="",
        help_text="Sent as the Authorization header (encrypted; a secret of the site record).",
    )
    submitter_id = models.CharField(
        verbose_name="submitter ID (ISA06)",
        max_length=15,
        blank=True,
        default="",
        help_text="Our interchange sender id at the clearinghouse, e.g. HEALTHCOMMERCE.",
    )
    receiver_id = models.CharField(
        verbose_name="receiver ID (ISA08)",
        max_length=15,
        blank=True,
        default="",
        help_text="The clearinghouse's interchange receiver id.",
    )
    provider_npi = models.CharField(
        verbose_name="provider NPI (2100B)",
        max_length=10,
        blank=True,
        default="",
        help_text="The supplier's ten-digit NPI the payer knows; blank: the signing practitioner's NPI.",
    )
    provider_name = models.CharField(
        verbose_name="provider name (2100B)", max_length=60, blank=True, default="", help_text="The supplier's name."
    )
    usage = models.CharField(
        verbose_name="usage (ISA15)",
        max_length=1,
        default="T",
        validators=[RegexValidator(r"^[TP]$", "T (test) or P (production).")],
        help_text="T: test interchanges; P: production.",
    )
    answer_max_age_hours = models.PositiveIntegerField(
        verbose_name="answer kept for (hours)",
        default=24,
        help_text="At checkout an answer older than this is asked again.",
    )
    timeout_seconds = models.PositiveSmallIntegerField(
        verbose_name="timeout (seconds)", default=10, help_text="How long one request to the clearinghouse may take."
    )

    class Meta:
        verbose_name = "eligibility settings"
        verbose_name_plural = "eligibility settings"

    def needs(self) -> list[str]:
        """Return what is missing for checks to run (``["clearinghouse URL", ...]``); [] when ready or off."""
        if not self.eligibility_enabled:
            return []
        wanted = {
            "clearinghouse URL": self.clearinghouse_url,
            "clearinghouse API key": self.clearinghouse_api_key,
            "submitter ID (ISA06)": self.submitter_id or self.clearinghouse == self.Kind.STEDI_JSON,
            "receiver ID (ISA08)": self.receiver_id or self.clearinghouse == self.Kind.STEDI_JSON,
            "provider name (2100B)": self.provider_name,
        }
        return [label for label, value in wanted.items() if not value]


class EligibilityCheck(BaseModel):
    """One eligibility check: the 270 (or JSON) sent for an order and the payer's answer, both encrypted.

    ``subject`` is the order it was made for (``Order/<id>``, no PHI); ``member_digest`` an HMAC of the site, payer
    id and member id, so a later order for the same member finds the last answer without storing the id in clear.
    ``outcome`` is one of ``coverage.types.OUTCOMES`` for an answer, or ``failed`` when none came (``error`` says
    why: ``timeout``, ``429``, ``5xx`` ...). ``answer`` is ``EligibilityAnswer.to_json()``. ``trigger`` says when
    it ran: after sign-off, at checkout, or from the admin.
    """

    class Trigger(models.TextChoices):
        SIGNED = "signed", "After sign-off"
        CHECKOUT = "checkout", "At checkout"
        ADMIN = "admin", "From the admin"

    FAILED = "failed"
    OUTCOME_CHOICES = [(value, value.replace("_", " ")) for value in (*types.OUTCOMES, FAILED)]

    site = models.ForeignKey(EHRSite, on_delete=models.PROTECT, related_name="eligibility_checks")
    subject = models.CharField(max_length=80, db_index=True, help_text="The order: Order/<id>.")
    member_digest = models.CharField(max_length=64, db_index=True)
    payer = models.ForeignKey(
        "catalog.Payer", null=True, blank=True, on_delete=models.SET_NULL, related_name="eligibility_checks"
    )
    clearinghouse_payer_id = models.CharField(
        verbose_name="payer ID", max_length=80, help_text="The clearinghouse payer ID asked (2100A NM109)."
    )
    clearinghouse = models.CharField(max_length=120, help_text="Kind and host, e.g. x12_https:ch.example.com.")
    control_number = models.PositiveIntegerField(help_text="ISA13 / ST02 / the JSON controlNumber.")
    service_type = models.CharField(max_length=4, help_text="EQ01: 12 DME, 5 diagnostic lab.")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    outcome = models.CharField(max_length=20, choices=OUTCOME_CHOICES)
    reason_code = models.CharField(max_length=4, blank=True, help_text="AAA03, when rejected.")
    error = models.CharField(max_length=20, blank=True, help_text="Why no answer came: timeout, 429, 5xx ...")
    answer = EncryptedJSONField(null=True, blank=True)
    request = EncryptedTextField(blank=True, help_text="Exactly what was sent (encrypted).")
    response = EncryptedTextField(blank=True, help_text="Exactly what came back (encrypted).")
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["site", "member_digest", "created_at"], name="eligibility_member_latest")]

    def __str__(self) -> str:
        return f"{self.clearinghouse_payer_id} {self.outcome} ({self.get_trigger_display()})"

    def parsed(self) -> types.EligibilityAnswer | None:
        """Return the stored answer (None when none came or it cannot be read back)."""
        if not self.answer:
            return None
        try:
            return types.answer_from_json(self.answer)
        except (KeyError, TypeError, ValueError):
            return None


class ControlNumber(models.Model):
    """One row per interchange sent: its id is the next ISA13 control number (modulo 999,999,999), unique per
    sender for far longer than any clearinghouse remembers (X12 005010 ISA13)."""

    id = models.BigAutoField(primary_key=True)

    def __str__(self) -> str:
        return f"control number {self.pk}"
