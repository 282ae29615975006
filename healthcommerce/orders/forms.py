"""The clinician's order form: pre-filled Standard Written Order elements, ship-to, contact, payer."""

from typing import Any

from django import forms

from healthcommerce.catalog.models import Product
from healthcommerce.core.validators import validate_birth_date
from healthcommerce.orders.models import Order


class OrderForm(forms.Form):
    """Edits to a draft; ``changes()`` returns them keyed like ``orders.services.EDITABLE``.

    Required fields render with ``required`` (the form has ``novalidate``: the server's messages are the ones the
    clinician reads) and a field with an error with ``aria-invalid`` and ``aria-describedby`` naming its error
    (Django's ``BoundField``). ``error_summary`` lists every error with the id of the field to fix.
    """

    product = forms.ModelChoiceField(
        queryset=Product.objects.filter(is_active=True), required=True, empty_label="— pick a product —"
    )
    quantity = forms.IntegerField(min_value=1, max_value=99)
    patient_name = forms.CharField(max_length=300, label="Patient name")
    patient_birth_date = forms.DateField(
        label="Date of birth", widget=forms.DateInput(attrs={"type": "date"}), validators=[validate_birth_date]
    )
    line1 = forms.CharField(max_length=200, label="Address line 1")
    line2 = forms.CharField(max_length=200, label="Address line 2", required=False)
    city = forms.CharField(max_length=100)
    state = forms.CharField(max_length=50)
    postal_code = forms.CharField(max_length=20, label="ZIP / postal code")
    contact_email = forms.EmailField(label="Patient email (the purchase link goes here)")
    contact_phone = forms.CharField(max_length=40, required=False, label="Patient phone")
    payer_name = forms.CharField(max_length=300, required=False, label="Payer")
    payer_member_id = forms.CharField(max_length=100, required=False, label="Member ID")
    # Shown only when the chosen product does not fulfil the EHR request (orders.services.order_product_mismatch).
    confirm_product = forms.BooleanField(required=False, label="I confirm this item fulfils the EHR request")

    def error_summary(self) -> list[tuple[str, str]]:
        """Return ``[(field id or "", message)]`` for every error, the form's own first, then by field order."""
        summary = [("", str(error)) for error in self.non_field_errors()]
        for field in self:
            for error in field.errors:  # the confirmation's error says it all; other fields are named first
                message = str(error) if field.name == "confirm_product" else f"{field.label}: {error}"
                summary.append((field.id_for_label, message))
        return summary

    def chosen(self, name: str, default: Any) -> Any:
        """Return the submitted, valid value of ``name``, else ``default`` (the saved draft's)."""
        cleaned = getattr(self, "cleaned_data", None) or {}
        return cleaned.get(name, default)

    @classmethod
    def initial_for(cls, order: Order) -> dict[str, Any]:
        """Return the form's initial values from a draft order."""
        lines = list(order.ship_to.get("line") or [])
        return {
            "product": order.product_id,
            "quantity": order.quantity,
            "patient_name": order.patient_name,
            "patient_birth_date": order.patient_birth_date,
            "line1": lines[0] if lines else "",
            "line2": " ".join(lines[1:]),
            "city": order.ship_to.get("city", ""),
            "state": order.ship_to.get("state", ""),
            "postal_code": order.ship_to.get("postal_code", ""),
            "contact_email": order.contact_email,
            "contact_phone": order.contact_phone,
            "payer_name": order.payer_name,
            "payer_member_id": order.payer_member_id,
        }

    def changes(self, order: Order) -> dict[str, Any]:
        """Return the cleaned edits as order fields (``ship_to`` rebuilt as a dict)."""
        data = self.cleaned_data
        lines = [line for line in (data["line1"], data["line2"]) if line]
        ship_to = {
            "line": lines,
            "city": data["city"],
            "state": data["state"],
            "postal_code": data["postal_code"],
            "country": order.ship_to.get("country") or "US",
        }
        keep = ("product", "quantity", "patient_name", "patient_birth_date", "contact_email", "contact_phone")
        return {name: data[name] for name in keep} | {
            "ship_to": ship_to,
            "payer_name": data["payer_name"],
            "payer_member_id": data["payer_member_id"],
        }
