"""Order look-ups for clinician pages and the admin."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from healthcommerce.audit.selectors import PatientScope
from healthcommerce.catalog.pricing import money_format
from healthcommerce.core.errors import NotFound
from healthcommerce.core.links import https_url
from healthcommerce.ehr.models import Launch
from healthcommerce.orders.models import FulfillmentStatus, Order, OrderEvent

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
        Order.objects.select_related("product", "site", "payer")
        .filter(pk=order_id, site=launch.site, patient_fhir_id=launch.patient_id)
        .first()
    )
    if order is None:
        raise NotFound("This order is not available in this launch.")
    return order


def orders_for_patient(*, launch: Launch) -> list[Order]:
    """Return this patient's orders at this site that are past draft (most recent first, at most 50), for the
    status list; each carries ``clinician_status`` (``order_clinician_status``) and ``tracking``
    (``order_tracking``). Two queries whatever the count (the timelines are prefetched)."""
    orders = list(
        Order.objects.select_related("product")
        .filter(site=launch.site, patient_fhir_id=launch.patient_id)
        .exclude(status=Order.Status.DRAFT)
        .prefetch_related(Prefetch("events", queryset=OrderEvent.objects.order_by("created_at")))
        .order_by("-created_at")[:50]
    )
    for order in orders:
        order.clinician_status = order_clinician_status(order, order.events.all())  # type: ignore[attr-defined]
        order.tracking = order_tracking(order)  # type: ignore[attr-defined]
    return orders


def patient_audit_scope(patient_id: str) -> PatientScope:
    """Return the audit targets and launches of the patient with FHIR id ``patient_id`` at any site: ``Order/<id>``
    of their orders and the ids of their launches (registered with ``audit.selectors.patient_resolver_add`` for
    the per-patient FHIR AuditEvent export)."""
    orders = Order.objects.filter(patient_fhir_id=patient_id).values_list("pk", flat=True)
    launches = Launch.objects.filter(patient_id=patient_id).values_list("pk", flat=True)
    return PatientScope(
        targets=frozenset(f"Order/{pk}" for pk in orders), launch_ids=frozenset(str(pk) for pk in launches)
    )


@dataclass(frozen=True)
class ClinicianStatus:
    """Where an order stands, in the clinician's words (``order_clinician_status``).

    ``key`` names the stage (``draft``, ``signed``, ``sent``, ``awaiting_patient``, ``patient_confirmed``,
    ``paid``, ``refunded``, ``shipped``, ``delivered``, ``cancelled``, ``failed``); ``label`` is what the badge
    says ("Paid $139.80"); ``detail`` one sentence more, or ""; ``tone`` the badge's colour: ``waiting`` (someone
    else has to act), ``moving`` (on its way), ``done`` (delivered) or ``stopped`` (cancelled, failed, refunded).
    """

    key: str
    label: str
    detail: str = ""
    tone: str = "waiting"


# Why a purchase link did not go out (``link_not_sent`` events from purchaselinks, ``detail.reason``).
LINK_NOT_SENT = {
    "no_birth_date": "The purchase link was not sent: there is no date of birth to check the patient against.",
    "no_contact_email": "No email was sent: there is no patient email on file.",
    "no_contact_phone": "No text was sent: there is no mobile number on file.",
    "phone_unparseable": "No text was sent: the phone number on file could not be read.",
    "phone_not_mobile": "No text was sent: the phone number on file is not a mobile number.",
    "sms_rejected": "No text was sent: the text provider refused the number.",
    "email_error": "The purchase link email could not be sent yet: it is retried automatically.",
    "sms_error": "The purchase link text could not be sent yet: it is retried automatically.",
}


def _day(event: OrderEvent) -> str:
    return timezone.localtime(event.created_at).strftime("%Y-%m-%d")


def order_clinician_status(order: Order, events: Iterable[OrderEvent] | None = None) -> ClinicianStatus:
    """Return where ``order`` stands for the clinician, decided in this one place from its status, the commerce
    backend's ``fulfillment_status`` and the patient's progress as the purchase-link stage records it on the
    timeline (``link_sent``, ``link_not_sent``, ``patient_confirmed``, ``payment_succeeded``,
    ``payment_refunded`` events: ``purchaselinks`` calls ``orders.transitions.order_event_add``).

    ``events`` are the order's timeline (oldest first); read from the database when not given. The furthest stage
    wins: cancelled or failed, then delivered, shipped, refunded, paid, patient confirmed, awaiting patient (a
    link went out), sent to supplier, signed. A coverage answer the clinic must act on (``COVERAGE_NOTES``: not
    active, member not found, rejected; from ``orders.eligibility``) is added to the detail.
    """
    if order.status == Order.Status.DRAFT:
        return ClinicianStatus("draft", "Draft", "Not signed yet.")
    timeline = list(order.events.all() if events is None else events)
    latest = {event.kind: event for event in timeline}
    status = (
        _stopped(order, latest)
        or _shipping(order, latest)
        or _payment(order, timeline)
        or _patient(order, latest)
        or _handed_over(order, latest)
    )
    return _with_coverage(status, timeline)


# The coverage answers (``orders.eligibility``) the clinician must act on, added to the status's detail.
COVERAGE_NOTES = {
    "coverage_inactive": "The payer says the coverage is NOT active: the patient was offered self-pay.",
    "coverage_not_found": "The payer did not find the member: check the member ID and the name.",
    "coverage_rejected": "The payer rejected the eligibility check: ask your billing office.",
}


def _with_coverage(status: ClinicianStatus, timeline: list[OrderEvent]) -> ClinicianStatus:
    """``status`` with the last coverage answer's note appended when it needs the clinic (``COVERAGE_NOTES``)."""
    answers = [event.kind for event in timeline if event.kind.startswith("coverage_")]
    note = COVERAGE_NOTES.get(answers[-1]) if answers else None
    if not note or status.key in ("cancelled", "failed"):
        return status
    return dataclasses.replace(status, detail=f"{status.detail} {note}".strip())


