"""Commerce backends that fail on purpose, configured by tests in ``settings.COMMERCE_BACKENDS`` (``use_backend``)."""

from healthcommerce.fulfillment.backends.base import (
    CommerceBackend,
    PermanentBackendError,
    SubmitResult,
    TemporaryBackendError,
)
from healthcommerce.fulfillment.commerce import CommerceOrder

FAKE_BACKENDS = {
    "flaky": "tests.fulfillment.fakes.TemporaryFailingBackend",
    "slow-down": "tests.fulfillment.fakes.RateLimitedBackend",
    "rejecting": "tests.fulfillment.fakes.RejectingBackend",
    "recording": "tests.fulfillment.fakes.RecordingBackend",
    "slow-local": "tests.fulfillment.fakes.SlowLocalBackend",
}


class TemporaryFailingBackend(CommerceBackend):
    name = "flaky"

    def submit(self, order: CommerceOrder) -> SubmitResult:
        raise TemporaryBackendError(code="http_503")


class RateLimitedBackend(CommerceBackend):
    name = "slow-down"

    def submit(self, order: CommerceOrder) -> SubmitResult:
        raise TemporaryBackendError(code="http_429", retry_after=120)


class RejectingBackend(CommerceBackend):
    name = "rejecting"

    def submit(self, order: CommerceOrder) -> SubmitResult:
        raise PermanentBackendError(code="http_422")


class RecordingBackend(CommerceBackend):
    """Accepts everything and remembers what it was sent (class-level, reset by the fixture)."""

    name = "recording"
    received: list[CommerceOrder] = []

    def submit(self, order: CommerceOrder) -> SubmitResult:
        RecordingBackend.received.append(order)
        return SubmitResult(external_id=f"rec-{len(RecordingBackend.received)}")


class SlowLocalBackend(CommerceBackend):
    """The local backend, taking its time, so concurrent workers overlap."""

    name = "slow-local"

    def submit(self, order: CommerceOrder) -> SubmitResult:
        import time

        from healthcommerce.fulfillment.backends.local.backend import LocalCommerceBackend

        time.sleep(0.3)
        return LocalCommerceBackend().submit(order)
