"""Errors raised by order services."""

from healthcommerce.core.errors import HealthcommerceError


class InvalidTransition(HealthcommerceError):
    """A status change that would go backwards or skip the state machine."""

    code = "invalid_transition"
    status = 409
    message = "This order cannot change to that status."


class OrderIncomplete(HealthcommerceError):
    """The order lacks an element a Standard Written Order or fulfillment needs."""

    code = "order_incomplete"
    status = 400
    message = "The order is not complete yet."


class OrderImmutable(HealthcommerceError):
    """A signed order's content cannot change."""

    code = "order_immutable"
    status = 409
    message = "This order is already signed and cannot be changed."


class ProductMismatch(HealthcommerceError):
    """The chosen product is not what the catalog maps the EHR request's code to, and the clinician has not
    confirmed that it fulfils the request (``orders.services.order_product_mismatch``)."""

    code = "product_mismatch"
    status = 400
    message = "The chosen item does not match the request in the EHR: confirm it fulfils the request, or pick another."
