from django.contrib import admin

from healthcommerce.catalog.models import CodeMapping, OrderableRule, PayerRule, Product
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


@admin.register(PayerRule)
class PayerRuleAdmin(ReadOnlyHistoryAdmin):
    """Per-site (or global) rules for who pays: covered, copay, coinsurance or self-pay, by the order's payer.

    The first active rule wins, site rules before global ones, then by ascending priority (``PayerRule``).
    """

    list_display = [
        "priority",
        "site",
        "match",
        "pattern",
        "product_kind",
        "kind",
        "copay_cents",
        "coinsurance_percent",
        "is_active",
    ]
    list_display_links = ["priority", "match"]
    list_filter = ["kind", "match", "is_active", "site"]
    search_fields = ["pattern", "patient_message"]
    ordering = ["site", "priority"]
