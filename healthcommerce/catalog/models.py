"""The catalog: products (DME devices, specimen-collection kits) with prices, per-site code mappings, and per-site
rules for who pays."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from simple_history.models import HistoricalRecords

from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import EHRSite

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"


class Product(BaseModel):
    """A sellable item. ``hcpcs_code`` is the billing code printed on the Standard Written Order.

    ``name_es``/``description_es`` are what a Spanish-speaking patient reads (``name_for``); empty: the English.
    ``unit_price_cents`` is in the minor unit of ``currency`` (ISO 4217 alphabetic code, upper case; every
    currency this app takes has two decimals). ``image`` is a path under ``static/`` for the patient's review page.
    """

    class Kind(models.TextChoices):
        DEVICE = "device", "Durable medical equipment"
        KIT = "kit", "Specimen-collection kit"

    sku = models.CharField(verbose_name="SKU", max_length=64, unique=True)
    name = models.CharField(max_length=200)
    name_es = models.CharField(
        "name (Spanish)", max_length=200, blank=True, help_text="Empty: patients see the English."
    )
    description = models.TextField(blank=True)
    description_es = models.TextField("description (Spanish)", blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    hcpcs_code = models.CharField(verbose_name="HCPCS code", max_length=10, blank=True)
    unit_price_cents = models.PositiveIntegerField(verbose_name="unit price (cents)", default=0)
    currency = models.CharField(
        max_length=3,
        default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "An ISO 4217 code in capitals, such as USD.")],
        help_text="ISO 4217, e.g. USD; the price is in its minor unit (cents).",
    )
    image = models.CharField(
        max_length=200, blank=True, help_text="A picture for the patient: a path under static/, e.g. img/cpap.svg."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    def name_for(self, language: str) -> str:
        """Return the name a patient reading ``language`` (``"es"``, ``"es-US"``, ``"en"``) sees: the Spanish
        name for Spanish when there is one, else the English ``name``."""
        return (self.name_es if language.lower().startswith("es") else "") or self.name

    def description_for(self, language: str) -> str:
        """Return the description in ``language`` as ``name_for`` does (Spanish when given, else English)."""
        return (self.description_es if language.lower().startswith("es") else "") or self.description


class CodeMapping(BaseModel):
    """Map a coded request (system + code) to a product; ``site`` null means every site.

    A site-specific row wins over a global one, so a health system's local codes are configuration.
    """

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="code_mappings")
    system = models.CharField(max_length=200)
    code = models.CharField(max_length=64)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="mappings")
    default_quantity = models.PositiveIntegerField(default=1)
    history = HistoricalRecords()  # who changed it and when (docs/adr/0019)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "system", "code"], name="uniq_mapping_per_site"),
            models.UniqueConstraint(
                fields=["system", "code"], condition=models.Q(site__isnull=True), name="uniq_global_mapping"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.system}|{self.code} -> {self.product.sku}"


class OrderableRule(BaseModel):
    """Whether requests with no catalog mapping are orderable here, by resource type, code system and code prefix.

    A request whose code maps to a product (``CodeMapping``) is always orderable. For the rest the most
    specific matching rule decides: a site's rule over a global one (``site`` null), a longer ``code_prefix``
    over a shorter one, a rule naming the resource type over one that does not. Not orderable means the
    request is listed apart as "not ordered through this app" with ``reason`` (for example home-health
    visits, HCPCS G0180, or ambulance transport, HCPCS A0426); orderable means the clinician picks a product.
    """

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="orderable_rules")
    resource_type = models.CharField(
        max_length=20,
        blank=True,
        choices=[("", "Any"), ("DeviceRequest", "DeviceRequest"), ("ServiceRequest", "ServiceRequest")],
    )
    system = models.CharField(max_length=200, blank=True, help_text="Code system URI; blank matches any system.")
    code_prefix = models.CharField(max_length=64, blank=True, help_text="Blank matches every code of the system.")
    orderable = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True, help_text="Shown to the clinician, e.g. 'a transport'.")
    history = HistoricalRecords()  # who changed it and when (docs/adr/0019)

    class Meta:
        ordering = ["system", "code_prefix"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "resource_type", "system", "code_prefix"], name="uniq_orderable_rule_per_site"
            ),
            models.UniqueConstraint(
                fields=["resource_type", "system", "code_prefix"],
                condition=models.Q(site__isnull=True),
                name="uniq_global_orderable_rule",
            ),
        ]

    def __str__(self) -> str:
        verdict = "orderable" if self.orderable else "not orderable"
        return f"{self.resource_type or 'Any'} {self.system or '*'}|{self.code_prefix}* {verdict}"


class PayerRule(BaseModel):
    """Who pays for an order at a site, decided by the order's payer (``Order.payer_name``).

    Rules are tried site rules first (``site`` null means every site), then by ascending ``priority``; the first
    active rule whose ``match`` and ``product_kind`` fit decides (``catalog.selectors.payer_rule_for``):

    - ``match``: ``no_payer`` (the order names no payer), ``any_payer`` (it names one), ``contains`` (the payer
      name contains ``pattern``, case-insensitive) or ``regex`` (``pattern`` is a Python regular expression
      searched case-insensitively in the payer name).
    - ``kind``: ``covered`` (the patient pays nothing), ``copay`` (the patient pays ``copay_cents`` per order,
      at most the price), ``coinsurance`` (the patient pays ``coinsurance_percent`` of the price, half-up to the
      cent) or ``self_pay`` (the patient pays the full price). Amounts are in the product's currency.

    ``patient_message``, when set, replaces the standard explanation the patient reads next to the amount. The
    seeded rules are examples (migration 0006): check them against each health system's contracts.
    """

    class Match(models.TextChoices):
        NO_PAYER = "no_payer", "The order names no payer"
        ANY_PAYER = "any_payer", "The order names any payer"
        CONTAINS = "contains", "The payer name contains the pattern (any case)"
        REGEX = "regex", "The payer name matches the regular expression (any case)"

    class Kind(models.TextChoices):
        COVERED = "covered", "Covered: the patient pays nothing"
        COPAY = "copay", "Copay: a fixed amount per order"
        COINSURANCE = "coinsurance", "Coinsurance: a percentage of the price"
        SELF_PAY = "self_pay", "Self-pay: the patient pays the full price"

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="payer_rules")
    priority = models.PositiveIntegerField(default=100, help_text="Lower is tried first (after site over global).")
    match = models.CharField(max_length=20, choices=Match.choices)
    pattern = models.CharField(max_length=200, blank=True, help_text="For 'contains' and 'regex'.")
    product_kind = models.CharField(
        max_length=10, blank=True, choices=[("", "Any"), *Product.Kind.choices], help_text="Blank: every product."
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    copay_cents = models.PositiveIntegerField(
        verbose_name="copay (cents)", null=True, blank=True, help_text="For 'copay': cents per order."
    )
    coinsurance_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="For 'coinsurance': the patient's share of the price, 0-100.",
    )
    patient_message = models.CharField(
        max_length=300, blank=True, help_text="Shown to the patient instead of the standard explanation."
    )
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()  # who changed it and when (docs/adr/0019)

    class Meta:
        ordering = ["site", "priority", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="copay") | models.Q(copay_cents__isnull=False), name="payer_rule_copay_amount"
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="coinsurance")
                | models.Q(coinsurance_percent__gte=0, coinsurance_percent__lte=100),
                name="payer_rule_coinsurance_percent",
            ),
        ]

    def __str__(self) -> str:
        what = {"no_payer": "no payer", "any_payer": "any payer"}.get(self.match, f"{self.match} {self.pattern!r}")
        return f"{what} -> {self.kind} ({self.site or 'all sites'}, priority {self.priority})"

    def clean(self) -> None:
        """Refuse a rule that cannot work: a pattern missing or invalid, or the copay or percentage missing."""
        errors: dict[str, str] = {}
        if self.match in (self.Match.CONTAINS, self.Match.REGEX) and not self.pattern:
            errors["pattern"] = "This match needs a pattern."
        if self.match == self.Match.REGEX and self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                errors["pattern"] = f"Not a valid regular expression: {exc}."
        if self.kind == self.Kind.COPAY and self.copay_cents is None:
            errors["copay_cents"] = "A copay rule needs the amount."
        if self.kind == self.Kind.COINSURANCE and self.coinsurance_percent is None:
            errors["coinsurance_percent"] = "A coinsurance rule needs the percentage."
        if errors:
            raise ValidationError(errors)

    def matches(self, payer_name: str) -> bool:
        """Whether this rule's ``match`` and ``pattern`` fit ``payer_name`` (blank or whitespace: no payer).

        An invalid regular expression matches nothing (``clean`` refuses one in the admin).
        """
        payer = payer_name.strip()
        if self.match == self.Match.NO_PAYER:
            return not payer
        if not payer:
            return False
        if self.match == self.Match.ANY_PAYER:
            return True
        if self.match == self.Match.CONTAINS:
            return bool(self.pattern) and self.pattern.casefold() in payer.casefold()
        try:
            return bool(self.pattern) and re.search(self.pattern, payer, re.IGNORECASE) is not None
        except re.error:
            return False
