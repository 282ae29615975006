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


class EHRUnavailable(HealthcommerceError):
    """Pre-fill's reads failed in a way that may pass (the EHR answered 5xx or 429, timed out or was unreachable:
    ``FHIRError`` codes in ``prefill.TRANSIENT``): nothing was created or recorded, so the next visit reads again.
    ``code`` is ``ehr_unavailable``; ``reads`` names the reads that failed (labels, no PHI)."""

    code = "ehr_unavailable"
    status = 503
    temporary = True
    message = (
        "The EHR could not be reached just now, so nothing was pre-filled. Reload this page in a moment; "
        "your launch is still valid."
    )

    def __init__(self, reads: list[str], message: str | None = None) -> None:
        super().__init__(message)
        self.reads = reads
