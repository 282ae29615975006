"""Admin for the intake: the messages received, read-only, without their raw content (issue 20; the raw copy is
for audit and is never shown here, to any role)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin
from healthcommerce.intake.models import IntakeMessage


@admin.register(IntakeMessage)
class IntakeMessageAdmin(AuditedAdminMixin, ServiceOnlyAdmin):
    """Inbound messages as stored: who sent which control ID, what type, the answer given, the order made. Rows are
    written by the intake only; ``raw`` (the encrypted message) is left out of every page."""

    list_display = [
        "created_at",
        "kind",
        "message_type",
        "sender",
        "control_id",
        "ack_code",
        "error_location",
        "order_reference",
        "site",
    ]
    list_filter = ["ack_code", "kind", "site"]
    search_fields = ["control_id", "order_reference"]
    exclude = ["raw"]
    ordering = ["-created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[IntakeMessage]:
        """The messages with their site, never loading ``raw`` (decrypting it would serve no page)."""
        return super().get_queryset(request).select_related("site").defer("raw")
