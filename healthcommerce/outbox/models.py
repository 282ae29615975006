"""The outbox: one row per (event, subscriber), written in the transaction that makes the event true."""

from django.db import models

from healthcommerce.core.models import BaseModel


class OutboxMessage(BaseModel):
    """An event for one subscriber (transactional outbox, ADR 0008).

    ``topic`` names the event (``order.signed``), ``subscriber`` the stage that handles it
    (``fulfillment.submit``); ``idempotency_key`` is the event's key (``<order id>:v<version>``), unique per
    subscriber, and the key the handler passes on (to a commerce backend, for example). ``subject`` is the id
    the event is about; ``payload`` holds ids and codes only, never PHI. The relay publishes ``pending`` rows
    whose ``available_at`` has passed; a worker claims one (``locked_until``) and counts ``attempts``; after
    ``FULFILLMENT_MAX_ATTEMPTS`` the row is ``dead`` (dead letter) and alerts. ``cancelled`` rows are never
    delivered (the order was cancelled first).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        DEAD = "dead"
        CANCELLED = "cancelled"

    topic = models.CharField(max_length=60)
    subscriber = models.CharField(max_length=60)
    idempotency_key = models.CharField(max_length=100)
    subject = models.CharField(max_length=100, db_index=True, help_text="What the event is about (an id).")
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    # Publications since a worker last took the row: each one doubles the relay's lease (republish backoff).
    publish_count = models.PositiveIntegerField(default=0)
    # Set by the worker that claimed the row (conditional UPDATE); another worker may claim it only after this.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    result = models.CharField(max_length=200, blank=True, help_text="What the handler returned, e.g. a backend id.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key", "subscriber"], name="outbox_one_row_per_subscriber")
        ]
        indexes = [models.Index(fields=["status", "available_at"])]

    def __str__(self) -> str:
        return f"{self.topic} -> {self.subscriber} {self.idempotency_key} ({self.status})"
