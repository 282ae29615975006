"""Validators shared by the clinician's order form and the patient's pages."""

from datetime import date

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def validate_birth_date(value: date) -> None:
    """Raise ``ValidationError`` (code ``birth_date_implausible``) for a date of birth after today or before
    1900-01-01. One rule for both sides: a link is verified against the date the clinician signed, so a date the
    patient's form would refuse must never be signed (a link that can never be verified)."""
    if value > timezone.localdate() or value < EARLIEST_BIRTH_DATE:
        raise ValidationError(_("Enter a real date of birth."), code="birth_date_implausible")
