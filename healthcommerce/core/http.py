"""The one outbound HTTP client: every request has a (connect, read) timeout and goes through TLS
unless the target is loopback (the sandbox EHR and tests).

Source: docs/reliability.md "Outbound HTTP", SMART App Launch 2.2 best practices (send tokens only to
the server that issued them).
"""

from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

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
