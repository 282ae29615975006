"""Integration health errors (docs/style.md 6)."""

from healthcommerce.core.errors import HealthcommerceError


class AlertDeliveryFailed(HealthcommerceError):
    """An alert email or webhook could not be delivered; ``temporary`` says whether the outbox retries."""

    code = "alert_delivery_failed"
    status = 502
    temporary = True
    message = "The alert could not be delivered."

    def __init__(self, *, code: str, temporary: bool = True) -> None:
        super().__init__(code=code)
        self.temporary = temporary
