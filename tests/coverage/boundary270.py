"""The clearinghouse boundary: what a 270 may carry, and the check the commerce-boundary property test
(tests/fulfillment/boundary.py ``fulfil``) runs on every eligibility request an example sends.

A 270 (X12 005010X279A1) carries only the envelope, the payer (2100A), the provider (2100B) and the subscriber
(2100C: name, birth date, member id), the service date and the service type. So the only segments allowed are
``SEGMENTS``, the only NM1 entity codes ``PR`` (payer), ``1P`` (provider) and ``IL`` (subscriber), and none of the
values planted in the chart (diagnoses, notes, request text, extensions ...) may appear, apart from the member's
own identifying values, which are what the transaction needs (``allowed_values``)."""

import re

from healthcommerce.orders.models import Order
from tests.fulfillment.boundary import Sent, distinctive, leaks

SEGMENTS = frozenset({"ISA", "GS", "ST", "BHT", "HL", "NM1", "TRN", "DMG", "DTP", "EQ", "SE", "GE", "IEA"})
ENTITIES = frozenset({"PR", "1P", "IL"})


def allowed_values(order: Order) -> list[str]:
    """The order's values a 270 may carry: the member's name parts, birth date (ISO and CCYYMMDD), member id, the
    payer's id and name, the practitioner's NPI."""
    birth = order.patient_birth_date
    values = [*order.patient_name.split(), order.patient_name, order.payer_member_id, order.practitioner_npi]
    if birth:
        values += [birth.isoformat(), birth.strftime("%Y%m%d")]
    if order.payer is not None:
        values += [order.payer.payer_id, order.payer.name]
    return [str(value) for value in values if value]


def _segments(body: str) -> list[list[str]]:
    if len(body) < 106 or not body.startswith("ISA"):
        return []
    element, terminator = body[3], body[105]
    return [segment.strip().split(element) for segment in body.split(terminator) if segment.strip()]


def problems(order: Order, sent: list[Sent], clinical: list[str]) -> list[str]:
    """Return what is wrong with the requests ``sent`` for ``order``'s eligibility check: a body that is not a 270,
    a segment or an NM1 entity outside the allowlist, or a value of ``clinical`` (minus ``allowed_values``)."""
    found: list[str] = []
    allowed = allowed_values(order)
    looked_for = distinctive(clinical, allowed)
    for request in sent:
        body = request.body.decode("utf-8", "replace")
        where = f"clearinghouse {request.method} {request.url.rsplit('/', 1)[-1]}"
        segments = _segments(body)
        if not segments:
            found.append(f"{where}: not an X12 interchange")
            continue
        outside = sorted({segment[0] for segment in segments} - SEGMENTS)
        if outside:
            found.append(f"{where}: segments outside the allowlist: {outside}")
        entities = sorted({segment[1] for segment in segments if segment[0] == "NM1"} - ENTITIES)
        if entities:
            found.append(f"{where}: NM1 entities outside the allowlist: {entities}")
        text = body + " " + " ".join(f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "authorization")
        for value in sorted(allowed, key=len, reverse=True):  # the member's own values may be sentinels: they go
            text = re.sub(re.escape(value), " ", text, flags=re.IGNORECASE)
        found += [f"{where} carries {value!r}" for value in leaks(text, looked_for)]
    return found


def sent_270(sent: list[Sent]) -> list[Sent]:
    """The requests of ``sent`` that went to a clearinghouse's X12 endpoint (the stand-in's ``/x12``)."""
    return [request for request in sent if request.url.endswith("/x12")]
