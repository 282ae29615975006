"""Injected network latency for the sandbox EHR: every OAuth, discovery and FHIR request waits
``SANDBOX_LATENCY_MS`` milliseconds before it is answered, as a real EHR 50 to 300 ms away would.

Used by ``make bench`` (launch-to-form time against the EHR's own round trips); 0 (the default) adds nothing.
The EHR's own pages (``/sandbox/``, ``/sandbox/launch``, ``/sandbox/frame``) are not delayed: they are the
EHR's user interface, not its API.
"""

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

DELAYED_PREFIXES = ("/sandbox/oauth/", "/sandbox/fhir/", "/sandbox/smart-style.json")


class SandboxLatencyMiddleware:
    """Sleep ``settings.SANDBOX_LATENCY_MS`` (milliseconds, int) before answering a sandbox API request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.seconds = max(0, int(getattr(settings, "SANDBOX_LATENCY_MS", 0))) / 1000

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Delay API paths (``DELAYED_PREFIXES``), then answer."""
        if self.seconds and request.path.startswith(DELAYED_PREFIXES):
            time.sleep(self.seconds)
        return self.get_response(request)
