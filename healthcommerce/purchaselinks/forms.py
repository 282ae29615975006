"""Forms on the patient pages."""

from django import forms

from healthcommerce.core.validators import validate_birth_date


class BirthDateForm(forms.Form):
    """The patient's date of birth; ``<input type="date">`` sends ISO ``YYYY-MM-DD``."""

    birth_date = forms.DateField(
        label="Date of birth",
        input_formats=["%Y-%m-%d", "%m/%d/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday", "required": True}, format="%Y-%m-%d"),
        error_messages={"required": "Enter your date of birth.", "invalid": "Enter a date such as 1980-03-25."},
        validators=[validate_birth_date],
    )
