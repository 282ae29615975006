from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Integration health (ADR 0018): stores ``core.metrics`` buckets, evaluates alert rules from beat, delivers
    alerts through the outbox (email and a signed webhook), serves ``/metrics`` and the per-site dashboard."""

    name = "healthcommerce.monitoring"
    label = "monitoring"
    verbose_name = "Integration health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Install the bucket sink, flush at the end of each request and task, and subscribe the deliveries."""
        from celery.signals import task_postrun
        from django.core.signals import request_finished

        from healthcommerce.core import metrics
        from healthcommerce.monitoring.services import buckets_store
        from healthcommerce.outbox.subscribers import subscribe

        metrics.sink_set(buckets_store)
        request_finished.connect(metrics.flush_on_signal, dispatch_uid="monitoring.flush.request")
        task_postrun.connect(metrics.flush_on_signal, dispatch_uid="monitoring.flush.task", weak=False)
        for channel in ("email", "webhook"):
            subscribe(
                name=f"monitoring.alert_{channel}",
                topic="monitoring.alert_changed",
                handler=f"healthcommerce.monitoring.delivery.alert_deliver_{channel}",
            )
