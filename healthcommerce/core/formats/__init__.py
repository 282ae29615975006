"""Date and number formats per language (``FORMAT_MODULE_PATH``), over Django's own locale formats.

The patients are in US health systems, so both languages use US number conventions (CLDR ``en-US`` and
``es-US``: ``1,234.56``); dates are written out in each language ("March 25, 2026", "25 de marzo de 2026").
"""
