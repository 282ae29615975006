"""Writing audit rows; call these inside the service that does the audited action (docs/reliability.md "Audit")."""

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
