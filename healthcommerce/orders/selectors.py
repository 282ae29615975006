"""Order look-ups for clinician pages."""

from typing import Any

from healthcommerce.audit.selectors import PatientScope
from healthcommerce.core.errors import NotFound
from healthcommerce.ehr.models import Launch
from healthcommerce.orders.models import Order


def order_access(*, launch: Launch, order_id: Any) -> Order:
    """Return the order if it belongs to the launch's site and patient; ``NotFound`` for missing and foreign alike."""
    order = (
        Order.objects.select_related("product", "site")
        .filter(pk=order_id, site=launch.site, patient_fhir_id=launch.patient_id)
        .first()
    )
    if order is None:
        raise NotFound("This order is not available in this launch.")
    return order


def orders_for_patient(*, launch: Launch) -> list[Order]:
    """Return this patient's orders at this site that are past draft (most recent first), for the status list."""
    return list(
        Order.objects.select_related("product")
        .filter(site=launch.site, patient_fhir_id=launch.patient_id)
        .exclude(status=Order.Status.DRAFT)
        .order_by("-created_at")[:50]
    )


def patient_audit_scope(patient_id: str) -> PatientScope:
    """Return the audit targets and launches of the patient with FHIR id ``patient_id`` at any site: ``Order/<id>``
    of their orders and the ids of their launches (registered with ``audit.selectors.patient_resolver_add`` for
    the per-patient FHIR AuditEvent export)."""
    orders = Order.objects.filter(patient_fhir_id=patient_id).values_list("pk", flat=True)
    launches = Launch.objects.filter(patient_id=patient_id).values_list("pk", flat=True)
    return PatientScope(
        targets=frozenset(f"Order/{pk}" for pk in orders), launch_ids=frozenset(str(pk) for pk in launches)
    )
