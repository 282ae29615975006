from django.contrib import admin

from healthcommerce.catalog.models import CodeMapping, OrderableRule, Product


class CodeMappingInline(admin.TabularInline):
    model = CodeMapping
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "kind", "hcpcs_code", "unit_price_cents", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["sku", "name", "hcpcs_code"]
    inlines = [CodeMappingInline]


@admin.register(CodeMapping)
class CodeMappingAdmin(admin.ModelAdmin):
    list_display = ["system", "code", "product", "site", "default_quantity"]
    list_filter = ["system", "site"]
    search_fields = ["code", "product__sku"]


@admin.register(OrderableRule)
class OrderableRuleAdmin(admin.ModelAdmin):
    """Per-site (or global) rules for requests with no catalog mapping: orderable, or listed apart with a reason."""

    list_display = ["resource_type", "system", "code_prefix", "orderable", "reason", "site"]
    list_filter = ["orderable", "resource_type", "site"]
    search_fields = ["system", "code_prefix", "reason"]
