"""The client's IP address, taken from ``X-Forwarded-For`` only through proxies listed in ``TRUSTED_PROXIES``.

The rule is nginx's ``set_real_ip_from`` with ``real_ip_recursive on``: start from the peer that opened the
connection (``REMOTE_ADDR``); while that address is a trusted proxy, step one entry left in
``X-Forwarded-For``; the first address that is not a trusted proxy is the client. A client can put anything in
the header, but only the entries that trusted proxies appended are ever reached. With ``TRUSTED_PROXIES``
empty the header is ignored. django-axes uses the same function (``AXES_CLIENT_IP_CALLABLE``), so admin
lockouts and patient-link rate limits agree on who the client is.

django-ipware was looked at and not used: its ``proxy_count`` trusts the header whatever the peer is.
"""

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """Return the client's IP address as text (``""`` when the peer address is missing or invalid).

    ``settings.TRUSTED_PROXIES`` is a sequence of addresses or CIDR networks (``"10.0.0.0/8"``). Invalid
    entries in ``X-Forwarded-For`` stop the walk at the last trusted address seen.
    """
    peer = _address(str(request.META.get("REMOTE_ADDR", "")))
    if peer is None:
        return ""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(peer, networks):
        return str(peer)
    current = peer
    for hop in reversed(str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)
