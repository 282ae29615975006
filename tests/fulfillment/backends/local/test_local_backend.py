"""The backend registry and the local backend (idempotent on the idempotency key)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.fulfillment.backends.base import (
    CommerceBackend,
    PermanentBackendError,
    TemporaryBackendError,
)
from healthcommerce.fulfillment.backends.local.backend import LocalCommerceBackend
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.backends.registry import get_backend
from healthcommerce.fulfillment.commerce import commerce_order_build
from healthcommerce.orders.models import Order


def test_the_registry_defaults_to_the_configured_local_backend(settings) -> None:
    settings.COMMERCE_BACKEND = "local"
    assert isinstance(get_backend(), LocalCommerceBackend)


def test_the_registry_rejects_an_unknown_name() -> None:
    with pytest.raises(ImproperlyConfigured):
        get_backend("nope")


def test_the_base_backend_leaves_submit_to_subclasses(order: Order) -> None:
    with pytest.raises(NotImplementedError):
        CommerceBackend().submit(commerce_order_build(order=order, idempotency_key="k1"))


def test_errors_say_whether_they_are_temporary() -> None:
    assert TemporaryBackendError(retry_after=3).temporary is True
    assert TemporaryBackendError(retry_after=3).retry_after == 3
    assert PermanentBackendError().temporary is False


def test_submitting_the_same_key_twice_stores_one_order(order: Order) -> None:
    payload = commerce_order_build(order=order, idempotency_key="key-1")
    first = LocalCommerceBackend().submit(payload)
    second = LocalCommerceBackend().submit(payload)
    assert first == second
    row = LocalCommerceOrder.objects.get()
    assert str(row.id) == first.external_id
    assert row.payload == payload.to_dict()
    assert row.status == LocalCommerceOrder.Status.RECEIVED
    assert row.submit_count == 2


def test_reusing_a_key_for_another_payload_is_a_permanent_error(order: Order) -> None:
    LocalCommerceBackend().submit(commerce_order_build(order=order, idempotency_key="key-1"))
    order.quantity = 5
    with pytest.raises(PermanentBackendError) as caught:
        LocalCommerceBackend().submit(commerce_order_build(order=order, idempotency_key="key-1"))
    assert caught.value.code == "idempotency_key_reused"
    assert LocalCommerceOrder.objects.count() == 1