def _stopped(order: Order, latest: dict[str, OrderEvent]) -> ClinicianStatus | None:
    """Cancelled (by us or the supplier) or failed, else ``None``."""
    if order.status == Order.Status.CANCELLED or order.fulfillment_status == FulfillmentStatus.CANCELLED:
        detail = "Cancelled by the supplier." if "cancelled_by_platform" in latest else ""
        return ClinicianStatus("cancelled", "Cancelled", detail, "stopped")
    if order.status == Order.Status.FAILED:
        return ClinicianStatus(
            "failed",
            "Failed: not sent to the supplier",
            "The supplier could not be reached after repeated tries. Call the supplier, or sign a new order.",
            "stopped",
        )
    return None


def _shipping(order: Order, latest: dict[str, OrderEvent]) -> ClinicianStatus | None:
    """Delivered or shipped (with the day of its timeline event), else ``None``."""
    if order.fulfillment_status == FulfillmentStatus.DELIVERED:
        delivered = latest.get("delivered")
        return ClinicianStatus("delivered", "Delivered", f"On {_day(delivered)}." if delivered else "", "done")
    if order.fulfillment_status == FulfillmentStatus.SHIPPED:
        shipped = latest.get("shipped")
        return ClinicianStatus("shipped", "Shipped", f"On {_day(shipped)}." if shipped else "", "moving")
    return None


def _payment(order: Order, timeline: list[OrderEvent]) -> ClinicianStatus | None:
    """Refunded or paid (the last payment event wins), else ``None``."""
    payments = [e for e in timeline if e.kind in ("payment_succeeded", "payment_refunded")]
    if not payments:
        return None
    last = payments[-1]
    if last.kind == "payment_refunded":
        return ClinicianStatus("refunded", "Refunded", f"On {_day(last)}.", "stopped")
    currency = order.product.currency if order.product else "USD"
    amount = money_format(int(last.detail.get("amount_cents") or 0), currency)
    return ClinicianStatus("paid", f"Paid {amount}", f"The patient paid {amount} on {_day(last)}.", "moving")


