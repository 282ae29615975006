from django.contrib import admin

from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.ehr.models import EHRSite, Launch


@admin.register(EHRSite)
class EHRSiteAdmin(PhiMaskedAdmin, admin.ModelAdmin):
    """Per-site configuration; secrets are write-only in the list."""

    # no PHI here, but the site's secrets are hidden from support the same way (core/roles.py)
    phi_fields = ("client_secret", "private_key_pem")

    list_display = ["name", "iss", "client_id", "auth_method", "is_active", "sms_enabled", "discovered_at"]
    list_filter = ["auth_method", "is_active", "sms_enabled"]
    search_fields = ["name", "iss", "client_id"]
    readonly_fields = ["discovery", "discovered_at", "created_at", "updated_at"]


@admin.register(Launch)
class LaunchAdmin(PhiMaskedAdmin, admin.ModelAdmin):
    """Launches for troubleshooting; tokens, state and PKCE values are never shown."""

    phi_fields = ("encounter_id",)  # hidden from support (core/roles.py)

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
