"""The languages the app speaks to patients (``settings.LANGUAGES``) and how a language tag maps onto them."""

from django.conf import settings
from django.utils.translation import get_supported_language_variant

# BCP 47 (RFC 5646) language tags: letters and digits in subtags of 1 to 8, joined by "-".
_MAX_TAG = 35


def language_supported(tag: object) -> str:
    """Return the code in ``settings.LANGUAGES`` that serves the BCP 47 ``tag`` (``"es-MX"`` -> ``"es"``,
    ``"en-US"`` -> ``"en"``, case-insensitive, ``_`` read as ``-``), or ``""`` when none does (``"fr"``,
    ``"spa"``, not a string, empty). Django's own matching (``get_supported_language_variant``, not strict: the
    tag, then its primary language)."""
    if not isinstance(tag, str) or not tag.strip() or len(tag.strip()) > _MAX_TAG:
        return ""
    code = tag.strip().replace("_", "-").lower()
    try:
        found = get_supported_language_variant(code)
    except LookupError:
        return ""
    return found if found in dict(settings.LANGUAGES) else ""
