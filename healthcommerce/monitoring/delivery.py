"""Alert delivery, one outbox subscriber per channel (``monitoring.alert_email``, ``monitoring.alert_webhook``),
so a failing channel is retried alone (docs/reliability.md "Retries and dead letters").

The email goes to ``ALERT_EMAILS`` through Django's mail; the webhook is a Standard Webhooks message
(``webhook-id`` = the outbox key, stable across retries; ``v1`` HMAC-SHA256 signature by the ``standardwebhooks``
library) POSTed to ``ALERT_WEBHOOK_URL`` with ``ALERT_WEBHOOK_SECRET``. Either is a no-op when not configured.
Both carry the rule, the site label, numbers and the sentence: no PHI.
"""

import json
import logging
import smtplib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.mail import send_mail
from standardwebhooks import Webhook

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session
from healthcommerce.monitoring.errors import AlertDeliveryFailed
from healthcommerce.monitoring.models import Alert
from healthcommerce.outbox.models import OutboxMessage

logger = logging.getLogger(__name__)


def _alert_of(message: OutboxMessage) -> Alert:
    return Alert.objects.get(pk=message.subject.removeprefix("Alert/"))


def alert_subject(alert: Alert, event: str) -> str:
    """Return the email subject: ``[healthcommerce] ALERT <rule> on <site>`` or ``... RESOLVED ...``."""
    word = "ALERT" if event == "opened" else "RESOLVED"
    return f"[healthcommerce] {word} {alert.rule} on {alert.site}"


def alert_body(alert: Alert, event: str) -> str:
    """Return the email text: the sentence, when it opened and (resolved) when it resolved, and where to look."""
    lines = [alert.text, "", f"Rule: {alert.rule}", f"Site: {alert.site}"]
    lines.append(f"Opened: {alert.opened_at:%Y-%m-%d %H:%M:%S} UTC" if alert.opened_at else "Opened: -")
    if event == "resolved" and alert.resolved_at:
        lines.append(f"Resolved: {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC (last value {alert.value:g})")
    lines += [
        "",
        f"Dashboard: {settings.APP_BASE_URL.rstrip('/')}/admin/monitoring/dashboard/?site={quote(alert.site)}",
    ]
    return "\n".join(lines) + "\n"


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    """Return the webhook body: ``{"type": "alert.opened"|"alert.resolved", "timestamp", "data": {...}}``."""
    stamp = (alert.resolved_at if event == "resolved" else alert.opened_at) or datetime.now(UTC)
    return {
        "type": f"alert.{event}",
        "timestamp": stamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "id": str(alert.pk),
            "rule": alert.rule,
            "site": alert.site,
            "status": alert.status,
            "text": alert.text,
            "value": round(alert.value, 3),
            "threshold": alert.threshold,
            "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
    }


def alert_deliver_email(message: OutboxMessage) -> None:
    """Email the alert change to ``ALERT_EMAILS``; raises ``AlertDeliveryFailed`` (temporary) when the relay
    refuses, so the outbox retries with backoff. Sending twice is possible after a crash (at least once)."""
    if not settings.ALERT_EMAILS:
        return
    alert, event = _alert_of(message), message.payload.get("event", "opened")
    try:
        send_mail(alert_subject(alert, event), alert_body(alert, event), None, settings.ALERT_EMAILS)
    except (smtplib.SMTPException, OSError) as exc:
        logger.error("alert email failed alert=%s error=%s", alert.pk, type(exc).__name__)
        raise AlertDeliveryFailed(code="alert_email_failed") from exc


def alert_deliver_webhook(message: OutboxMessage) -> None:
    """POST the signed alert change to ``ALERT_WEBHOOK_URL``. A 2xx is done; 429, 5xx, a timeout or a refused
    connection raise ``AlertDeliveryFailed`` (temporary); any other status is permanent (dead letter)."""
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return
    alert, event = _alert_of(message), message.payload.get("event", "opened")
    body = json.dumps(alert_payload(alert, event), separators=(",", ":"))
    when = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message.idempotency_key,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(settings.ALERT_WEBHOOK_SECRET).sign(
            msg_id=message.idempotency_key, timestamp=when, data=body
        ),
    }
    session = outbound_session(only_origin=url, site="alerts", kind="alert_webhook")
    try:
        response = session.post(url, data=body.encode(), headers=headers, allow_redirects=False)
    except (requests.RequestException, OutboundRefused) as exc:
        raise AlertDeliveryFailed(code=f"alert_webhook_{type(exc).__name__}") from exc
    finally:
        session.close()
    if 200 <= response.status_code < 300:
        return
    temporary = response.status_code == 429 or response.status_code >= 500
    raise AlertDeliveryFailed(code=f"alert_webhook_http_{response.status_code}", temporary=temporary)
