"""Where a request comes from, for the audit rows written while it runs: ``AuditContextMiddleware``.

The services that write audit rows do not take the request (``order_sign`` takes an order and a launch), so the
middleware keeps the client address (``core.clientip.client_ip``, trusted proxies only) and the user agent in a
context variable for the request's duration; ``audit_record`` fills ``ip`` and ``user_agent`` from it when its
caller does not pass them. Outside a request (Celery tasks, commands) both are empty.
"""

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from healthcommerce.core.clientip import client_ip

USER_AGENT_MAX = 300


@dataclass(frozen=True)
class RequestPlace:
    """The client address (text, ``""`` when unknown) and user agent (cut to ``USER_AGENT_MAX`` characters)."""

    ip: str = ""
    user_agent: str = ""


_NOWHERE = RequestPlace()
_place: ContextVar[RequestPlace | None] = ContextVar("audit_request_place", default=None)


def request_place(request: HttpRequest) -> RequestPlace:
    """Return the ``RequestPlace`` of ``request``."""
    return RequestPlace(ip=client_ip(request), user_agent=str(request.META.get("HTTP_USER_AGENT", ""))[:USER_AGENT_MAX])


def current_place() -> RequestPlace:
    """Return the place of the request being served in this context (empty outside a request)."""
    return _place.get() or _NOWHERE


class AuditContextMiddleware:
    """Set the request's place for the audit rows its view writes; reset it after the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _place.set(request_place(request))
        try:
            return self.get_response(request)
        finally:
            _place.reset(token)
