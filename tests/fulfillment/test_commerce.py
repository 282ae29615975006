"""The CommerceOrder is the one allowlisted payload: nothing clinical crosses the boundary."""

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from healthcommerce.fulfillment.commerce import CommerceOrder, commerce_order_build
from healthcommerce.orders.errors import OrderIncomplete
from healthcommerce.orders.models import Order
from tests.fulfillment.conftest import clinical_values

ALLOWED_KEYS = {
    "order_reference",
    "idempotency_key",
    "items",
    "items[].sku",
    "items[].name",
    "items[].quantity",
    "ship_to",
    "ship_to.name",
    "ship_to.line1",
    "ship_to.line2",
    "ship_to.city",
    "ship_to.state",
    "ship_to.postal_code",
    "ship_to.country",
    "contact",
    "contact.email",
    "contact.phone",
}


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON-like value; list elements are written ``name[]``."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= key_paths(child, path)
    elif isinstance(value, list | tuple):
        for child in value:
            paths |= key_paths(child, f"{prefix}[]")
    return paths


def test_the_payload_carries_exactly_the_allowlisted_keys(order: Order) -> None:
    payload = commerce_order_build(order=order, idempotency_key="k1").to_dict()
    assert key_paths(payload) == ALLOWED_KEYS


def test_clinical_codes_birth_date_payer_and_fhir_ids_appear_nowhere_in_the_payload(order: Order) -> None:
    serialized = json.dumps(commerce_order_build(order=order, idempotency_key=f"{order.id}:v1").to_dict())
    forbidden = [*clinical_values(order), "1987", order.signed_by]
    for value in forbidden:
        assert value not in serialized, value


def test_it_maps_the_address_lines_recipient_and_contact(order: Order) -> None:
    built = commerce_order_build(order=order, idempotency_key="k1")
    assert built.order_reference == order.reference
    assert built.items[0].sku == "CGM-STARTER-1"
    assert built.items[0].quantity == 2
    assert (built.ship_to.name, built.ship_to.line1, built.ship_to.line2) == (
        "Camila Lopez",
        "7525 Colshire Dr",
        "Suite 200",
    )
    assert (built.ship_to.city, built.ship_to.state, built.ship_to.postal_code, built.ship_to.country) == (
        "McLean",
        "VA",
        "22102",
        "US",
    )
    assert built.contact.email == "camila.lopez@example.org"


def test_the_payload_is_immutable(order: Order) -> None:
    built = commerce_order_build(order=order, idempotency_key="k1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.order_reference = "HC-OTHER"  # type: ignore[misc]
    assert [field.name for field in dataclasses.fields(CommerceOrder)] == [
        "order_reference",
        "idempotency_key",
        "items",
        "ship_to",
        "contact",
    ]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"product": None}, "product_missing"),
        ({"ship_to": {}}, "ship_to_incomplete"),
        ({"quantity": 0}, "quantity_invalid"),
    ],
)
def test_an_incomplete_order_cannot_be_built(make_order: Callable[..., Order], overrides: dict, code: str) -> None:
    order = make_order(**overrides)
    with pytest.raises(OrderIncomplete) as caught:
        commerce_order_build(order=order, idempotency_key="k1")
    assert caught.value.code == code
