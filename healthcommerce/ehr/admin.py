from django.contrib import admin

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.ehr.models import EHRSite, Launch


@admin.register(EHRSite)
class EHRSiteAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Per-site configuration; secrets are write-only in the list. Looking and changing are audited."""

    list_display = ["name", "iss", "client_id", "auth_method", "is_active", "sms_enabled", "discovered_at"]
    list_filter = ["auth_method", "is_active", "sms_enabled"]
    search_fields = ["name", "iss", "client_id"]
    readonly_fields = ["discovery", "discovered_at", "created_at", "updated_at"]


@admin.register(Launch)
class LaunchAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Launches for troubleshooting; tokens, state and PKCE values are never shown. A launch names its user and
    patient context, so looking is audited as a PHI view."""

    audit_phi = True

    list_display = ["id", "site", "status", "error_code", "created_at", "prefill_seconds"]
    list_filter = ["status", "site"]
    _shown = (
        "site",
        "status",
        "error_code",
        "scope_granted",
        "fhir_user",
        "encounter_id",
        "prefill_outcomes",
        "prefill_seconds",
        "created_at",
        "expires_at",
    )
    fields = _shown
    readonly_fields = _shown

    def has_add_permission(self, request: object) -> bool:
        return False
