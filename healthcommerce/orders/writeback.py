"""Write-back: after sign-off, record in the EHR that the order was signed and sent (issue 10 "Write-back", ADR 0022).

Epic offers no DeviceRequest create, so the record is a FHIR R4 Communication or DocumentReference, chosen per
site (``OrderSite.writeback``; off by default), written with SMART Backend Services (``ehr.backend.backend_create``).
``order_sign`` publishes ``order.writeback`` only for a site that has it on; ``writeback_deliver`` handles it.

The record says who signed the order and when, that it was sent for fulfilment, and the order's opaque reference,
and nothing else: no product, price, payer, payment, purchase link or commerce id, no notes or diagnoses
(``writeback_resource`` builds it field by field; tests/orders/test_writeback.py walks what it sends).
Idempotent: the resource carries the identifier ``urn:healthcommerce:order-reference|<reference>`` and is sent as
a conditional create (``If-None-Exist``), so a retry after a create whose answer was lost finds the first one.
"""

import base64
import logging
from datetime import UTC
from typing import Any

from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.models import LOINC
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.ehr.backend import backend_create
from healthcommerce.ehr.errors import BackendServicesError
from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.events import order_for_subject
from healthcommerce.orders.models import Order, OrderSite, Writeback
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import message_done

logger = logging.getLogger(__name__)

ACTOR = "system:writeback"
ORDER_REFERENCE_SYSTEM = "urn:healthcommerce:order-reference"
# LOINC 34109-9 "Note": the generic clinical note document type (LOINC Document Ontology), for a site that files
# the record as a document.
NOTE_TYPE = {"system": LOINC, "code": "34109-9", "display": "Note"}
_REFERENCE_TYPES = ("Practitioner", "PractitionerRole")


class WritebackFailed(HealthcommerceError):
    """The EHR did not take the record. ``code`` is ``writeback_<backend code>`` (``writeback_forbidden``: the site
    did not grant ``system/Communication.c``; ``writeback_server_error``; ``writeback_backend_not_enabled``...);
    ``temporary`` as the backend error's (``transient``): 5xx, 429, timeouts and network errors retry through the
    outbox, the rest dead-letter."""

    code = "writeback_failed"
    status = 502
    message = "The record could not be written into the EHR."

    def __init__(self, *, code: str, temporary: bool) -> None:
        super().__init__(code=code)
        self.temporary = temporary


def _signer(order: Order) -> dict[str, str] | None:
    """Return a Reference to the signing clinician's ``fhirUser`` (``Practitioner/<id>``, relative or absolute),
    or None when it is not a Practitioner or PractitionerRole (then the record names no sender or author)."""
    user = (order.signed_by or order.practitioner_reference).strip()
    parts = user.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in _REFERENCE_TYPES and parts[-1]:
        return {"reference": user}
    return None


def writeback_text(order: Order) -> str:
    """Return the sentence the record carries: signed by whom (the practitioner's name as signed) and when (UTC,
    ISO 8601), sent for fulfilment, the order's opaque reference. No item, payer, price or link."""
    signed_at = (order.signed_at or timezone.now()).astimezone(UTC).isoformat(timespec="seconds")
    who = order.practitioner_name or "the ordering practitioner"
    return f"Order {order.reference} was signed by {who} at {signed_at} and sent for fulfilment through healthcommerce."


def _identifier(order: Order) -> list[dict[str, str]]:
    return [{"system": ORDER_REFERENCE_SYSTEM, "value": order.reference}]


