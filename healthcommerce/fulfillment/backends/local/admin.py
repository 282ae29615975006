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
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.backends.local.services import local_order_mark
from healthcommerce.fulfillment.carriers import CARRIER_CHOICES, OTHER


def _actor(request: HttpRequest) -> str:
    return admin_actor(request)


def _tracking_posted(request: HttpRequest, pk: str) -> dict[str, str]:
    """The "Mark shipped" page's fields for one order: ``carrier`` (a code, or the typed name for "Other"),
    ``tracking_number`` and ``tracking_url``."""
    carrier = request.POST.get(f"carrier_{pk}", "")
    if carrier == OTHER:
        carrier = request.POST.get(f"carrier_other_{pk}", "")
    return {
        "carrier": carrier.strip()[:100],
        "tracking_number": request.POST.get(f"tracking_{pk}", ""),
        "tracking_url": request.POST.get(f"tracking_url_{pk}", ""),
    }


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
        "carrier",
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
        "carrier",
        "tracking_number",
        "tracking_url",
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
        self,
        request: HttpRequest,
        queryset: QuerySet[LocalCommerceOrder],
        status: str,
        tracking: dict[str, dict[str, str]],
    ) -> None:
        done = 0
        for row in queryset:
            try:
                local_order_mark(
                    local_order_id=row.pk, status=status, actor=_actor(request), **tracking.get(str(row.pk), {})
                )
                done += 1
            except HealthcommerceError as exc:
                self.message_user(request, f"{row.order_reference}: {exc.message}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{done} order(s) marked {status}.")

    @admin.action(description="Mark shipped", permissions=["change"])
    def mark_shipped(self, request: HttpRequest, queryset: QuerySet[LocalCommerceOrder]) -> HttpResponse | None:
        """Ask for each order's carrier (``carriers.CARRIER_CHOICES``; "Other" takes a typed name), tracking number
        and, optionally, an https tracking URL on an intermediate page, then mark the selected orders shipped. Left
        empty, the URL is the carrier's public tracking page; one that is not https refuses that order."""
        if request.POST.get("confirm") == "yes":
            tracking = {str(row.pk): _tracking_posted(request, str(row.pk)) for row in queryset}
            self._mark(request, queryset, LocalCommerceOrder.Status.SHIPPED, tracking)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Mark shipped",
            "rows": queryset,
            "carriers": CARRIER_CHOICES,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "fulfillment/admin/mark_shipped.html", context)

    @admin.action(description="Mark delivered", permissions=["change"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[LocalCommerceOrder]) -> None:
        self._mark(request, queryset, LocalCommerceOrder.Status.DELIVERED, {})
