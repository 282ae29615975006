"""Forms on the patient pages; labels and messages are translated (``gettext_lazy``) in the page's language."""

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from localflavor.us.forms import USStateField, USStateSelect, USZipCodeField

from healthcommerce.core.validators import validate_birth_date
from healthcommerce.orders.models import DeliveryPreference


class PatientForm(forms.Form):
    """A form on the patient pages that marks its fields for assistive technology (WCAG 2.2 3.3.1, 3.3.2, 4.1.2):
    required fields get ``aria-required``; after a failed submit each invalid field gets ``aria-invalid`` and
    ``aria-describedby="<id>-error"`` (the error text's id in the templates), and the first one ``autofocus``,
    so the browser puts the cursor there. ``first_error`` is that field's name (``""`` without errors); the
    templates show ``purchaselinks/_error_summary.html`` above the form, linking to each invalid field."""

    first_error = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if field.required and not isinstance(field.widget, forms.RadioSelect):
                field.widget.attrs["aria-required"] = "true"

    def full_clean(self) -> None:
        super().full_clean()
        for name, field in self.fields.items():
            if name not in (self._errors or {}):  # type: ignore[attr-defined]
                continue
            field.widget.attrs.update({"aria-invalid": "true", "aria-describedby": f"{self[name].auto_id}-error"})
            if not self.first_error:
                self.first_error = name
                field.widget.attrs["autofocus"] = True


class BirthDateForm(PatientForm):
    """The patient's date of birth; ``<input type="date">`` sends ISO ``YYYY-MM-DD``."""

    birth_date = forms.DateField(
        label=_("Date of birth"),
        input_formats=["%Y-%m-%d", "%m/%d/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday", "required": True}, format="%Y-%m-%d"),
        error_messages={"required": _("Enter your date of birth."), "invalid": _("Enter a date such as 1980-03-25.")},
        validators=[validate_birth_date],
    )


class AddressForm(PatientForm):
    """A corrected US ship-to address; state and ZIP code validated by django-localflavor (USPS codes, ZIP or
    ZIP+4). ``cleaned_address()`` returns the ``Order.ship_to`` shape
    (``{"line": [...], "city", "state", "postal_code", "country": "US"}``)."""

    line1 = forms.CharField(
        label=_("Street address"), max_length=100, widget=forms.TextInput(attrs={"autocomplete": "address-line1"})
    )
    line2 = forms.CharField(
        label=_("Apartment, suite (optional)"),
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "address-line2"}),
    )
    city = forms.CharField(
        label=_("City"), max_length=60, widget=forms.TextInput(attrs={"autocomplete": "address-level2"})
    )
    state = USStateField(label=_("State"), widget=USStateSelect(attrs={"autocomplete": "address-level1"}))
    postal_code = USZipCodeField(
        label=_("ZIP code"),
        widget=forms.TextInput(attrs={"autocomplete": "postal-code", "inputmode": "numeric"}),
        # localflavor's own message ("XXXXX or XXXXX-XXXX") reads as code in either language.
        error_messages={"invalid": _("Enter a ZIP code of 5 digits, such as 04101, or 9 digits, such as 04101-1234.")},
    )

    @classmethod
    def initial_for(cls, address: dict[str, Any]) -> dict[str, str]:
        """The form's initial values from an ``Order.ship_to``-shaped dict."""
        lines = [str(line) for line in address.get("line") or []]
        return {
            "line1": lines[0] if lines else "",
            "line2": ", ".join(lines[1:]),
            "city": str(address.get("city") or ""),
            "state": str(address.get("state") or "").upper(),
            "postal_code": str(address.get("postal_code") or ""),
        }

    def cleaned_address(self) -> dict[str, Any]:
        """The valid address in the ``Order.ship_to`` shape (call after ``is_valid()``)."""
        data = self.cleaned_data
        lines = [data["line1"].strip(), data["line2"].strip()]
        return {
            "line": [line for line in lines if line],
            "city": data["city"].strip(),
            "state": data["state"],
            "postal_code": data["postal_code"].strip(),
            "country": "US",
        }


class ReviewForm(PatientForm):
    """The review page's choices: a delivery preference and consent to the terms (required)."""

    delivery_preference = forms.ChoiceField(
        label=_("Delivery"),
        choices=DeliveryPreference.choices,
        initial=DeliveryPreference.STANDARD,
        widget=forms.RadioSelect,
    )
    accept_terms = forms.BooleanField(
        label=_("I agree to the terms of sale"),
        error_messages={"required": _("Please agree to the terms of sale to continue.")},
    )
