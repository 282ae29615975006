"""Notify, then pull: re-read only the patient's address from the EHR just before the hand-off to the commerce
backend (issue 10 "Backend services", ADR 0022).

The signed order holds the ship-to the EHR had at sign-off. Where the site enables ``shipto_reread`` (with backend
services), ``shipto_reread`` reads ``Patient/<id>?_elements=address`` with a backend-services token, picks the
address as pre-fill does (``orders.extract.patient_address``) and, when it differs, keeps it in
``Order.ehr_ship_to``, which ``commerce_order_build`` sends instead of the signed one. The signed ``ship_to`` and
``content_hash`` never change, and a ship-to the patient corrected (``Order.patient_ship_to``) is never replaced.
"""

import logging
from typing import Any

from django.db import transaction

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.backend import backend_read
from healthcommerce.ehr.errors import BackendServicesError
from healthcommerce.fulfillment.models import FulfillmentSite
from healthcommerce.orders.extract import Notes, patient_address
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add

logger = logging.getLogger(__name__)

ACTOR = "system:fulfillment"
DONE_KINDS = ("shipto_reread", "shipto_reread_warning")
ADDRESS_KEYS = ("line", "city", "state", "postal_code", "country")
REQUIRED = ("line", "city", "state", "postal_code")


def _normalized(address: dict[str, Any]) -> tuple[Any, ...]:
    """Return ``address`` as comparable values: the ``ADDRESS_KEYS``, stripped and case-folded."""

    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return tuple(norm(v) for v in value if str(v).strip())
        return str(value or "").strip().casefold()

    return tuple(norm(address.get(key)) for key in ADDRESS_KEYS)


def _record(order: Order, *, kind: str, detail: dict[str, Any], ehr_ship_to: dict[str, Any] | None = None) -> None:
    with transaction.atomic():
        if ehr_ship_to is not None:
            Order.objects.filter(pk=order.pk).update(ehr_ship_to=ehr_ship_to)
            order.ehr_ship_to = ehr_ship_to
        order_event_add(order=order, kind=kind, actor=ACTOR, detail=detail)
        audit_record(actor=ACTOR, action=f"fulfillment.{kind}", target=f"Order/{order.pk}", detail=detail)
    # The event names the outcome only: never an address value (docs/reliability.md "No PHI in logs").
    logger.info("shipto reread order=%s %s %s", order.reference, kind, detail)


def _warn(order: Order, reason: str) -> None:
    _record(order, kind="shipto_reread_warning", detail={"reason": reason})


def shipto_reread(order: Order) -> None:
    """Re-read the patient's address for ``order`` (site with ``shipto_reread``) once, before its hand-off.

    Outcomes, each recorded as an order event and an audit row ``fulfillment.<kind>`` (no address values):
    ``shipto_reread`` with ``{"changed": bool}`` (when changed, the new address goes to ``Order.ehr_ship_to`` and
    on ``order``); or ``shipto_reread_warning`` with ``{"reason": ...}`` and the signed ship-to stands:
    ``patient_corrected`` (the patient's correction wins; no read), ``backend_services_off``,
    ``no_usable_address`` (no address with line, city, state and postal code), or the backend's permanent error
    code (``not_found``, ``forbidden``, ``backend_token_refused``...). A site without ``shipto_reread`` reads
    nothing and records nothing; an order that already has one of these events (a retried submit) is not read
    again, so every attempt sends the same address under the same idempotency key. Raises the backend's
    transient ``BackendServicesError`` (5xx, timeout, unreachable) for the outbox to retry the submit.
    """
    site = order.site
    if not FulfillmentSite.of(site).shipto_reread or order.events.filter(kind__in=DONE_KINDS).exists():
        return
    if order.patient_ship_to:
        _warn(order, "patient_corrected")
        return
    if not site.backend_services:
        _warn(order, "backend_services_off")
        return
    try:
        data = backend_read(site, "Patient", order.patient_fhir_id, elements=["address"])
    except BackendServicesError as exc:
        if exc.temporary:
            raise
        _warn(order, exc.code)
        return
    address = patient_address(data, Notes("Patient"))
    if not all(address.get(key) for key in REQUIRED):
        _warn(order, "no_usable_address")
        return
    changed = _normalized(address) != _normalized(order.ship_to or {})
    _record(order, kind="shipto_reread", detail={"changed": changed}, ehr_ship_to=address if changed else None)
