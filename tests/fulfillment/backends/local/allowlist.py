"""The ``local`` backend's boundary allowlist: nothing over HTTP; the stored payload is ``CommerceOrder.to_dict()``
(read by ``tests/fulfillment/boundary.py`` ``check_for("local")``)."""

import json

from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order
from tests.fulfillment.boundary import Sent, leaks
from tests.fulfillment.test_commerce import ALLOWED_KEYS, key_paths

LOCAL_KEYS = ALLOWED_KEYS  # LocalCommerceOrder.payload is CommerceOrder.to_dict()


def problems(order: Order, sent: list[Sent], clinical: list[str]) -> list[str]:
    """``local``: nothing goes over HTTP; the stored row holds only ``LOCAL_KEYS`` and no clinical value."""
    problems = [f"local sent HTTP: {s.method} {s.url}" for s in sent]
    for row in LocalCommerceOrder.objects.filter(order_reference=order.reference):
        extra = key_paths(row.payload) - LOCAL_KEYS
        if extra:
            problems.append(f"local payload keys outside the allowlist: {sorted(extra)}")
        stored = json.dumps([row.order_reference, row.idempotency_key, row.payload], ensure_ascii=False)
        problems += [f"local payload holds {value!r}" for value in leaks(stored, clinical)]
    return problems
