from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import admin_actor
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.orders.services import order_cancel


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    _shown = ("created_at", "kind", "from_status", "to_status", "actor", "detail")
    fields = _shown
    readonly_fields = _shown

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(AuditedAdminMixin, PhiMaskedAdmin, admin.ModelAdmin):
    """Orders with their timeline; read-only (status moves only through services). Viewing them is audited."""

    audit_phi = True

    # hidden from support (core/roles.py)
    phi_fields = (
        "patient_fhir_id",
        "patient_name",
        "patient_birth_date",
        "ship_to",
        "patient_ship_to",
        "ehr_ship_to",
        "contact_email",
        "contact_phone",
        "payer_member_id",
    )

    list_display = ["reference", "status", "site", "product", "quantity", "signed_at", "created_at"]
    list_filter = ["status", "site"]
    search_fields = ["reference"]
    inlines = [OrderEventInline]
    actions = ["cancel_orders"]

    @admin.action(description="Cancel (not yet shipped)", permissions=["change"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        """Cancel each selected order through ``order_cancel``; the backend hears it through the outbox."""
        done = 0
        for order in queryset:
            try:
                order_cancel(order=order, actor=admin_actor(request), reason="admin")
                done += 1
            except HealthcommerceError as exc:
                self.message_user(request, f"{order.reference}: {exc.message}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{done} order(s) cancelled; the commerce platform is told through the outbox.")

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        return [f.name for f in Order._meta.fields] + ["ehr_writeback"]

    @admin.display(description="EHR write-back")
    def ehr_writeback(self, obj: Order) -> str:
        """The last write-back outcome from the timeline: the record created, or the failure's code (ADR 0022)."""
        event = obj.events.filter(kind__in=("writeback_done", "writeback_failed")).order_by("-created_at").first()
        if event is None:
            return "-" if obj.site.writeback == "off" else "pending"
        if event.kind == "writeback_done":
            return f"written: {event.detail.get('resource', '')}"
        return f"failed: {event.detail.get('code', '')}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
