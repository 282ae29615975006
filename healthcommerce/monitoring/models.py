"""Integration health rows: per-minute call buckets and alerts (docs/adr/0018-integration-health.md)."""

from django.db import models

from healthcommerce.core.models import BaseModel


class IntegrationMinute(BaseModel):
    """Calls of one (``site``, ``endpoint``, ``outcome``) in one ``minute``, as flushed by one process.

    Rows are appended, never updated (several processes flush the same minute; queries sum them).
    ``latency_sum`` is seconds; ``le_*`` count calls per latency bucket (not cumulative, ``core.metrics.
    LATENCY_BOUNDS``); calls slower than 10 s are in ``count`` only. Labels hold no PHI: a site's name or
    ``commerce:<backend>``, an endpoint kind, an outcome class.
    """

    minute = models.DateTimeField()
    site = models.CharField(max_length=100)
    endpoint = models.CharField(max_length=60)
    outcome = models.CharField(max_length=12)
    count = models.PositiveIntegerField(default=0)
    latency_sum = models.FloatField(default=0.0)
    le_100ms = models.PositiveIntegerField(default=0)
    le_250ms = models.PositiveIntegerField(default=0)
    le_500ms = models.PositiveIntegerField(default=0)
    le_1s = models.PositiveIntegerField(default=0)
    le_2500ms = models.PositiveIntegerField(default=0)
    le_5s = models.PositiveIntegerField(default=0)
    le_10s = models.PositiveIntegerField(default=0)

    LE_FIELDS = ("le_100ms", "le_250ms", "le_500ms", "le_1s", "le_2500ms", "le_5s", "le_10s")

    class Meta:
        indexes = [models.Index(fields=["minute", "site"], name="monitoring_minute_site")]


class Alert(BaseModel):
    """One alert of one ``rule`` for one ``site`` (a site's name, ``commerce:<backend>`` or ``pipeline``).

    ``pending`` while the condition holds but has not yet held ``OPEN_AFTER`` evaluations in a row; ``open`` from
    ``opened_at`` (delivered once); ``resolved`` at ``resolved_at`` after ``RESOLVE_AFTER`` clear evaluations in
    a row (delivered once). At most one row per (rule, site) is not resolved. ``text`` is the opening sentence
    (site name, endpoint kind and numbers only).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        OPEN = "open"
        RESOLVED = "resolved"

    rule = models.CharField(max_length=40)
    site = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    text = models.CharField(max_length=500, blank=True)
    value = models.FloatField(default=0.0)
    threshold = models.FloatField(default=0.0)
    breaches = models.PositiveIntegerField(default=0)  # consecutive evaluations over the threshold
    clears = models.PositiveIntegerField(default=0)  # consecutive evaluations under the resolve threshold
    opened_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "site"],
                condition=~models.Q(status="resolved"),
                name="monitoring_one_live_alert_per_rule_and_site",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.site} {self.status}"
