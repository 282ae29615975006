"""Admin for the outbox (read-only, "retry now") and the local backend's orders ("Mark shipped/delivered")."""

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.fulfillment.models import LocalCommerceOrder, OutboxMessage
from healthcommerce.fulfillment.services import local_order_mark, outbox_retry


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class ServiceOnlyAdmin(admin.ModelAdmin):
    """An admin whose rows change only through services (its actions): every field is read-only, and
    there is no add, save or delete."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        declared = list(super().get_readonly_fields(request, obj))
        return declared + [
            f.name for f in self.model._meta.fields if f.name not in declared and f.name not in (self.exclude or ())
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Never save from the form (there is nothing editable); state changes go through the actions."""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        hidden = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **hidden})


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ServiceOnlyAdmin):
    """Outbox rows are written by services only; admins look, and may retry dead or pending rows."""

    list_display = ["topic", "order_reference", "status", "attempts", "available_at", "last_error"]
    list_filter = ["status", "topic"]
    search_fields = ["order__reference", "idempotency_key"]
    ordering = ["-created_at"]
    actions = ["retry_now"]
    list_select_related = ["order"]

    @admin.display(description="Order", ordering="order__reference")
    def order_reference(self, obj: OutboxMessage) -> str:
        return obj.order.reference

    @admin.action(description="Retry now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        count = outbox_retry(message_ids=list(queryset.values_list("pk", flat=True)), actor=_actor(request))
        self.message_user(request, f"{count} message(s) will be retried now; rows being worked on were skipped.")


@admin.register(LocalCommerceOrder)
class LocalCommerceOrderAdmin(ServiceOnlyAdmin):
    """The local backend's orders: the minimized payload is read-only; ship and deliver with the actions."""

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

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """Show the order; its payload holds a name and address, so the view is audited (docs/reliability.md)."""
        audit_record(
            actor=_actor(request), action="admin.view", target=f"LocalCommerceOrder/{object_id}", where="admin"
        )
        return super().change_view(request, object_id, form_url, extra_context)

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
