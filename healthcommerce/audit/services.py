"""Writing audit rows; call these inside the service that does the audited action (docs/reliability.md "Audit")."""

from collections.abc import Sequence
from typing import Any

from healthcommerce.audit.models import AuditEvent


def audit_record(
    *,
    actor: str,
    action: str,
    target: str = "",
    where: str = "",
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Insert and return one ``AuditEvent``. ``detail`` must hold no PHI (ids, counts, status codes only)."""
    return AuditEvent.objects.create(
        actor=actor[:300],
        action=action,
        target=target[:300],
        where=where[:300],
        outcome=outcome[:80],
        detail=detail or {},
    )


def audit_record_many(*, records: Sequence[dict[str, Any]]) -> list[AuditEvent]:
    """Insert one ``AuditEvent`` per item of ``records`` (each holds ``audit_record``'s keyword arguments) in one
    statement and return them; for a service that did the same action on many targets in one transaction
    (``fulfillment_submit_batch``). Same rule: ``detail`` holds no PHI."""
    return AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=r["actor"][:300],
                action=r["action"],
                target=r.get("target", "")[:300],
                where=r.get("where", "")[:300],
                outcome=r.get("outcome", "success")[:80],
                detail=r.get("detail") or {},
            )
            for r in records
        ]
    )
