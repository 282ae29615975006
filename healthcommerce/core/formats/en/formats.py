"""English (US): the month written out in full ("March 25, 2026"), not Django's AP style ("March 25" / "Sept. 5")."""

DATE_FORMAT = "F j, Y"
DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
