"""The audit trail in the admin (read-only, exportable as FHIR), and ``AuditedAdminMixin`` for other admins."""

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from healthcommerce.audit.fhir import audit_bundle
from healthcommerce.audit.models import AuditEvent
from healthcommerce.audit.receivers import log_entry_audit
from healthcommerce.audit.services import audit_record
from healthcommerce.core.roles import mask_reference, sees_phi


class AuditedAdminMixin:
    """Audit who looks at an admin's rows (HIPAA 164.312(b)): a list view writes one row (target the model label),
    a change view one row (target ``<Model>/<id>``), as ``audit_action``: ``admin.phi.view`` for models holding PHI
    (set ``audit_phi = True``), else ``admin.view``. Changes are audited from Django's ``LogEntry``
    (``audit.receivers``); this mixin adds the deletions of several objects at once, which Django bulk-creates.

    Put it first among the bases: ``class OrderAdmin(AuditedAdminMixin, admin.ModelAdmin)``.
    """

    audit_phi = False
    model: Any

    @property
    def audit_action(self) -> str:
        return "admin.phi.view" if self.audit_phi else "admin.view"

    def _audit_view(self, request: HttpRequest, target: str, **detail: Any) -> None:
        audit_record(
            actor=f"admin:{request.user.get_username()}",
            action=self.audit_action,
            target=target,
            detail={"model": self.model._meta.label_lower, **detail},
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Audit the list (page number only; search terms can hold PHI and are not kept), then show it."""
        response: HttpResponse = super().changelist_view(request, extra_context)  # type: ignore[misc]
        if response.status_code == 200:
            self._audit_view(request, self.model.__name__, view="list", page=str(request.GET.get("p", "0"))[:8])
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Audit opening one row (only when the page was served), then show it."""
        response: HttpResponse = super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        if response.status_code == 200:
            self._audit_view(request, f"{self.model.__name__}/{object_id}", view="change")
        return response

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        """Django writes several deletions with ``bulk_create`` (no ``post_save``): audit each of them here."""
        entries = super().log_deletions(request, queryset)  # type: ignore[misc]
        if isinstance(entries, list) and len(entries) > 1:
            for entry in entries:
                log_entry_audit(entry)
        return entries


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Read-only view of the audit trail; "Export as FHIR AuditEvent Bundle" downloads the selected rows.

    A row's ``target`` can be a patient's FHIR id (``Patient/pat014``: a launch, a CDS Hooks call, an export),
    which is PHI. For staff who do not see PHI (``core/roles.py`` ``sees_phi``: ``support``) it shows as
    ``Patient/(hidden)`` in the list and the row, search never reaches ``target``, and the FHIR export (which
    carries every reference) is not offered."""

    # What scanning the trail needs; sequence, site, address and hashes are on the row's page (fits 1280 px).
    list_display = ["when", "actor", "action", "target", "outcome"]
    list_filter = ["action", "outcome"]
    search_fields = ["actor", "target", "action", "launch_id"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["export_fhir"]

    @admin.display(description="When (UTC)", ordering="created_at")
    def when(self, obj: AuditEvent) -> str:
        """The row's time, short (``2026-12-06 14:20:05``)."""
        return obj.created_at.strftime("%Y-%m-%d %H:%M:%S")

    def _sees_phi(self, request: HttpRequest) -> bool:
        if not hasattr(request, "_hc_sees_phi"):
            request._hc_sees_phi = sees_phi(request.user)  # type: ignore[attr-defined]
        return bool(request._hc_sees_phi)  # type: ignore[attr-defined]

    @admin.display(description="Target", ordering="target")
    def masked_target(self, obj: AuditEvent) -> str:
        """The target with a patient's FHIR id hidden."""
        return mask_reference(obj.target)

    def _swap_target(self, request: HttpRequest, names: list[Any]) -> list[Any]:
        return names if self._sees_phi(request) else ["masked_target" if n == "target" else n for n in names]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """The columns; ``target`` masked for staff who do not see PHI."""
        return self._swap_target(request, list(super().get_list_display(request)))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """The row's fields; ``target`` masked for staff who do not see PHI."""
        return self._swap_target(request, list(super().get_readonly_fields(request, obj)))

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[Any] | None:
        """For staff who do not see PHI, the raw ``target`` never reaches the form (only its masked twin shows)."""
        excluded = super().get_exclude(request, obj)
        if self._sees_phi(request):
            return None if excluded is None else list(excluded)
        return [*(excluded or ()), "target"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """The row's fields in model order, each once; ``target`` masked for staff who do not see PHI."""
        return list(dict.fromkeys(self._swap_target(request, list(super().get_fields(request, obj)))))

    def get_search_fields(self, request: HttpRequest) -> list[Any]:
        """Search actor, action and launch; ``target`` (which can hold a patient's id) only for staff who see PHI."""
        names = list(super().get_search_fields(request))
        return names if self._sees_phi(request) else [n for n in names if n != "target"]

    def has_phi_permission(self, request: HttpRequest) -> bool:
        """Whether the user may take PHI out of the admin (the FHIR export): may view the trail and sees PHI
        (``core.roles.sees_phi``). Django offers an action when any of its permissions holds, so it has this one."""
        return self.has_view_permission(request) and self._sees_phi(request)

    @admin.action(description="Export as FHIR AuditEvent Bundle (JSON)", permissions=["phi"])
    def export_fhir(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> HttpResponse:
        """The selected rows (oldest first) as the same Bundle ``manage.py audit_export`` writes; audited."""
        rows = list(queryset.order_by("created_at", "id"))
        response = HttpResponse(json.dumps(audit_bundle(rows), indent=2), content_type="application/fhir+json")
        response["Content-Disposition"] = 'attachment; filename="audit-events.json"'
        audit_record(actor=f"admin:{request.user.get_username()}", action="audit.export", detail={"rows": len(rows)})
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
