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
