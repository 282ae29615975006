"""The one outbound HTTP client: every request has a (connect, read) timeout and goes through TLS
unless the target is loopback (the sandbox EHR and tests).

Source: docs/reliability.md "Outbound HTTP", SMART App Launch 2.2 best practices (send tokens only to
the server that issued them).
"""

from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from healthcommerce.core.errors import OutboundRefused

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def check_url(url: str) -> None:
    """Raise ``OutboundRefused`` unless ``url`` is https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise OutboundRefused("Only https URLs (or http on this machine) may be contacted.")


def origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class OutboundSession(requests.Session):
    """``requests.Session`` with the project's default timeout and URL check on every request.

    With ``only_origin`` set, every request must go to that origin: a bearer token is sent only to the
    server it was issued for (SMART App Launch 2.2 "Best practices"), even when a Bundle's ``next`` link
    points elsewhere.
    """

    def __init__(self, only_origin: str | None = None) -> None:
        super().__init__()
        self.only_origin = origin(only_origin) if only_origin else None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send a request; ``timeout`` defaults to ``settings.HTTP_TIMEOUT`` (seconds).

        Raises ``OutboundRefused`` for a disallowed URL and ``requests.RequestException`` on failure.
        """
        target = url if isinstance(url, str) else url.decode()
        check_url(target)
        if self.only_origin and origin(target) != self.only_origin:
            raise OutboundRefused("Refusing to send a request to another server.")
        kwargs.setdefault("timeout", settings.HTTP_TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def outbound_session(*, only_origin: str | None = None) -> OutboundSession:
    """Return a new outbound session with a ``User-Agent`` naming the app, optionally pinned to one origin."""
    session = OutboundSession(only_origin)
    session.headers["User-Agent"] = "healthcommerce/1.0"
    return session


def request_body_capped(request: HttpRequest, max_bytes: int) -> bytes | None:
    """Return the raw body of an inbound webhook ``request``, or ``None`` when it is over ``max_bytes`` (by its
    ``Content-Length`` before reading, by its length after, or Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``): the
    caller answers 413. The raw bytes are what a signature is checked over (Standard Webhooks, Stripe)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_bytes:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= max_bytes else None
