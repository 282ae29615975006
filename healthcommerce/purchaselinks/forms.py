"""Forms on the patient pages; labels and messages are translated (``gettext_lazy``) in the page's language."""

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from localflavor.us.forms import USStateField, USStateSelect, USZipCodeField

from healthcommerce.core.validators import validate_birth_date
from healthcommerce.orders.models import DeliveryPreference


class BirthDateForm(forms.Form):
    """The patient's date of birth; ``<input type="date">`` sends ISO ``YYYY-MM-DD``."""

    birth_date = forms.DateField(
        label=_("Date of birth"),
        input_formats=["%Y-%m-%d", "%m/%d/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday", "required": True}, format="%Y-%m-%d"),
        error_messages={"required": _("Enter your date of birth."), "invalid": _("Enter a date such as 1980-03-25.")},
        validators=[validate_birth_date],
    )


class AddressForm(forms.Form):
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
        label=_("ZIP code"), widget=forms.TextInput(attrs={"autocomplete": "postal-code", "inputmode": "numeric"})
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


class ReviewForm(forms.Form):
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
