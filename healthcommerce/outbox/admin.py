"""Admin for the outbox: read-only rows, "retry now" for dead or idle pending ones."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin, admin_actor
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_retry


@admin.register(OutboxMessage)
class OutboxMessageAdmin(AuditedAdminMixin, ServiceOnlyAdmin):
    """Outbox rows are written by services only; admins look, and may retry dead or pending rows."""

    list_display = ["topic", "subscriber", "subject", "status", "attempts", "available_at", "last_error"]
    list_filter = ["status", "topic", "subscriber"]
    search_fields = ["subject", "idempotency_key"]
    ordering = ["-created_at"]
    actions = ["retry_now"]

    @admin.action(description="Retry now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        """Reset the selected dead or idle rows (``outbox_retry``)."""
        rows = outbox_retry(message_ids=list(queryset.values_list("pk", flat=True)), actor=admin_actor(request))
        self.message_user(request, f"{len(rows)} message(s) will be retried now; rows being worked on were skipped.")