def _patient(order: Order, latest: dict[str, OrderEvent]) -> ClinicianStatus | None:
    """Patient confirmed (nothing to pay), or awaiting the patient (a link went out), else ``None``."""
    if "patient_confirmed" in latest or order.fulfillment_status == FulfillmentStatus.CONFIRMED:
        confirmed = latest.get("patient_confirmed")
        detail = f"The patient confirmed on {_day(confirmed)}; nothing to pay." if confirmed else ""
        return ClinicianStatus("patient_confirmed", "Patient confirmed", detail, "moving")
    if "link_sent" in latest:
        sent = latest["link_sent"]
        how = "by text" if sent.detail.get("channel") == "sms" else "by email"
        detail = f"Purchase link sent {how} on {_day(sent)}; the patient has not confirmed yet."
        return ClinicianStatus("awaiting_patient", "Awaiting patient", detail)
    return None


def _handed_over(order: Order, latest: dict[str, OrderEvent]) -> ClinicianStatus:
    """Sent to the supplier (with why no link went out, if none did), else signed."""
    if order.status in (Order.Status.SUBMITTED, Order.Status.FULFILLED) or order.commerce_backend:
        not_sent = latest.get("link_not_sent")
        detail = LINK_NOT_SENT.get(str(not_sent.detail.get("reason")), "") if not_sent else ""
        return ClinicianStatus("sent", "Sent to supplier", detail or "The purchase link is on its way to the patient.")
    return ClinicianStatus("signed", "Signed", "On its way to the supplier.")


@dataclass(frozen=True)
class ShipTo:
    """The address an order ships to and where it came from (``order_ship_to``): ``address`` in
    ``Order.ship_to`` shape; ``source`` is ``signed``, ``patient`` or ``ehr``; ``note`` says so for the clinician
    ("corrected by the patient on 2026-12-06"); ``signed`` is the signed address when it no longer applies."""

    address: dict[str, Any]
    source: str
    note: str = ""
    signed: dict[str, Any] | None = None


def order_ship_to(order: Order, events: Iterable[OrderEvent] | None = None) -> ShipTo:
    """Return the ship-to ``order`` will actually go to (``Order.current_ship_to``) and why, for the clinician."""
    address = order.current_ship_to
    if address == (order.ship_to or {}):
        return ShipTo(address, "signed")
    timeline = list(order.events.all() if events is None else events)
    source, kind, who = (
        ("patient", "ship_to_changed_by_patient", "Corrected by the patient")
        if address is order.patient_ship_to
        else ("ehr", "shipto_reread", "Updated from the EHR")
    )
    changed = [e for e in timeline if e.kind == kind]
    return ShipTo(address, source, f"{who} on {_day(changed[-1])}" if changed else who, order.ship_to)


@dataclass(frozen=True)
class Tracking:
    """How a shipment is tracked, for display: empty parts are "" and ``url`` is set only when it is https."""

    carrier: str
    number: str
    url: str


def order_tracking(order: Order) -> Tracking | None:
    """Return the order's tracking (carrier, number, a link only when https: ``core.links.https_url``), or None
    when there is nothing to show."""
    if not (order.tracking_number or order.carrier or order.tracking_url):
        return None
    return Tracking(order.carrier.strip(), order.tracking_number.strip(), https_url(order.tracking_url))


def orders_with_payment(queryset: QuerySet[Order]) -> QuerySet[Order]:
    """Return ``queryset`` with one boolean per kind in ``PAYMENT_STATES`` (``has_<kind>``), read by
    ``order_payment_label``; one query for the whole page (``EXISTS`` subqueries on ``OrderEvent``).

    The order has no payment field: what the patient did is on its timeline, the same events
    ``order_clinician_status`` reads; this column keeps a failed payment visible after the order moves on."""
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
