"""Forms on the patient pages."""

from datetime import date

from django import forms
from django.utils import timezone


class BirthDateForm(forms.Form):
    """The patient's date of birth; ``<input type="date">`` sends ISO ``YYYY-MM-DD``."""

    birth_date = forms.DateField(
        label="Date of birth",
        input_formats=["%Y-%m-%d", "%m/%d/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday", "required": True}, format="%Y-%m-%d"),
        error_messages={"required": "Enter your date of birth.", "invalid": "Enter a date such as 1980-03-25."},
    )

    def clean_birth_date(self) -> date:
        """Reject dates in the future or before 1900."""
        value: date = self.cleaned_data["birth_date"]
        if value > timezone.localdate() or value.year < 1900:
            raise forms.ValidationError("Enter a real date of birth.")
        return value
