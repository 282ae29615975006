"""The ``medusa`` backend's boundary allowlist: the Admin API routes ``submit`` calls, with their query
parameters, body keys and headers (read by ``tests/fulfillment/boundary.py`` ``check_for("medusa")``)."""

import re
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings as django_settings

from healthcommerce.orders.models import Order
from tests.fulfillment.boundary import Sent, json_body, leaks
from tests.fulfillment.test_commerce import key_paths

MEDUSA_HEADERS = {
    "user-agent",
    "accept-encoding",
    "accept",
    "connection",
    "authorization",
    "content-type",
    "content-length",
}
_ID = r"[A-Za-z0-9_]+"
# (method, path pattern, query parameters, body key paths): every Admin API call ``submit`` makes.
MEDUSA_ROUTES: list[tuple[str, str, set[str], set[str]]] = [
    ("GET", "/admin/orders", {"q", "fields", "limit"}, set()),
    ("GET", "/admin/draft-orders", {"q", "fields", "limit"}, set()),
    ("GET", "/admin/product-variants", {"sku", "fields", "limit"}, set()),
    ("GET", "/admin/regions", {"fields", "limit"}, set()),
    ("GET", f"/admin/regions/{_ID}", {"fields"}, set()),
    ("GET", f"/admin/shipping-options/{_ID}", {"fields"}, set()),
    (
        "POST",
        "/admin/draft-orders",
        set(),
        {
            "region_id",
            "sales_channel_id",
            "email",
            "items",
            "items[].variant_id",
            "items[].quantity",
            "shipping_address",
            *(
                f"shipping_address.{key}"
                for key in (
                    "first_name",
                    "last_name",
                    "address_1",
                    "address_2",
                    "city",
                    "province",
                    "postal_code",
                    "country_code",
                    "phone",
                )
            ),
            "shipping_methods",
            "shipping_methods[].shipping_option_id",
            "shipping_methods[].name",
            "shipping_methods[].amount",
            "no_notification_order",
            "metadata",  # exactly these three: our opaque reference, the idempotency key, the display id built of both
            "metadata.healthcommerce_reference",
            "metadata.healthcommerce_idempotency_key",
            "metadata.healthcommerce_display_id",
        },
    ),
    ("POST", f"/admin/draft-orders/{_ID}/convert-to-order", set(), set()),
]

# What a clinician types into the form for what the EHR did not give (none of it clinical except the birth date).


def _medusa_route(method: str, path: str) -> tuple[set[str], set[str]] | None:
    for route_method, pattern, query, body in MEDUSA_ROUTES:
        if method == route_method and re.fullmatch(pattern, path):
            return query, body
    return None


def problems(order: Order, sent: list[Sent], clinical: list[str]) -> list[str]:
    """``medusa``: Admin API calls to ``MEDUSA_URL`` only, each on a ``MEDUSA_ROUTES`` route with its query
    parameters and body keys, and ``MEDUSA_HEADERS``."""
    problems = []
    base = urlsplit(str(django_settings.COMMERCE_BACKENDS["medusa"]["OPTIONS"]["URL"]))
    for s in sent:
        parts = urlsplit(s.url)
        where = f"medusa {s.method} {parts.path}"
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            problems.append(f"{where}: not to MEDUSA_URL ({parts.scheme}://{parts.netloc})")
        route = _medusa_route(s.method, parts.path)
        if route is None:
            problems.append(f"{where}: a route outside the allowlist")
            route = (set(), set())
        query, keys = route
        extra_query = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)} - query
        if extra_query:
            problems.append(f"{where}: query parameters outside the allowlist: {sorted(extra_query)}")
        extra_headers = {name.lower() for name in s.headers} - MEDUSA_HEADERS
        if extra_headers:
            problems.append(f"{where}: headers outside the allowlist: {sorted(extra_headers)}")
        body = json_body(s.body)
        extra = key_paths(body) - keys if isinstance(body, dict) else {"<not a JSON object>"}
        if extra:
            problems.append(f"{where}: body keys outside the allowlist: {sorted(extra)}")
        problems += [f"{where} carries {value!r}" for value in leaks(s.text(), clinical)]
    return problems
