"""Admin of the sandbox EHR: everything read-only except the injected faults."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from healthcommerce.sandbox.models import (
    FhirResource,
    SandboxAuthorizationCode,
    SandboxClient,
    SandboxFault,
    SandboxLaunch,
    SandboxSigningKey,
    SandboxToken,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Show rows without add, change or delete (the sandbox is changed by its commands and endpoints)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        hidden = set(self.exclude or ())
        return [f.name for f in self.model._meta.fields if f.name not in hidden]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FhirResource)
class FhirResourceAdmin(ReadOnlyAdmin):
    """Loaded FHIR resources."""

    list_display = ["resource_type", "fhir_id", "patient_id", "status", "updated_at"]
    list_filter = ["resource_type", "status"]
    search_fields = ["fhir_id", "patient_id"]


@admin.register(SandboxClient)
class SandboxClientAdmin(ReadOnlyAdmin):
    """Registered SMART apps (change them with ``manage.py sandbox_client add``)."""

    list_display = ["client_id", "token_endpoint_auth_method", "updated_at"]
    exclude = ["client_secret_hash"]


@admin.register(SandboxLaunch)
class SandboxLaunchAdmin(ReadOnlyAdmin):
    """EHR launches."""

    list_display = ["created_at", "patient_id", "practitioner_id", "encounter_id", "request_ref", "used_at"]
    exclude = ["value"]


@admin.register(SandboxAuthorizationCode)
class SandboxAuthorizationCodeAdmin(ReadOnlyAdmin):
    """Outstanding authorization codes (the code value itself is not shown)."""

    list_display = ["created_at", "client", "scope", "expires_at"]
    exclude = ["code", "code_challenge"]


@admin.register(SandboxToken)
class SandboxTokenAdmin(ReadOnlyAdmin):
    """Issued access tokens (stored as hashes)."""

    list_display = ["created_at", "client", "scope", "expires_at"]
    exclude = ["access_token_hash"]


@admin.register(SandboxSigningKey)
class SandboxSigningKeyAdmin(ReadOnlyAdmin):
    """The id_token signing key (the private key is never shown)."""

    list_display = ["kid", "created_at"]
    exclude = ["private_jwk"]


@admin.register(SandboxFault)
class SandboxFaultAdmin(admin.ModelAdmin):
    """Injected FHIR API faults: add, edit, switch off or delete them here."""

    list_display = ["resource_type", "kind", "active", "remaining", "created_at"]
    list_editable = ["active", "remaining"]
    list_filter = ["active", "kind"]
