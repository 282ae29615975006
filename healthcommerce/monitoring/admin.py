"""Alerts in the admin: read-only, with a link to the dashboard (their state changes only through beat)."""

from django.contrib import admin
from django.http import HttpRequest

from healthcommerce.monitoring.models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Open, pending and resolved alerts; nothing is editable (``services.alerts_evaluate`` owns the state)."""

    list_display = ("opened_at", "status", "rule", "site", "text", "resolved_at")
    list_filter = ("status", "rule", "site")
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
