"""``{% load links %}``: ``{{ url|https_url }}`` is the URL when it is https (``core.links.https_url``), else ``""``.

Use it for every link whose target another system supplied (a tracking URL), in the patient's and the
clinician's pages alike: ``{% with href=order.tracking_url|https_url %}{% if href %}<a href="{{ href }}">...``.
"""

from django import template

from healthcommerce.core.links import https_url as _https_url

register = template.Library()


@register.filter(name="https_url")
def https_url(value: object) -> str:
    """Return ``value`` when it is an https URL with a host, else ``""`` (never a ``javascript:`` or http link)."""
    return _https_url(value)
