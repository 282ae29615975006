import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import admin_actor
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.models import Order, OrderEvent, OrderSite
from healthcommerce.orders.selectors import order_payment_label, orders_with_payment
from healthcommerce.orders.services import order_cancel

# Each ship-to column and the display method that shows it as one address line on the order page (not a dict).
ADDRESS_FIELDS = {"ship_to": "ship_to_address", "patient_ship_to": "patient_ship_to_address",
                  "ehr_ship_to": "ehr_ship_to_address"}  # fmt: skip
SHORT = 60  # characters of an event's actor or detail shown in the timeline; the whole text is its tooltip


def _clipped(text: str) -> str:
    """``text`` up to ``SHORT`` characters, the whole of it in a ``title`` tooltip (the timeline fits the page)."""
    if len(text) <= SHORT:
        return format_html('<span class="order-event-text">{}</span>', text)
    return format_html('<span class="order-event-text" title="{}">{}…</span>', text, text[: SHORT - 1])


def address_line(address: dict[str, Any] | None) -> str:
    """Return an ``Order.ship_to``-shaped dict as one line ("7525 Colshire Dr, McLean, VA 22102"), or "-"."""
    if not address:
        return "-"
    street = ", ".join(str(line) for line in address.get("line") or [] if line)
    place = " ".join(str(part) for part in (address.get("state"), address.get("postal_code")) if part)
    return ", ".join(part for part in (street, str(address.get("city") or ""), place) if part) or "-"


class OrderEventInline(admin.TabularInline):
    """The order's timeline, read-only; long actors and details are clipped with the whole text as a tooltip and
    every cell wraps, so the table fits the page at 1280 px (``static/admin/healthcommerce.css``)."""

    model = OrderEvent
    extra = 0
    can_delete = False
    _shown = ("created_at", "kind", "from_status", "to_status", "actor_short", "detail_short")
    fields = _shown
    readonly_fields = _shown

    @admin.display(description="Actor")
    def actor_short(self, obj: OrderEvent) -> str:
        return _clipped(obj.actor)

    @admin.display(description="Detail")
    def detail_short(self, obj: OrderEvent) -> str:
        return _clipped(json.dumps(obj.detail, sort_keys=True) if obj.detail else "")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderStatusFilter(admin.SimpleListFilter):
    """Status, signed and later by default: unsigned drafts (every launch makes one) are one click away."""

    title = "status"
    parameter_name = "status"
    ANY = "any"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status.value, status.label) for status in Order.Status] + [(self.ANY, "Any, drafts included")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        value = self.value()
        if value is None:
            return queryset.exclude(status=Order.Status.DRAFT)
        if value == self.ANY:
            return queryset
        return queryset.filter(status=value)

    def choices(self, changelist: Any) -> Any:
        """Django's entries, the first (no parameter) reading "Signed and later" rather than "All"."""
        for index, choice in enumerate(super().choices(changelist)):
            yield {**choice, "display": "Signed and later"} if index == 0 else choice


@admin.register(Order)
class OrderAdmin(AuditedAdminMixin, PhiMaskedAdmin, admin.ModelAdmin):
    """Orders with their timeline; read-only (status moves only through services). Viewing them is audited."""

    audit_phi = True

    @property
    def phi_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        """Hidden from support (core/roles.py): the PHI columns of the order's field table (``orders.fields``),
        and the address line that shows each ship-to column."""
        columns = order_fields.phi_columns()
        return (*columns, *(ADDRESS_FIELDS[name] for name in columns if name in ADDRESS_FIELDS))

    # What an admin scans for: which order, where it stands, whether the patient paid, where the parcel is.
    list_display = ["reference", "status", "payment", "shipment", "site_name", "signed"]
    list_filter = [OrderStatusFilter, "fulfillment_status", "site"]
    search_fields = ["reference"]
    exclude = tuple(ADDRESS_FIELDS)  # shown through their display methods, never as editable JSON
    inlines = [OrderEventInline]
    actions = ["cancel_orders"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        """Orders with what the payment column reads (``orders_with_payment``) and their site and product."""
        return orders_with_payment(super().get_queryset(request).select_related("site"))

    @admin.display(description="Shipment", ordering="fulfillment_status")
    def shipment(self, obj: Order) -> str:
        """Where the parcel is, as the commerce backend reports it (``fulfillment_status``)."""
        return obj.get_fulfillment_status_display() if obj.fulfillment_status else "-"

    @admin.display(description="Signed (UTC)", ordering="signed_at")
    def signed(self, obj: Order) -> str:
        """When it was signed, short (``2026-12-06 14:20``)."""
        return obj.signed_at.strftime("%Y-%m-%d %H:%M") if obj.signed_at else "-"

    @admin.display(description="Site", ordering="site__name")
    def site_name(self, obj: Order) -> str:
        """The site's name (its ``str`` adds the FHIR base URL, too wide for a column)."""
        return obj.site.name

    @admin.display(description="Payment")
    def payment(self, obj: Order) -> str:
        """What the patient did about paying (``orders.selectors.order_payment_label``)."""
        return order_payment_label(obj)

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
        """Every column, read-only; a ship-to is shown as an address line (``ADDRESS_FIELDS``)."""
        return [ADDRESS_FIELDS.get(f.name, f.name) for f in Order._meta.fields] + ["ehr_writeback"]

    @admin.display(description="ship to (as signed)")
    def ship_to_address(self, obj: Order) -> str:
        return address_line(obj.ship_to)

    @admin.display(description="ship to (corrected by the patient)")
    def patient_ship_to_address(self, obj: Order) -> str:
        return address_line(obj.patient_ship_to)

    @admin.display(description="ship to (re-read from the EHR)")
    def ehr_ship_to_address(self, obj: Order) -> str:
        return address_line(obj.ehr_ship_to)

    @admin.display(description="EHR write-back")
    def ehr_writeback(self, obj: Order) -> str:
        """The last write-back outcome from the timeline: the record created, or the failure's code (ADR 0022)."""
        event = obj.events.filter(kind__in=("writeback_done", "writeback_failed")).order_by("-created_at").first()
        if event is None:
            return "-" if OrderSite.of(obj.site).writeback == "off" else "pending"
        if event.kind == "writeback_done":
            return f"written: {event.detail.get('resource', '')}"
        return f"failed: {event.detail.get('code', '')}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# The intake queue (held orders) is its own admin, registered with the site's admin on import.
from healthcommerce.orders import intake_admin  # noqa: E402, F401
