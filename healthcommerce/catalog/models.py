"""The catalog: products (DME devices, specimen-collection kits) with prices, per-site code mappings, payer records
(who pays, as the chart names them) and per-site rules for what the patient pays."""

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


def lines(text: str) -> list[str]:
    """Return the non-blank lines of ``text``, each stripped (an admin's one-per-line list)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def name_key(text: str) -> str:
    """Return ``text`` as names are compared: case-folded, runs of whitespace one space, trimmed
    (``"  Centers for  MEDICARE "`` -> ``"centers for medicare"``)."""
    return " ".join(text.split()).casefold()


class PlanType(models.TextChoices):
    """The kind of health plan a payer record is (what a ``PayerRule`` of match ``plan_type`` names)."""

    MEDICARE = "medicare", "Medicare (Original, Parts A/B)"
    MEDICARE_ADVANTAGE = "medicare_advantage", "Medicare Advantage (Part C)"
    MEDICAID = "medicaid", "Medicaid"
    COMMERCIAL = "commercial", "Commercial (employer or private plan)"
    TRICARE = "tricare", "TRICARE"
    OTHER = "other", "Other"


class Payer(BaseModel):
    """A health plan that pays for orders: who the chart's Coverage names, recognised by identifier or exact name.

    ``site`` null: every site; a site's own record wins over a global one (``catalog.selectors.payer_for_coverage``).
    ``name`` is what the clinician and the patient read; ``payer_id`` the clearinghouse's payer id for an
    eligibility check (X12 270 loop 2100A NM109; blank: none possible). ``identifiers`` (one per line) are keys the
    chart's Coverage carries: a ``payor`` reference (``Organization/org1234``), a payor identifier as
    ``system|value``, or a bare value (the payer id an HL7 v2 IN1-3 carries). ``aliases`` (one per line) are exact
    payer names as the chart writes them, compared without regard to case or spacing (``name_key``), never by
    "contains". ``supplier_in_network``: whether our supplier is in this payer's network (eligibility reads it).
    An inactive record never matches. FHIR R4 Coverage.payor; HL7 v2.5.1 IN1-3, IN1-4.
    """

    site = models.ForeignKey(
        EHRSite,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="payers",
        help_text="Empty: every site. A site's own record wins over a record for every site.",
    )
    name = models.CharField(
        max_length=200, help_text="The plan's name as the clinician and the patient read it, e.g. Medicare."
    )
    payer_id = models.CharField(
        verbose_name="payer ID",
        max_length=80,
        blank=True,
        help_text="The clearinghouse's payer id used to check eligibility, e.g. CMS. Empty: no check is possible.",
    )
    plan_type = models.CharField(
        max_length=20, choices=PlanType.choices, help_text="Payer rules can apply to every plan of a type."
    )
    identifiers = models.TextField(
        blank=True,
        help_text=(
            "How the chart names this payer, one per line: the Coverage payor reference (Organization/org1234), "
            "the payor's identifier as system|value, or a bare value such as the payer id in an HL7 IN1-3. "
            "These are exact; they win over a name."
        ),
    )
    aliases = models.TextField(
        blank=True,
        help_text=(
            "Other names the chart writes for this payer, one per line, exactly (case and extra spaces do not "
            "matter; a name that only contains an alias does not match)."
        ),
    )
    supplier_in_network = models.BooleanField(
        default=True, help_text="Whether our supplier is in this payer's network (the eligibility check uses it)."
    )
    is_active = models.BooleanField(default=True, help_text="An inactive payer is never matched nor offered.")
    history = HistoricalRecords()  # who changed it and when (docs/adr/0019)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="uniq_payer_per_site"),
            models.UniqueConstraint(fields=["name"], condition=models.Q(site__isnull=True), name="uniq_global_payer"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.site or 'all sites'})"

    def identifier_list(self) -> list[str]:
        """Return ``identifiers`` as a list, one key each (``["Organization/org1234", "CMS"]``)."""
        return lines(self.identifiers)

    def alias_list(self) -> list[str]:
        """Return ``aliases`` as a list, one name each."""
        return lines(self.aliases)

    def names(self) -> set[str]:
        """Return the ``name_key`` of the name and of each alias."""
        return {name_key(text) for text in [self.name, *self.alias_list()]}


class PayerRule(BaseModel):
    """Who pays for an order at a site, decided by the order's payer record (``Order.payer``, a ``Payer``).

    Rules are tried site rules first (``site`` null means every site), then by ascending ``priority``; the first
    active rule whose ``match`` and ``product_kind`` fit decides (``catalog.selectors.payer_rule_for``):

    - ``match``: ``no_payer`` (the order has no payer record: no coverage, or the clinician chose self-pay),
      ``any_payer`` (it has one), ``payer`` (it is ``payer``) or ``plan_type`` (its payer's ``plan_type`` is
      ``plan_type``). Free-text matching is gone (a typo made the patient self-pay): ``regex`` survives only on old
      rules the payer records migration could not convert; they are inactive, keep their ``pattern`` and are
      listed by ``manage.py check`` (``catalog.W001``) until an admin re-points them.
    - ``kind``: ``covered`` (the patient pays nothing), ``copay`` (the patient pays ``copay_cents`` per order,
      at most the price), ``coinsurance`` (the patient pays ``coinsurance_percent`` of the price, half-up to the
      cent) or ``self_pay`` (the patient pays the full price). Amounts are in the product's currency.

    ``patient_message``, when set, replaces the standard explanation the patient reads next to the amount. The
    seeded rules are examples (migrations 0006, 0011): check them against each health system's contracts.
    """

    class Match(models.TextChoices):
        NO_PAYER = "no_payer", "The order has no payer (no coverage, or self-pay)"
        ANY_PAYER = "any_payer", "The order has any payer"
        PAYER = "payer", "The order's payer is this payer"
        PLAN_TYPE = "plan_type", "The order's payer is of this plan type"
        REGEX = "regex", "Retired: a regular expression on the payer name (never matches; re-point it)"

    class Kind(models.TextChoices):
        COVERED = "covered", "Covered: the patient pays nothing"
        COPAY = "copay", "Copay: a fixed amount per order"
        COINSURANCE = "coinsurance", "Coinsurance: a percentage of the price"
        SELF_PAY = "self_pay", "Self-pay: the patient pays the full price"

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="payer_rules")
    priority = models.PositiveIntegerField(default=100, help_text="Lower is tried first (after site over global).")
    match = models.CharField(max_length=20, choices=Match.choices)
    payer = models.ForeignKey(
        Payer,
        null=True,
        blank=True,
        on_delete=models.RESTRICT,  # a payer a rule names is not deleted alone; with its site, both go
        related_name="rules",
        help_text="For 'this payer'. A site's rule may name its own payers or those of every site.",
    )
    plan_type = models.CharField(max_length=20, blank=True, choices=PlanType.choices, help_text="For 'this plan type'.")
    pattern = models.CharField(
        max_length=200,
        blank=True,
        editable=False,
        help_text="Kept from a retired text rule, for the record only: it matches nothing.",
    )
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
        return f"{self.match_text()} -> {self.kind} ({self.site or 'all sites'}, priority {self.priority})"

    def match_text(self) -> str:
        """Return what the rule matches in a few words: ``no payer``, ``any payer``, ``payer 'Medicare'``,
        ``plan type medicaid`` or ``retired regex 'part c'``."""
        if self.match == self.Match.PAYER:
            return f"payer {self.payer.name if self.payer is not None else '?'!r}"
        if self.match == self.Match.PLAN_TYPE:
            return f"plan type {self.plan_type}"
        if self.match == self.Match.REGEX:
            return f"retired regex {self.pattern!r}"
        return {"no_payer": "no payer", "any_payer": "any payer"}.get(self.match, self.match)

    def clean(self) -> None:
        """Refuse a rule that cannot work: a payer or plan type missing, a payer of another site, a retired match
        on an active rule, or the copay or percentage missing."""
        errors = self._match_errors() | self._amount_errors()
        if errors:
            raise ValidationError(errors)

    def _match_errors(self) -> dict[str, str]:
        """What is wrong with ``match`` and what it names (``{field: message}``)."""
        errors: dict[str, str] = {}
        payer = self.payer if self.payer_id else None
        if self.match == self.Match.PAYER and payer is None:
            errors["payer"] = "Pick the payer this rule is for."
        if self.match == self.Match.PAYER and payer is not None and payer.site_id not in (None, self.site_id):
            errors["payer"] = "This payer belongs to another site."
        if self.match == self.Match.PLAN_TYPE and not self.plan_type:
            errors["plan_type"] = "Pick the plan type this rule is for."
        if self.match == self.Match.REGEX and self.is_active:
            errors["match"] = "Text patterns are retired: match a payer or a plan type instead."
        return errors

    def _amount_errors(self) -> dict[str, str]:
        """What is missing for ``kind`` (``{field: message}``)."""
        errors: dict[str, str] = {}
        if self.kind == self.Kind.COPAY and self.copay_cents is None:
            errors["copay_cents"] = "A copay rule needs the amount."
        if self.kind == self.Kind.COINSURANCE and self.coinsurance_percent is None:
            errors["coinsurance_percent"] = "A coinsurance rule needs the percentage."
        return errors

    def matches(self, payer: "Payer | None") -> bool:
        """Whether this rule's ``match`` fits an order whose payer record is ``payer`` (None: no payer). A retired
        ``regex`` rule matches nothing."""
        if self.match == self.Match.NO_PAYER:
            return payer is None
        if payer is None:
            return False
        if self.match == self.Match.ANY_PAYER:
            return True
        if self.match == self.Match.PAYER:
            return self.payer_id == payer.pk
        if self.match == self.Match.PLAN_TYPE:
            return bool(self.plan_type) and self.plan_type == payer.plan_type
        return False
