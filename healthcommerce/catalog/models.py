"""The catalog: products (DME devices, specimen-collection kits) and per-site code mappings."""

from django.db import models

from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.models import EHRSite

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"


class Product(BaseModel):
    """A sellable item. ``hcpcs_code`` is the billing code printed on the Standard Written Order."""

    class Kind(models.TextChoices):
        DEVICE = "device", "Durable medical equipment"
        KIT = "kit", "Specimen-collection kit"

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    hcpcs_code = models.CharField(max_length=10, blank=True)
    unit_price_cents = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class CodeMapping(BaseModel):
    """Map a coded request (system + code) to a product; ``site`` null means every site.

    A site-specific row wins over a global one, so a health system's local codes are configuration.
    """

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="code_mappings")
    system = models.CharField(max_length=200)
    code = models.CharField(max_length=64)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="mappings")
    default_quantity = models.PositiveIntegerField(default=1)

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
