"""Blank the raw copy of intake messages with the PHI of the orders they created (docs/reliability.md "Retention";
ADR 0024): the message stays (sender, control id, type, ACK, order reference) for audit, its ``raw`` does not."""

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from healthcommerce.intake.models import IntakeMessage


@transaction.atomic
def intake_raw_purge(message_ids: Iterable[Any]) -> int:
    """Blank ``raw`` and set ``raw_purged_at`` of the ``IntakeMessage`` rows ``message_ids`` (ids; unknown ones
    are ignored) not purged yet; return how many were. Idempotent (a purged message is not purged again)."""
    ids = [message_id for message_id in message_ids if message_id]
    if not ids:
        return 0
    rows = IntakeMessage.objects.filter(pk__in=ids, raw_purged_at__isnull=True)
    return rows.update(raw="", raw_purged_at=timezone.now())
