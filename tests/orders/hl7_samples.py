"""HL7 v2 order messages for the orders stage's intake tests, written from HL7 v2.5.1 chapter 4 (ORM^O01 with RQD for
DME, OML^O21 with OBR for a lab kit) the way an Epic outbound interface sends them, and the stored message and site
a handler gets (``intake_context``): the real ``IntakeMessage`` and ``IntakeSite`` rows, no listener."""

from typing import Any

import hl7

from healthcommerce.ehr.models import EHRSite
from healthcommerce.intake.models import IntakeMessage, IntakeSite
from healthcommerce.intake.registry import Hl7Context

SENDER = "EPIC^SANDBOXHOSP"


def segment(name: str, fields: dict[int, str]) -> str:
    """One segment's ER7 text with ``fields`` (``{field number: value}``) at their places, the rest empty."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name, *values])


# ORM^O01 (v2.5.1 4.4.1): a CPAP (HCPCS E0601) as an Epic DME supply order, RQD carrying the item.
ORM_CPAP = [
    "MSH|^~\\&|EPIC|SANDBOXHOSP|HEALTHCOMMERCE|HC|20261206101500||ORM^O01^ORM_O01|MSG00001|P|2.5.1",
    "PID|1||E1234567^^^EPIC^MR~pat014^^^EPICFHIR^FHIR||ROOSEVELT^THEODOR^ALAN^^MR^^L||19460704|M|||"
    "7525 COLSHIRE DR^STE 200^MCLEAN^VA^22102^USA^H||^PRN^PH^^1^703^5550100~^NET^Internet^teddy@example.org|"
    "^WPN^PH^^^703^5550199",
    "PV1|1|O|CLINIC^^^SANDBOXHOSP",
    segment("IN1", {1: "1", 2: "MCRB^Medicare Part B", 3: "12345^^^^NIIP", 4: "MEDICARE PART B", 36: "10A3D58WH1600"}),
    "ORC|NW|PLC-1001^EPIC||GRP-77^EPIC|||^^^20261206^^R||20261206101200|||1234567893^HALE^ANN^^^DR^MD^^NPI^L^^^NPI",
    "RQD|1|E0601^Continuous positive airway pressure (CPAP) device^HCPCS|||1|EA",
    "NTE|1||Patient reports snoring and daytime sleepiness",
    "DG1|1|I10|G47.33^Obstructive sleep apnea^I10||20261201|A",
]

# OML^O21 (v2.5.1 4.4.6): a FIT kit (LOINC 29771-3) as a lab order, OBR carrying the item, TQ1 the quantity.
OML_FIT = [
    "MSH|^~\\&|EPIC|SANDBOXHOSP|HEALTHCOMMERCE|HC|20261206111500-0500||OML^O21^OML_O21|MSG00002|P|2.5.1",
    "PID|1||E7654321^^^EPIC^MR||LOPEZ^CAMILA^^^^^L||19870912|F|||12 ELM ST^^RICHMOND^VA^23219^US^H||"
    "^PRN^CP^^1^804^5550123~^NET^Internet^camila.lopez@example.org",
    segment("IN1", {1: "1", 2: "BRHP", 3: "BRHP01^^^^NIIP", 4: "BLUE RIDGE HEALTH PLAN", 49: "BRH987654321^^^BRHP"}),
    "ORC|NW|PLC-2002^EPIC|||||||20261206111000-0500|||1987654321^GREEN^RUTH^^^^^^NPI",
    "TQ1|1|1",
    "OBR|1|PLC-2002^EPIC||29771-3^Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay^LN",
    "OBX|1|ST|8302-2^Height^LN||Observation text that must stay out",
    "ZPV|1|site specific",
]


def message_text(lines: list[str]) -> str:
    """The ER7 text of ``lines`` (segments separated by carriage returns, HL7 v2.5.1 2.5.4)."""
    return "\r".join(lines)


def replace(lines: list[str], segment: str, new: str | None) -> list[str]:
    """``lines`` with the first ``segment`` line replaced by ``new`` (dropped when None)."""
    out, done = [], False
    for line in lines:
        if not done and line.split("|", 1)[0] == segment:
            done = True
            if new is not None:
                out.append(new)
            continue
        out.append(line)
    return out


def intake_site(site: EHRSite, **settings: Any) -> IntakeSite:
    """The site's intake settings, HL7 enabled for EPIC/SANDBOXHOSP, with ``settings`` overrides."""
    row = IntakeSite.of(site)
    values = {"hl7_enabled": True, "hl7_sending_application": "EPIC", "hl7_sending_facility": "SANDBOXHOSP"}
    for name, value in {**values, **settings}.items():
        setattr(row, name, value)
    row.save()
    return row


def intake_context(site: EHRSite, text: str, **settings: Any) -> tuple[Any, Hl7Context]:
    """Store ``text`` as the intake core does (an ``IntakeMessage`` with its raw copy) and return the parsed
    message and the handler's context."""
    parsed = hl7.parse(text)
    msh = parsed.segment("MSH")
    message = IntakeMessage.objects.create(
        site=site,
        sender=SENDER,
        control_id=str(msh[10]),
        message_type="^".join(str(msh[9]).split("^")[:2]),
        raw=text,
    )
    return parsed, Hl7Context(message=message, settings=intake_site(site, **settings), warnings=[])


def hl7_orders_deliver() -> int:
    """Deliver every waiting ``order.hl7_received`` row as the ``orders.hl7_order`` worker does (``order_hl7_create``
    creates each accepted NW group's order); return how many rows were delivered."""
    from healthcommerce.orders.events import TOPIC_HL7_ORDER
    from healthcommerce.outbox.models import OutboxMessage
    from healthcommerce.outbox.services import outbox_deliver

    waiting = OutboxMessage.objects.filter(topic=TOPIC_HL7_ORDER, status=OutboxMessage.Status.PENDING)
    pks = list(waiting.order_by("created_at").values_list("pk", flat=True))
    for pk in pks:
        outbox_deliver(message_id=pk)
    return len(pks)
