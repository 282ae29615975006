"""Integration health writes: store the flushed buckets, evaluate the alert rules with hysteresis, purge old
buckets (docs/style.md 2; docs/adr/0018-integration-health.md).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healthcommerce.core.metrics import Bucket, BucketKey
from healthcommerce.monitoring.models import Alert, IntegrationMinute
from healthcommerce.monitoring.rules import RULES, Observation
from healthcommerce.monitoring.selectors import tallies
from healthcommerce.outbox.services import outbox_publish

logger = logging.getLogger(__name__)

TOPIC_ALERT_CHANGED = "monitoring.alert_changed"
# Hysteresis (docs/reliability.md "Integration health"): open after this many evaluations over the threshold in a
# row, resolve after this many at or under RESOLVE_RATIO x threshold in a row. Between the two nothing changes.
OPEN_AFTER = 2
RESOLVE_AFTER = 3
RESOLVE_RATIO = 0.8


def buckets_store(buckets: dict[BucketKey, Bucket]) -> None:
    """Append one ``IntegrationMinute`` row per bucket (the ``core.metrics`` sink), in one INSERT. Rows are never
    updated, so processes flushing the same minute do not contend. Raises ``DatabaseError``."""
    rows = [
        IntegrationMinute(
            minute=minute,
            site=site,
            endpoint=endpoint[:60],
            outcome=outcome,
            count=bucket.count,
            latency_sum=bucket.latency_sum,
            **dict(zip(IntegrationMinute.LE_FIELDS, bucket.le, strict=True)),
        )
        for (minute, site, endpoint, outcome), bucket in buckets.items()
    ]
    IntegrationMinute.objects.bulk_create(rows)


def buckets_purge() -> int:
    """Delete buckets older than ``INTEGRATION_RETENTION_DAYS`` and resolved alerts older than 90 days; return
    how many buckets went. Idempotent."""
    now = timezone.now()
    deleted, _ = IntegrationMinute.objects.filter(
        minute__lt=now - timedelta(days=settings.INTEGRATION_RETENTION_DAYS)
    ).delete()
    Alert.objects.filter(status=Alert.Status.RESOLVED, resolved_at__lt=now - timedelta(days=90)).delete()
    return deleted


def alerts_evaluate() -> list[Alert]:
    """Run every rule of ``ALERT_RULES`` once (beat, every minute) and return the alerts that opened or resolved.

    One short transaction per (rule, site) with the alert row locked, so two evaluations at once (a second beat
    by mistake) still open and resolve each alert once; an opening or resolution publishes
    ``monitoring.alert_changed`` in that transaction (email and webhook through the outbox, retried there).
    """
    now = timezone.now()
    window = tallies(since=now - timedelta(minutes=settings.ALERT_WINDOW_MINUTES))
    changed: list[Alert] = []
    for name, rule in RULES.items():
        if name not in settings.ALERT_RULES:
            continue
        evaluation = rule(now, window)
        seen = {o.site for o in evaluation.observations}
        for observation in evaluation.observations:
            alert = _alert_step(name, observation)
            if alert is not None:
                changed.append(alert)
        live = Alert.objects.filter(rule=name).exclude(status=Alert.Status.RESOLVED).values_list("site", flat=True)
        for site in set(live) - seen - evaluation.held:
            alert = _alert_step(name, Observation(site, 0.0, 0.0, ""))
            if alert is not None:
                changed.append(alert)
    return changed


@transaction.atomic
def _alert_step(rule: str, observation: Observation) -> Alert | None:
    """Move the (rule, site) alert one evaluation on; return it when it opened or resolved now, else ``None``."""
    now = timezone.now()
    breach = observation.value > observation.threshold
    clear = observation.value <= observation.threshold * RESOLVE_RATIO
    alert = (
        Alert.objects.select_for_update()
        .filter(rule=rule, site=observation.site)
        .exclude(status=Alert.Status.RESOLVED)
        .first()
    )
    if alert is None:
        if not breach:
            return None
        alert = Alert.objects.create(
            rule=rule, site=observation.site, value=observation.value, threshold=observation.threshold, breaches=0
        )
    if breach:
        alert.breaches, alert.clears = alert.breaches + 1, 0
        alert.value, alert.threshold = observation.value, observation.threshold
        if alert.status == Alert.Status.PENDING and alert.breaches >= OPEN_AFTER:
            alert.status, alert.opened_at, alert.text = Alert.Status.OPEN, now, observation.text[:500]
            alert.save(
                update_fields=["status", "opened_at", "text", "breaches", "clears", "value", "threshold", "updated_at"]
            )
            _publish(alert, "opened")
            logger.error("ALERT opened rule=%s site=%s: %s", rule, alert.site, alert.text)
            return alert
        alert.save(update_fields=["breaches", "clears", "value", "threshold", "updated_at"])
        return None
    if alert.status == Alert.Status.PENDING:
        alert.delete()  # it never opened: nobody was told, nothing to resolve
        return None
    alert.clears = alert.clears + 1 if clear else 0
    alert.breaches = 0
    alert.value = observation.value
    if alert.clears >= RESOLVE_AFTER:
        alert.status, alert.resolved_at = Alert.Status.RESOLVED, now
        alert.save(update_fields=["status", "resolved_at", "breaches", "clears", "value", "updated_at"])
        _publish(alert, "resolved")
        logger.warning("ALERT resolved rule=%s site=%s", rule, alert.site)
        return alert
    alert.save(update_fields=["breaches", "clears", "value", "updated_at"])
    return None


def _publish(alert: Alert, event: str) -> None:
    outbox_publish(
        topic=TOPIC_ALERT_CHANGED,
        key=f"{alert.pk}:{event}",
        subject=f"Alert/{alert.pk}",
        payload={"event": event},
    )
