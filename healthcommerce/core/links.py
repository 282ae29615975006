"""Links a page shows that came from elsewhere (a commerce backend's tracking URL): https only.

A URL another system sends is stored and shown as a link; ``javascript:``, ``data:`` or plain http must never
become one (OWASP ASVS 5.0 V1.2.2: URL output encoding is not enough for the scheme). Check it where it enters
(``fulfillment.status``) and again where it is shown (the ``https_url`` template filter, ``core.templatetags.links``).
"""

from urllib.parse import urlsplit

MAX_URL = 500  # Order.tracking_url


def https_url(value: object) -> str:
    """Return ``value`` stripped when it is an absolute ``https://`` URL with a host, no credentials, no
    whitespace or control characters inside and at most ``MAX_URL`` characters; otherwise ``""``."""
    if not isinstance(value, str):
        return ""
    url = value.strip()
    if not url or len(url) > MAX_URL or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return ""
    if parts.scheme.lower() != "https" or not host or "@" in parts.netloc:
        return ""
    return url
