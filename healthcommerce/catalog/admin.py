from django.contrib import admin

from healthcommerce.catalog.models import CodeMapping, OrderableRule, Payer, PayerRule, Product
from healthcommerce.ehr.admin import ReadOnlyHistoryAdmin


class CodeMappingInline(admin.TabularInline):
    model = CodeMapping
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "kind", "hcpcs_code", "unit_price_cents", "currency", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["sku", "name", "name_es", "hcpcs_code"]
    inlines = [CodeMappingInline]
    fieldsets = [
        (None, {"fields": ["sku", "kind", "hcpcs_code", "unit_price_cents", "currency", "image", "is_active"]}),
        ("What the patient reads", {"fields": ["name", "name_es", "description", "description_es"]}),
    ]


@admin.register(CodeMapping)
class CodeMappingAdmin(ReadOnlyHistoryAdmin):
    list_display = ["system", "code", "product", "site", "default_quantity"]
    list_filter = ["system", "site"]
    search_fields = ["code", "product__sku"]


@admin.register(OrderableRule)
class OrderableRuleAdmin(ReadOnlyHistoryAdmin):
    """Per-site (or global) rules for requests with no catalog mapping: orderable, or listed apart with a reason."""

    list_display = ["resource_type", "system", "code_prefix", "orderable", "reason", "site"]
    list_filter = ["orderable", "resource_type", "site"]
    search_fields = ["system", "code_prefix", "reason"]


@admin.register(Payer)
class PayerAdmin(ReadOnlyHistoryAdmin):
    """Payer records: who pays, as the chart names them. An order's payer is the record its Coverage's payor
    reference or identifier lists, else the one whose name or an alias equals the chart's payer name exactly; a
    site's own record wins over one for every site (``catalog.selectors.payer_for_coverage``)."""

    list_display = ["name", "site", "plan_type", "payer_id", "supplier_in_network", "is_active"]
    list_filter = ["plan_type", "is_active", "supplier_in_network", "site"]
    search_fields = ["name", "payer_id", "identifiers", "aliases"]
    fieldsets = [
        (None, {"fields": ["site", "name", "plan_type", "is_active"]}),
        ("How the chart names it", {"fields": ["identifiers", "aliases"]}),
        ("Eligibility", {"fields": ["payer_id", "supplier_in_network"]}),
    ]


@admin.register(PayerRule)
class PayerRuleAdmin(ReadOnlyHistoryAdmin):
    """Per-site (or global) rules for who pays: covered, copay, coinsurance or self-pay, by the order's payer record
    or its plan type.

    The first active rule wins, site rules before global ones, then by ascending priority (``PayerRule``). A retired
    text rule (match "regex") shows its old pattern: re-point it to a payer or plan type.
    """

    list_display = [
        "priority",
        "site",
        "match",
        "payer",
        "plan_type",
        "product_kind",
        "kind",
        "copay_cents",
        "coinsurance_percent",
        "is_active",
    ]
    list_display_links = ["priority", "match"]
    list_filter = ["kind", "match", "plan_type", "is_active", "site"]
    search_fields = ["payer__name", "pattern", "patient_message"]
    readonly_fields = ["pattern"]
    autocomplete_fields = ["payer"]
    ordering = ["site", "priority"]
