"""The client IP comes from X-Forwarded-For only through trusted proxies (healthcommerce.core.clientip)."""

import pytest
from django.test import RequestFactory

from healthcommerce.core.clientip import client_ip

SPOOFED_AND_REAL = "6.6.6.6, 203.0.113.7"


def _request(remote: str, forwarded: str | None = None):  # type: ignore[no-untyped-def]
    meta = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {})
    return RequestFactory().get("/", **meta)


def test_without_trusted_proxies_the_header_is_ignored(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = []

    assert client_ip(_request("198.51.100.4", SPOOFED_AND_REAL)) == "198.51.100.4"


def test_behind_a_trusted_proxy_the_address_it_appended_is_the_client(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("10.0.0.5", SPOOFED_AND_REAL)) == "203.0.113.7"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_forward(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("198.51.100.4", SPOOFED_AND_REAL)) == "198.51.100.4"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.5", "10.1.0.0/16"]

    assert client_ip(_request("10.0.0.5", "6.6.6.6, 203.0.113.7, 10.1.2.3")) == "203.0.113.7"


@pytest.mark.parametrize("forwarded", ["", "not-an-ip", "10.1.2.3, garbage"])
def test_a_missing_or_garbled_header_stops_at_the_last_trusted_hop(settings, forwarded) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("10.0.0.5", forwarded)) == "10.0.0.5"


def test_an_invalid_peer_address_gives_an_empty_string(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = []

    assert client_ip(_request("unix-socket")) == ""


def test_django_axes_uses_the_same_client_ip(settings) -> None:  # type: ignore[no-untyped-def]
    from axes.helpers import get_client_ip_address

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert get_client_ip_address(_request("10.0.0.5", SPOOFED_AND_REAL)) == "203.0.113.7"
