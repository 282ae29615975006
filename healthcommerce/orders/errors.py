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
