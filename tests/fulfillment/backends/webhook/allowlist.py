"""The ``webhook`` backend's boundary allowlist: one signed POST to the supplier URL, these headers and body keys
(read by ``tests/fulfillment/boundary.py`` ``check_for("webhook")``)."""

from urllib.parse import urlsplit

from django.conf import settings as django_settings

from healthcommerce.orders.models import Order
from tests.fulfillment.boundary import Sent, json_body, leaks
from tests.fulfillment.test_commerce import ALLOWED_KEYS, key_paths

WEBHOOK_KEYS = {"type", "timestamp", "data"} | {f"data.{key}" for key in ALLOWED_KEYS}
WEBHOOK_TYPES = {"order.created"}
WEBHOOK_HEADERS = {  # lower-case; the receiver also sees ``host``
    "host",
    "user-agent",
    "accept-encoding",
    "accept",
    "connection",
    "content-type",
    "content-length",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}


def problems(order: Order, sent: list[Sent], clinical: list[str]) -> list[str]:
    """``webhook``: POSTs to ``WEBHOOK_URL`` only, with ``WEBHOOK_HEADERS`` and a body of ``WEBHOOK_KEYS``."""
    problems = []
    url = str(django_settings.COMMERCE_BACKENDS["webhook"]["OPTIONS"]["URL"])
    for s in sent:
        where = f"webhook {s.method} {urlsplit(s.url).path}"
        if s.method != "POST" or s.url != url:
            problems.append(f"{where}: not a POST to WEBHOOK_URL exactly ({s.url})")
        extra_headers = {name.lower() for name in s.headers} - WEBHOOK_HEADERS
        if extra_headers:
            problems.append(f"{where}: headers outside the allowlist: {sorted(extra_headers)}")
        body = json_body(s.body)
        if not isinstance(body, dict):
            problems.append(f"{where}: the body is not a JSON object")
        else:
            extra = key_paths(body) - WEBHOOK_KEYS
            if extra:
                problems.append(f"{where}: body keys outside the allowlist: {sorted(extra)}")
            if body.get("type") not in WEBHOOK_TYPES:
                problems.append(f"{where}: event type {body.get('type')!r}")
        problems += [f"{where} carries {value!r}" for value in leaks(s.text(), clinical)]
    return problems
