"""Order look-ups for clinician pages and the admin."""

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from healthcommerce.audit.selectors import PatientScope
from healthcommerce.core.errors import NotFound
from healthcommerce.ehr.models import Launch
from healthcommerce.orders.models import Order, OrderEvent

# The timeline kinds the payment column reads (written by purchaselinks through ``order_event_add``), strongest
# first: a refund outranks the success before it, a success outranks earlier failures.
PAYMENT_STATES = (
    ("payment_refunded", "Refunded"),
    ("payment_succeeded", "Paid"),
    ("patient_confirmed", "Confirmed, no payment"),
    ("payment_failed", "Payment failed"),
    ("link_sent", "Awaiting patient"),
)


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


def orders_with_payment(queryset: QuerySet[Order]) -> QuerySet[Order]:
    """Return ``queryset`` with one boolean per kind in ``PAYMENT_STATES`` (``has_<kind>``), read by
    ``order_payment_label``; one query for the whole page (``EXISTS`` subqueries on ``OrderEvent``).

    The order has no payment field: what the patient did is on its timeline. (The clinician-facing status being
    built from the same facts is meant to replace this after merge.)"""
    return queryset.annotate(
        **{
            f"has_{kind}": Exists(OrderEvent.objects.filter(order=OuterRef("pk"), kind=kind))
            for kind, _ in PAYMENT_STATES
        }
    )


def order_payment_label(order: Order) -> str:
    """Return what the patient has done about paying, for the admin's order list: ``Refunded``, ``Paid``,
    ``Confirmed, no payment`` (confirmed with nothing to pay), ``Payment failed``, ``Awaiting patient`` (link sent),
    or ``-`` (no link yet). Reads the ``has_<kind>`` annotations of ``orders_with_payment`` when present, else the
    timeline (one query)."""
    if all(hasattr(order, f"has_{kind}") for kind, _ in PAYMENT_STATES):
        present = {kind for kind, _ in PAYMENT_STATES if getattr(order, f"has_{kind}")}
    else:
        kinds = [kind for kind, _ in PAYMENT_STATES]
        present = set(order.events.filter(kind__in=kinds).values_list("kind", flat=True))
    for kind, label in PAYMENT_STATES:
        if kind in present:
            return label
    return "-"
