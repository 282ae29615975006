"""The one outbound HTTP client: every request has a (connect, read) timeout and goes through TLS
unless the target is loopback (the sandbox EHR and tests); every redirect hop is checked again, and no response
body may exceed ``HTTP_MAX_RESPONSE_BYTES``.

Source: docs/reliability.md "Outbound HTTP", SMART App Launch 2.2 best practices (send tokens only to
the server that issued them), OWASP ASVS 5.0 V12 (server-side request forgery: validate every destination).
"""

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from healthcommerce.core import metrics
from healthcommerce.core.errors import OutboundRefused

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def url_problem(value: str, *, origin: bool = False, fetched: bool = True) -> str | None:
    """Return why ``value`` is not an https URL (http only on localhost), or not an origin
    (``scheme://host[:port]``) when ``origin``; ``None`` when it is fine. A URL the app ``fetched`` (an ``iss``, a
    ``jku``) must also pass the outbound client's address rule (``check_url``); a frame origin or a CDS Hooks
    issuer is only compared, never contacted. Used where people type URLs: the site record import
    (golive/siterecord.py) and the EHR site admin form (ehr/admin.py)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return f"{value!r} is not a URL"
    if not parts.hostname or parts.scheme not in ("https", "http"):
        return f"{value!r} is not an http(s) URL"
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return f"{value!r} must be https (http only on localhost)"
    try:
        if fetched:
            check_url(value)  # the outbound client's own rule
    except OutboundRefused as exc:
        if parts.scheme != "https":
            return f"{value!r} must be https (http only on localhost)"
        return f"{value!r} is refused: {exc.message}"
    if origin and (parts.path or parts.query or parts.fragment or parts.username):
        return f"{value!r} must be an origin: scheme://host[:port], no path"
    return None


def check_url(url: str) -> None:
    """Raise ``OutboundRefused`` unless ``url`` may be contacted.

    Embedded mode (the demo, the tests: ``settings.PRODUCTION`` off): https to any host, or http to a loopback host
    (the sandbox EHR). Production: https only, and every address the host resolves to must be public: never
    loopback, link-local (169.254.0.0/16, the cloud metadata service; fe80::/10), private, shared, reserved,
    multicast or unspecified, so an EHR-supplied URL (``smart_style_url``, a ``next`` link) cannot reach this
    machine or the hospital's network; a host in ``OUTBOUND_PRIVATE_HOSTS`` (an EHR on the hospital's intranet)
    may resolve to private addresses, never to loopback or link-local ones. Sources: OWASP ASVS 5.0 V12 (SSRF),
    RFC 6890 (special-purpose addresses, Python's ``ipaddress.is_global``).

    A host that does not resolve passes: the request then fails to connect (``unreachable``) as it would anyway.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not settings.PRODUCTION:
        if parts.scheme == "https" and host:
            return
        if parts.scheme == "http" and host in _LOOPBACK:
            return
        raise OutboundRefused("Only https URLs (or http on this machine) may be contacted.")
    if parts.scheme != "https" or not host:
        raise OutboundRefused("Only https URLs may be contacted.")
    try:
        port = parts.port or 443
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        return
    private_ok = host.lower() in {h.lower() for h in settings.OUTBOUND_PRIVATE_HOSTS}
    for *_, sockaddr in found:
        problem = _address_problem(str(sockaddr[0]), private_ok=private_ok)
        if problem:
            raise OutboundRefused(f"Refusing to contact {host}: it resolves to {problem}.")


def url_allowed(url: str) -> bool:
    """Whether the outbound client may contact ``url`` (``check_url`` without the exception): the readiness
    checks' yes or no."""
    try:
        check_url(url)
    except OutboundRefused:
        return False
    return True


def _address_problem(text: str, *, private_ok: bool) -> str:
    """Return what makes the resolved address ``text`` unfit for an outbound request (``""`` when it is public,
    or private and ``private_ok``)."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return f"a loopback address ({address})"
    if address.is_link_local:
        return f"a link-local address ({address})"
    if address.is_global and not address.is_multicast:
        return ""
    if private_ok and address.is_private and not (address.is_multicast or address.is_unspecified):
        return ""
    return f"a private or reserved address ({address}); an EHR on the hospital's network: OUTBOUND_PRIVATE_HOSTS"


class ResponseTooLarge(requests.RequestException):
    """A response body was larger than ``HTTP_MAX_RESPONSE_BYTES``; it was not read further."""


def cap_response_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A ``requests`` response hook: read the body now, at most ``HTTP_MAX_RESPONSE_BYTES`` (decoded, so a
    compressed bomb is cut too), and keep it as the response's content. Runs for each redirect hop as well.

    Skipped when the caller asked to stream (it reads ``raw`` itself, with its own limit). Raises
    ``ResponseTooLarge`` (closing the connection) when the body is larger.
    """
    if kwargs.get("stream"):
        return response
    limit = settings.HTTP_MAX_RESPONSE_BYTES
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            response.close()
            raise ResponseTooLarge(f"response over {limit} bytes", response=response)
    response._content = bytes(body)
    response._content_consumed = True  # type: ignore[attr-defined]  # as requests.Response.content sets it
    return response


def origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def metered_send(
    send: Any, request: requests.PreparedRequest, *, site: str, kind: str, base: str | None, **kwargs: Any
) -> requests.Response:
    """Call ``send(request, **kwargs)`` and count it (``core.metrics.record``): the outcome class of the status,
    or of the exception (``timeout``, ``connection``, ``other``), which is re-raised; the seconds include reading
    the body. Labels come from ``core.metrics.labels_for``. Source: docs/adr/0018-integration-health.md."""
    site_label, endpoint = metrics.labels_for(site=site, kind=kind, url=request.url or "", base=base)
    started = time.perf_counter()
    try:
        response = send(request, **kwargs)
    except Exception as exc:
        metrics.record(
            site=site_label,
            endpoint=endpoint,
            outcome=metrics.outcome_for_exception(exc),
            seconds=time.perf_counter() - started,
        )
        raise
    outcome = metrics.outcome_for_status(response.status_code)
    metrics.record(site=site_label, endpoint=endpoint, outcome=outcome, seconds=time.perf_counter() - started)
    return response


class OutboundSession(requests.Session):
    """``requests.Session`` with the project's default timeout, a URL check on every request and on every
    redirect hop (``send`` sees each one), and a capped response body (``cap_response_body``).

    With ``only_origin`` set, every request and every redirect must go to that origin: a bearer token is sent
    only to the server it was issued for (SMART App Launch 2.2 "Best practices"), even when a Bundle's ``next``
    link or a redirect points elsewhere. Without it, each hop must still be https (or http to loopback).

    Every hop that reaches the network is counted (``metered_send``) under ``site`` and ``kind`` (or the labels
    of the enclosing ``core.metrics.integration`` block); ``base`` is the FHIR base for ``fhir:<ResourceType>``.
    """

    def __init__(
        self, only_origin: str | None = None, *, site: str = "", kind: str = "", base: str | None = None
    ) -> None:
        super().__init__()
        self.only_origin = origin(only_origin) if only_origin else None
        self.site, self.kind, self.base = site, kind, base
        self.hooks["response"].append(cap_response_body)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send a request; ``timeout`` defaults to ``settings.HTTP_TIMEOUT`` (seconds).

        Raises ``OutboundRefused`` for a disallowed URL (the first or a redirect's), ``ResponseTooLarge`` for a
        body over ``HTTP_MAX_RESPONSE_BYTES`` and ``requests.RequestException`` on failure.
        """
        kwargs.setdefault("timeout", settings.HTTP_TIMEOUT)
        return super().request(method, url, *args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send one prepared request (the first, or a redirect hop from ``resolve_redirects``) after checking its
        URL; raises ``OutboundRefused`` before any byte is sent to a disallowed one."""
        target = request.url or ""
        check_url(target)
        if self.only_origin and origin(target) != self.only_origin:
            raise OutboundRefused("Refusing to send a request to another server.")
        kwargs.setdefault("timeout", settings.HTTP_TIMEOUT)
        return metered_send(super().send, request, site=self.site, kind=self.kind, base=self.base, **kwargs)


def outbound_session(
    *, only_origin: str | None = None, site: str = "", kind: str = "", base: str | None = None
) -> OutboundSession:
    """Return a new outbound session with a ``User-Agent`` naming the app, optionally pinned to one origin, its
    calls counted under ``site`` (a site's name, ``commerce:<backend>``) and endpoint ``kind``
    (``core.metrics.KINDS``; ``fhir`` with the FHIR ``base`` names the resource type)."""
    session = OutboundSession(only_origin, site=site, kind=kind, base=base)
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
