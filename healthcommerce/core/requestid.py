"""A request id on every log line, carried from the web request into the Celery tasks it publishes.

``RequestIdMiddleware`` takes ``X-Request-ID`` only from a peer in ``TRUSTED_PROXIES`` (the proxy's id, so its
access log and ours join up) when it is 8 to 64 characters of ``[A-Za-z0-9._-]``; otherwise it makes one (32 hex
characters). It keeps it in a context variable for the request and answers with it in ``X-Request-ID``.
``healthcommerce/celery.py`` puts it in the task's headers when a task is published (``before_task_publish``)
and restores it in the worker (``task_prerun``; a task published outside a request gets a fresh one).
``RequestIdFilter`` (settings ``LOGGING``) adds ``record.request_id`` (``-`` when there is none).
Source: docs/reliability.md "Integration health".
"""

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from healthcommerce.core.clientip import _networks

HEADER = "X-Request-ID"
TASK_HEADER = "hc_request_id"
_VALID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_request_id: ContextVar[str | None] = ContextVar("hc_request_id", default=None)


def request_id() -> str | None:
    """Return the current request id, or ``None`` outside a request or task."""
    return _request_id.get()


def request_id_set(value: str | None) -> object:
    """Set the current request id (a task's, restored from its headers); return a token for ``request_id_reset``."""
    return _request_id.set(value)


def request_id_reset(token: object) -> None:
    """Restore the request id that ``request_id_set`` replaced."""
    _request_id.reset(token)  # type: ignore[arg-type]


def new_request_id() -> str:
    """Return a fresh request id: 32 hex characters."""
    return uuid.uuid4().hex


def _from_trusted_proxy(request: HttpRequest) -> str | None:
    offered = request.headers.get(HEADER, "")
    if not offered or not _VALID.fullmatch(offered):
        return None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    try:
        peer = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return None
    return offered if any(peer in network for network in networks) else None


class RequestIdMiddleware:
    """Set the request id for the request (``request.request_id`` too) and answer with it in ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        request_finished.connect(_forget, dispatch_uid="healthcommerce.requestid.forget")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Handle ``request`` with its id set. The id stays set until the response is closed
        (``request_finished``): Django logs a 4xx or 5xx (``django.request``) after the middleware returned."""
        value = _from_trusted_proxy(request) or new_request_id()
        request.request_id = value  # type: ignore[attr-defined]
        _request_id.set(value)
        response = self.get_response(request)
        response[HEADER] = value
        return response


def _forget(**_: object) -> None:
    _request_id.set(None)


class RequestIdFilter(logging.Filter):
    """Add ``record.request_id`` (the current id, or ``-``); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``request_id`` on ``record`` unless it has one, and return ``True``."""
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True
