"""The admin's intake queue: orders signed in the EHR that arrived incomplete (``held``; ADR 0024).

Staff fix what the order lacks: the patient's contact (email, phone) and ship-to on the order's page, the site's
code mapping through the prefilled link to the catalog's "Add code mapping" page; then "Release" (a button on the
page, an action on the list) signs it as the EHR signed it and it proceeds to fulfillment through the outbox. The
item, quantity and signer are read-only: they are the EHR's. Every change goes through ``orders.intake``'s services,
each audited; viewing the queue is audited (``AuditedAdminMixin``). Staff who do not see PHI (``support``:
``core/roles.py``) see the PHI masked and no contact or ship-to fields, and may still release or cancel.
"""

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import admin_actor
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.admin import ADDRESS_FIELDS, address_line
from healthcommerce.orders.intake import order_intake_release, order_intake_update
from healthcommerce.orders.models import HeldOrder, Order
from healthcommerce.orders.services import order_cancel

SHIP_TO_PARTS = ("line1", "line2", "city", "state", "postal_code")
# What the page shows read-only: the item, quantity and signer (the EHR's), and where the order came from.
SHOWN = (
    "reference",
    "site",
    "source",
    "placer_order_number",
    "reasons",
    "request_display",
    "request_system",
    "request_code",
    "product",
    "code_mapping",
    "quantity",
    "practitioner_name",
    "practitioner_npi",
    "signed_by",
    "signed_at",
    "patient_name",
    "patient_birth_date",
    "ship_to_address",
)


def _ship_to_parts() -> dict[str, forms.Field]:
    """The ship-to's form fields as the order form has them (``orders.fields``), none required here."""
    row = order_fields.field_row("ship_to")
    parts = row.edit.parts() if row.edit is not None and row.edit.parts is not None else {}
    for field in parts.values():
        field.required = False
    return parts


class _FixForm(forms.ModelForm):
    """The contact and ship-to of a held order, the ship-to as its parts (``orders.fields`` ship-to form fields)."""

    class Meta:
        model = HeldOrder
        fields = ["contact_email", "contact_phone"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        row = order_fields.field_row("ship_to")
        if row.edit is not None and row.edit.initial is not None:
            self.initial.update(row.edit.initial(self.instance))

    def changes(self) -> dict[str, Any]:
        """Return ``{column: value}`` of the contact and ship-to as entered (the ship-to as ``Order.ship_to``)."""
        data = self.cleaned_data
        lines = [data.get(name) or "" for name in ("line1", "line2")]
        ship_to = {
            "line": [line for line in lines if line],
            **{name: data.get(name) or "" for name in ("city", "state", "postal_code")},
            "country": self.instance.ship_to.get("country") or "US",
        }
        changes: dict[str, Any] = {name: data[name] for name in ("contact_email", "contact_phone")}
        if self.instance.ship_to or any(data.get(name) for name in SHIP_TO_PARTS):
            changes["ship_to"] = ship_to
        return changes


IntakeFixForm = type("IntakeFixForm", (_FixForm,), _ship_to_parts())


@admin.register(HeldOrder)
class IntakeQueueAdmin(AuditedAdminMixin, PhiMaskedAdmin, admin.ModelAdmin):
    """Held orders, oldest first: fix contact or ship-to, add the site's code mapping, then Release (or Cancel)."""

    audit_phi = True
    form = IntakeFixForm
    list_display = ["reference", "site_name", "source", "placer_order_number", "reasons", "created_at"]
    list_filter = ["site", "source"]
    search_fields = ["reference", "placer_order_number"]
    ordering = ["created_at"]
    actions = ["release_orders", "cancel_orders"]

    @property
    def phi_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        """The PHI columns of the order's field table and the address line that shows the ship-to."""
        columns = order_fields.phi_columns()
        return (*columns, *(ADDRESS_FIELDS[name] for name in columns if name in ADDRESS_FIELDS))

    def get_queryset(self, request: HttpRequest) -> QuerySet[HeldOrder]:
        return super().get_queryset(request).filter(status=Order.Status.HELD).select_related("site", "product")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """The read-only facts, then (for staff who see PHI) the contact and ship-to to fix."""
        if self._masks(request):
            return self._mask_all(list(SHOWN))
        return [*SHOWN, "contact_email", "contact_phone", *SHIP_TO_PARTS]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self._mask_all(list(SHOWN)) if self._masks(request) else list(SHOWN)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        """The fix form; for staff who do not see PHI, a form with no field at all (they release or cancel)."""
        if self._masks(request):
            kwargs.update(form=forms.ModelForm, fields=[])
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="Site", ordering="site__name")
    def site_name(self, obj: Order) -> str:
        return obj.site.name

    @admin.display(description="What it lacks")
    def reasons(self, obj: Order) -> str:
        """The hold reasons, one per line."""
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((r,) for r in obj.hold_reasons)))

    @admin.display(description="ship to")
    def ship_to_address(self, obj: Order) -> str:
        return address_line(obj.ship_to)

    @admin.display(description="Code mapping")
    def code_mapping(self, obj: Order) -> str:
        """A link to add the site's mapping of the requested code (prefilled), when no product fills it."""
        if obj.product_id is not None or not obj.request_code:
            return "-"
        query = urlencode({"site": obj.site_id, "system": obj.request_system, "code": obj.request_code})
        url = f"{reverse('admin:catalog_codemapping_add')}?{query}"
        return format_html('<a href="{}">Add the site\'s code mapping for {}</a>', url, obj.request_code)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Save the fixes through ``order_intake_update`` (audited; only contact and ship-to)."""
        if isinstance(form, _FixForm) and not self._masks(request):
            try:
                order_intake_update(order=obj, actor=admin_actor(request), changes=form.changes())
            except HealthcommerceError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        """After saving, "Release" (``_release`` in the form) releases the order."""
        if "_release" in request.POST:
            self._release(request, obj)
            return HttpResponseRedirect(reverse("admin:orders_heldorder_changelist"))
        return super().response_change(request, obj)

    def _release(self, request: HttpRequest, order: Order) -> bool:
        try:
            order_intake_release(order=order, actor=admin_actor(request))
        except HealthcommerceError as exc:
            self.message_user(request, f"{order.reference}: {exc.message}", level=messages.ERROR)
            return False
        self.message_user(request, f"{order.reference} released: it goes to fulfillment.")
        return True

    @admin.action(description="Release (complete: sign as signed in the EHR)", permissions=["change"])
    def release_orders(self, request: HttpRequest, queryset: QuerySet[HeldOrder]) -> None:
        for order in queryset:
            self._release(request, order)

    @admin.action(description="Cancel", permissions=["change"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[HeldOrder]) -> None:
        """Cancel each selected order through ``order_cancel`` (audited)."""
        for order in queryset:
            try:
                order_cancel(order=order, actor=admin_actor(request), reason="intake queue")
            except HealthcommerceError as exc:
                self.message_user(request, f"{order.reference}: {exc.message}", level=messages.ERROR)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
