"""Spanish as written in the US (CLDR ``es-US``): "25 de marzo de 2026", numbers ``1,234.56`` as on US bills."""

DATE_FORMAT = r"j \d\e F \d\e Y"
DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
