"""The clinician's order form: pre-filled Standard Written Order elements, ship-to, contact, payer."""

from typing import Any, cast

from django import forms

from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.models import Order


class OrderForm(forms.Form):
    """Edits to a draft; ``changes()`` returns them keyed like ``orders.fields.editable()``.

    Its fields come from the order's field table (``orders.fields.FIELDS``: each editable row's form fields, in
    table order), read when the form is made, then ``confirm_product``; ``order`` gives a choice field its options
    for that order (the payer picker: the site's payers, ``orders.fields`` ``_payer_choices``). ``cards`` groups
    them for the template.
    Required fields render with ``required`` (the form has ``novalidate``: the server's messages are the ones the
    clinician reads) and a field with an error with ``aria-invalid`` and ``aria-describedby`` naming its error
    (Django's ``BoundField``). ``error_summary`` lists every error with the id of the field to fix.
    """

    # Shown only when the chosen product does not fulfil the EHR request (orders.services.order_product_mismatch).
    confirm_product = forms.BooleanField(required=False, label="I confirm this item fulfils the EHR request")

    def __init__(self, *args: Any, order: Order | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rows = [field for row in order_fields.FIELDS for field in row.form_fields().items()]
        self.fields = {**dict(rows), "confirm_product": self.fields["confirm_product"]}
        for row in order_fields.FIELDS:
            if order is not None and row.edit is not None and row.edit.choices is not None:
                cast(forms.ChoiceField, self.fields[row.name]).choices = row.edit.choices(order)
        product = self.fields.get("product")
        if order is not None and isinstance(product, order_fields.ProductChoiceField):
            product.known = order.product

    @property
    def cards(self) -> dict[str, list[forms.BoundField]]:
        """Return ``{card: [bound fields]}`` in table order (cards ``item``, ``patient``, ``ship_to``, ``contact``)."""
        cards: dict[str, list[forms.BoundField]] = {}
        for row in order_fields.FIELDS:
            if row.edit is not None:
                cards.setdefault(row.edit.card, []).extend(self[name] for name in row.form_fields())
        return cards

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
        """Return the form's initial values from a draft order (each editable row's ``form_initial``)."""
        initial: dict[str, Any] = {}
        for row in order_fields.FIELDS:
            if row.edit is not None:
                initial |= row.form_initial(order)
        return initial

    def chosen_column(self, name: str, order: Order) -> Any:
        """Return column ``name`` as the submitted, valid form would set it (``form_value``), else the draft's."""
        cleaned = getattr(self, "cleaned_data", None)
        if not cleaned or not self.is_valid():
            return getattr(order, name)
        return order_fields.field_row(name).form_value(cleaned, order)

    def changes(self, order: Order) -> dict[str, Any]:
        """Return the cleaned edits as order columns (``ship_to`` rebuilt as a dict), one per editable row."""
        return {
            row.name: row.form_value(self.cleaned_data, order) for row in order_fields.FIELDS if row.edit is not None
        }
