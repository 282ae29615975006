"""Logging filters (settings ``LOGGING``): keep patient link tokens out of every log line.

A purchase link is ``/p/<token>/`` with a 256-bit token that is a bearer credential until used. Django logs
request paths (``django.request``: "Not Found: /p/..."), so the filter rewrites every record's message before a
handler formats it. gunicorn's access log has its own redaction (``healthcommerce/gunicorn_conf.py``).
"""

import logging
import re

# A token is 32 to 128 URL-safe base64 characters (purchaselinks.services._TOKEN_RE) after ``/p/``.
LINK_TOKEN = re.compile(r"/p/[A-Za-z0-9_-]{32,128}")
REDACTED = "/p/<token>"


def redact_link_tokens(text: str) -> str:
    """Return ``text`` with each link token after ``/p/`` replaced by the literal ``<token>``."""
    return LINK_TOKEN.sub(REDACTED, text)


class LinkTokenFilter(logging.Filter):
    """Rewrite ``record.msg`` (with its args merged in) when it holds a link token; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message in place and return ``True``."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose args do not fit its format: leave it to the handler
            return True
        redacted = redact_link_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
