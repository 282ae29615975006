"""Admin for the local backend's orders ("Mark shipped/delivered"); the outbox has its own (``outbox.admin``)."""

import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin, admin_actor
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.fulfillment.models import LocalCommerceOrder
from healthcommerce.fulfillment.services import local_order_mark


def _actor(request: HttpRequest) -> str:
    return admin_actor(request)


@admin.register(LocalCommerceOrder)
class LocalCommerceOrderAdmin(AuditedAdminMixin, PhiMaskedAdmin, ServiceOnlyAdmin):
    """The local backend's orders: the minimized payload is read-only; ship and deliver with the actions. Its
    payload holds a name and address, so looking is audited as a PHI view."""

    audit_phi = True

    # name and address (payload), corrected address (confirmation): hidden from support (core/roles.py)
    phi_fields = ("payload_pretty", "payload", "confirmation")

    list_display = [
        "order_reference",
        "status",
        "tracking_number",
        "submit_count",
        "created_at",
        "shipped_at",
        "delivered_at",
    ]
    list_filter = ["status"]
    search_fields = ["order_reference", "tracking_number"]
    actions = ["mark_shipped", "mark_delivered"]
    exclude = ["payload"]
    readonly_fields = [
        "order_reference",
        "idempotency_key",
        "submit_count",
        "status",
        "tracking_number",
        "payload_pretty",
        "confirmed_at",
        "shipped_at",
        "delivered_at",
        "created_at",
    ]

    @admin.display(description="Payload")
    def payload_pretty(self, obj: LocalCommerceOrder) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def _mark(
        self, request: HttpRequest, queryset: QuerySet[LocalCommerceOrder], status: str, tracking: dict[str, str]
    ) -> None:
        done = 0
        for row in queryset:
            try:
                local_order_mark(
                    local_order_id=row.pk,
                    status=status,
                    actor=_actor(request),
                    tracking_number=tracking.get(str(row.pk), ""),
                )
                done += 1
            except HealthcommerceError as exc:
                self.message_user(request, f"{row.order_reference}: {exc.message}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{done} order(s) marked {status}.")

    @admin.action(description="Mark shipped", permissions=["change"])
    def mark_shipped(self, request: HttpRequest, queryset: QuerySet[LocalCommerceOrder]) -> HttpResponse | None:
        """Ask for tracking numbers on an intermediate page, then mark the selected orders shipped."""
        if request.POST.get("confirm") == "yes":
            tracking = {str(row.pk): request.POST.get(f"tracking_{row.pk}", "") for row in queryset}
            self._mark(request, queryset, LocalCommerceOrder.Status.SHIPPED, tracking)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Mark shipped",
            "rows": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "fulfillment/admin/mark_shipped.html", context)

    @admin.action(description="Mark delivered", permissions=["change"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[LocalCommerceOrder]) -> None:
        self._mark(request, queryset, LocalCommerceOrder.Status.DELIVERED, {})