def writeback_resource(order: Order, kind: str) -> dict[str, Any]:
    """Return the FHIR R4 resource recording that ``order`` was signed and sent, for ``kind``
    (``Writeback.COMMUNICATION`` or ``Writeback.DOCUMENT_REFERENCE``).

    Communication (R4 Communication): ``status`` completed, ``subject`` the Patient, ``about`` the request,
    ``sent`` now, ``sender`` the signer's fhirUser when it is a Practitioner(Role), ``payload`` the text.
    DocumentReference (R4 DocumentReference): ``status`` current, ``type`` LOINC 34109-9, ``subject``, ``date``,
    ``author``, ``context.related`` the request, one ``text/plain`` attachment with the text (base64). Both carry
    the identifier ``urn:healthcommerce:order-reference|<reference>``. Raises ``ValueError`` for another ``kind``.
    """
    now = timezone.now().isoformat(timespec="seconds")
    subject = {"reference": f"Patient/{order.patient_fhir_id}"}
    request = [{"reference": order.request_reference}] if order.request_reference else []
    signer = _signer(order)
    text = writeback_text(order)
    if kind == Writeback.COMMUNICATION:
        resource: dict[str, Any] = {
            "resourceType": "Communication",
            "identifier": _identifier(order),
            "status": "completed",
            "subject": subject,
            "sent": now,
            "payload": [{"contentString": text}],
        }
        return resource | ({"about": request} if request else {}) | ({"sender": signer} if signer else {})
    if kind == Writeback.DOCUMENT_REFERENCE:
        attachment = {
            "contentType": "text/plain",
            "data": base64.b64encode(text.encode()).decode(),
            "title": f"Order {order.reference} signed and sent",
        }
        resource = {
            "resourceType": "DocumentReference",
            "identifier": _identifier(order),
            "status": "current",
            "type": {"coding": [NOTE_TYPE], "text": "Order signed and sent"},
            "subject": subject,
            "date": now,
            "description": f"Order {order.reference} signed and sent for fulfilment",
            "content": [{"attachment": attachment}],
        }
        resource |= {"context": {"related": request}} if request else {}
        return resource | ({"author": [signer]} if signer else {})
    raise ValueError(f"Unknown write-back kind {kind!r}.")


def writeback_wanted(site: EHRSite) -> bool:
    """Whether ``site`` writes a record back after sign-off (``OrderSite.writeback`` other than off)."""
    return OrderSite.of(site).writeback in (Writeback.COMMUNICATION, Writeback.DOCUMENT_REFERENCE)


def _order(message: OutboxMessage) -> Order:
    return order_for_subject(message.subject).select_related("site").get()


def writeback_deliver(message: OutboxMessage) -> None:
    """Handle ``order.writeback``: create the site's record in the EHR (``backend_create``, a conditional create
    on the order-reference identifier), then, in one transaction, mark the row done with ``Type/id`` and add a
    ``writeback_done`` order event and an ``ehr.writeback`` audit row.

    Never changes the order's status. A site whose write-back was turned off since, or an order cancelled before
    the record went, is done with nothing written (result ``skipped:<why>``). Raises ``WritebackFailed``
    (temporary or not, as the backend error) for the outbox to retry or dead-letter (``writeback_dead``).
    """
    order = _order(message)
    site = order.site
    skipped = "writeback_off" if not writeback_wanted(site) else ""
    skipped = "order_cancelled" if order.status == Order.Status.CANCELLED else skipped
    if skipped:
        message_done(message, result=f"skipped:{skipped}")
        return
    resource = writeback_resource(order, OrderSite.of(site).writeback)
    resource_type = resource["resourceType"]
    condition = f"identifier={ORDER_REFERENCE_SYSTEM}|{order.reference}"
    try:
        new_id = backend_create(site, resource, if_none_exist=condition)
    except BackendServicesError as exc:
        raise WritebackFailed(code=f"writeback_{exc.code}"[:60], temporary=exc.temporary) from exc
    created = f"{resource_type}/{new_id}"
    with transaction.atomic():
        if not message_done(message, result=created):
            return
        order_event_add(order=order, kind="writeback_done", actor=ACTOR, detail={"resource": created})
        detail = {"resource": created}
        audit_record(actor=ACTOR, action="ehr.writeback", target=f"Order/{order.pk}", where=site.iss, detail=detail)
    logger.info("writeback order=%s wrote %s", order.reference, resource_type)


def writeback_dead(*, message: OutboxMessage, code: str) -> str:
    """On a dead-lettered ``order.writeback`` row (in its transaction): add a ``writeback_failed`` order event with
    the ``code`` (the order itself is untouched). Returns the alert's context, ``order=<reference> site=<id>``."""
    order = _order(message)
    detail = {"code": code, "attempts": message.attempts, "writeback": OrderSite.of(order.site).writeback}
    order_event_add(order=order, kind="writeback_failed", actor=ACTOR, detail=detail)
    return f"order={order.reference} site={order.site_id}"
