"""The outbox (one message per order version, keyed by an idempotency key) and the local backend's orders."""

from django.db import models

from healthcommerce.core.models import BaseModel
from healthcommerce.orders.models import Order


class OutboxMessage(BaseModel):
    """A message written in the same transaction as the change it announces (transactional outbox).

    The relay claims ``pending`` rows whose ``available_at`` has passed with ``SELECT ... FOR UPDATE SKIP
    LOCKED``, publishes the Celery task, and counts ``attempts``; after ``FULFILLMENT_MAX_ATTEMPTS`` the
    row is ``dead`` (dead letter) and alerts.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        DEAD = "dead"

    topic = models.CharField(max_length=60)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="outbox_messages")
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    # Publications since a worker last took the row: each one doubles the relay's lease (republish backoff).
    publish_count = models.PositiveIntegerField(default=0)
    # Set by the worker that claimed the row (conditional UPDATE); another worker may claim it only after this.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    external_id = models.CharField(max_length=200, blank=True, help_text="The backend's id for the order, once done.")

    class Meta:
        indexes = [models.Index(fields=["status", "available_at"])]

    def __str__(self) -> str:
        return f"{self.topic} {self.idempotency_key} ({self.status})"


class LocalCommerceOrder(BaseModel):
    """An order as the default ``local`` commerce backend holds it: only the minimized ``CommerceOrder``.

    Status moves ``received -> confirmed`` (the patient completed the purchase link) ``-> shipped ->
    delivered``; an admin marks it shipped, then delivered. It never goes back.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        CONFIRMED = "confirmed"
        SHIPPED = "shipped"
        DELIVERED = "delivered"

    idempotency_key = models.CharField(max_length=100, unique=True)
    # Every submit with this key counts, replays included: more than one means the pipeline sent it again.
    submit_count = models.PositiveIntegerField(default=0, help_text="Submit calls received with this idempotency key.")
    order_reference = models.CharField(max_length=20, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    tracking_number = models.CharField(max_length=100, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.order_reference} ({self.status})"
