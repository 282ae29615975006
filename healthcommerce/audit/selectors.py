"""Reading the audit trail for export (FHIR R4 AuditEvent, ``audit.fhir``): by period and by patient.

The audit app sits below the stages, so it cannot tell which orders or launches belong to a patient. A stage that
can registers a resolver in its ``AppConfig.ready()`` (``patient_resolver_add``; ``orders`` does), the way stages
subscribe to outbox topics.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, QuerySet

from healthcommerce.audit.models import AuditEvent


@dataclass(frozen=True)
class PatientScope:
    """What belongs to one patient: ``targets`` (references such as ``Patient/<id>``, ``Order/<uuid>``) and
    ``launch_ids`` (launch UUIDs as text)."""

    targets: frozenset[str] = field(default_factory=frozenset)
    launch_ids: frozenset[str] = field(default_factory=frozenset)


PatientResolver = Callable[[str], PatientScope]
_RESOLVERS: list[PatientResolver] = []


def patient_resolver_add(resolver: PatientResolver) -> None:
    """Register ``resolver`` (a patient's FHIR id -> ``PatientScope``); registering it again is a no-op."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)


def patient_scope(patient_id: str) -> PatientScope:
    """Return the union of every registered resolver's scope for ``patient_id``, plus ``Patient/<id>`` itself."""
    targets: set[str] = {f"Patient/{patient_id}"}
    launches: set[str] = set()
    for resolver in _RESOLVERS:
        scope = resolver(patient_id)
        targets |= scope.targets
        launches |= scope.launch_ids
    return PatientScope(frozenset(targets), frozenset(launches))


def audit_events(
    *, since: datetime | None = None, until: datetime | None = None, patient_id: str = ""
) -> QuerySet[AuditEvent]:
    """Return the rows recorded in ``[since, until)`` (either end open when ``None``), oldest first; with
    ``patient_id`` only the rows about that patient (target or launch in ``patient_scope``)."""
    rows = AuditEvent.objects.order_by("created_at", "id")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if patient_id:
        scope = patient_scope(patient_id)
        rows = rows.filter(Q(target__in=scope.targets) | Q(launch_id__in=scope.launch_ids))
    return rows
