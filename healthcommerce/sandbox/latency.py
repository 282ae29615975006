"""Injected network latency for the sandbox EHR: every OAuth, discovery and FHIR request waits
``SANDBOX_LATENCY_MS`` milliseconds before it is answered, as a real EHR 50 to 300 ms away would.

Used by ``make bench`` (launch-to-form time against the EHR's own round trips); 0 (the default) adds nothing.
With ``SANDBOX_REQUEST_LOG`` naming a file, every API request also appends one JSON line
``{"path": ..., "start": <epoch s>, "end": <epoch s>}`` there, so a benchmark can count the EHR requests of a
launch and how many sequential rounds they took (the app under test runs in another process).
The EHR's own pages (``/sandbox/``, ``/sandbox/launch``, ``/sandbox/frame``) are not delayed: they are the
EHR's user interface, not its API.
"""

import json
import threading
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
        self.log_path = str(getattr(settings, "SANDBOX_REQUEST_LOG", "") or "")
        self.lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Delay API paths (``DELAYED_PREFIXES``), then answer; log the request's span when asked to."""
        if not request.path.startswith(DELAYED_PREFIXES):
            return self.get_response(request)
        start = time.time()
        if self.seconds:
            time.sleep(self.seconds)
        response = self.get_response(request)
        if self.log_path:
            line = json.dumps({"path": request.path, "start": start, "end": time.time()}) + "\n"
            with self.lock, open(self.log_path, "a") as log:
                log.write(line)
        return response
