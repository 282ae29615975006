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


# Secrets and PHI shapes a log line must never carry (docs/reliability.md "No PHI in logs"). Names, addresses and
# member ids have no shape to find: the code never logs them, and tests/test_log_scan.py proves it on a whole order.
_SCRUBS = [
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer <redacted>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "<jwt>"),
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|client_secret|client_assertion|code_verifier|password|"
            r"secret)(\"?\s*[=:]\s*\"?)([^&\s\"',;]+)"
        ),
        r"\1\2<redacted>",
    ),
    # As URL parameters only: ``code=`` elsewhere is our error code.
    (re.compile(r"(?i)([?&](?:code|state|launch|token|nonce)=)[^&\s\"']+"), r"\1<redacted>"),
    (re.compile(r"\b(whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9+/=_]{6,}"), r"\1_<redacted>"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"(?<![\w+])\+\d{10,15}\b"), "<phone>"),
    (re.compile(r"(?<![\w-])(\+?1[ .-])?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w-])"), "<phone>"),
    (re.compile(r"(?<![\w-])(19|20)\d{2}-\d{2}-\d{2}(?![\w-])"), "<date>"),
    (re.compile(r"(?<![\w/])\d{1,2}/\d{1,2}/(19|20)\d{2}(?![\w/])"), "<date>"),
]


def scrub(text: str) -> str:
    """Return ``text`` with bearer tokens, JWTs, ``name=value`` secrets (tokens, passwords; codes and state as URL
    parameters),
    ``whsec_``/Stripe keys, email addresses, phone numbers and bare dates (birth dates) replaced by markers."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


# Loggers whose DEBUG records carry data verbatim: ``django.template`` logs a missing variable with the whole
# template context (a patient's name and address on the patient pages), ``django.db.backends`` SQL with its
# parameters. Dropped at the handler, so even LOG_LEVEL=DEBUG cannot let them through.
VERBATIM_DEBUG = ("django.template", "django.db.backends")


class ScrubFilter(logging.Filter):
    """Scrub the formatted message and the exception text of every record (``scrub``); drop the DEBUG records of
    ``VERBATIM_DEBUG`` loggers.

    The exception is formatted here (``record.exc_text``), so the handler's formatter prints the scrubbed text.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; return ``False`` only for a ``VERBATIM_DEBUG`` record below INFO."""
        if record.levelno < logging.INFO and record.name.startswith(VERBATIM_DEBUG):
            return False
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True
