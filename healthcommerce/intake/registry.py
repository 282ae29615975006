"""What the intake does with a message's content: the stage that owns the content registers a handler here, in its
``AppConfig.ready()``, the way stages subscribe to the outbox (docs/style.md 16). The intake imports no stage.

An HL7 v2 ACK has to say whether the *content* was accepted (HL7 v2.5.1 2.9.2 "original acknowledgment mode": the
receiving application answers AA, AE or AR), so the orders stage's handler runs inside the transaction that stores
the message (ADR 0024): store first, decide, then answer. The FHIR notification's handler, by contrast, runs later
on a worker through the outbox (``intake.fhir_notification``), because the notification names resources only.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # pragma: no cover - types only
    from healthcommerce.intake.models import IntakeMessage, IntakeSite

# MSA-1 codes (HL7 v2.5.1 Table 0008).
ACCEPT, ERROR, REJECT = "AA", "AE", "AR"


@dataclass(frozen=True)
class Outcome:
    """What a handler decided: ``code`` (``AA``, ``AE`` or ``AR``), ``text`` (for MSA-3/ERR-8: what to fix, no PHI),
    ``location`` (``"PID-11"``, ``"ORC-1"``: the segment and field, for ERR-2) and ``order`` (the reference of the
    order created or changed, ``HC-...``, "" when none)."""

    code: str
    text: str = ""
    location: str = ""
    order: str = ""


@dataclass(frozen=True)
class Hl7Context:
    """What a handler gets besides the parsed message: the stored ``message`` (``IntakeMessage``, already saved in
    this transaction), the sending site's ``settings`` (``IntakeSite``: code quirks, PID-13 email repetition,
    ignored Z-segments) and ``warnings``, a list the handler appends element-level warnings to (no PHI)."""

    message: "IntakeMessage"
    settings: "IntakeSite"
    warnings: list[str]


# handler(parsed python-hl7 Message, Hl7Context) -> Outcome
Hl7Handler = Callable[[Any, Hl7Context], Outcome]
_HANDLERS: dict[str, Hl7Handler] = {}


def intake_handler_register(message_type: str, handler: Hl7Handler) -> None:
    """Register ``handler`` for ``message_type`` (MSH-9's first two components, ``"ORM^O01"``). Registering the same
    handler again is a no-op; another one for a registered type raises ``ImproperlyConfigured``."""
    known = _HANDLERS.get(message_type)
    if known is not None and known is not handler:
        raise ImproperlyConfigured(f"An intake handler for {message_type} is already registered.")
    _HANDLERS[message_type] = handler


def intake_handler_unregister(message_type: str) -> None:
    """Forget the handler of ``message_type`` (tests that register a handler of their own); no-op when none."""
    _HANDLERS.pop(message_type, None)


def intake_handler_for(message_type: str) -> Hl7Handler | None:
    """Return the handler of ``message_type`` (``"ORM^O01"``), None when no stage registered one (answered AR)."""
    return _HANDLERS.get(message_type)


def intake_message_types() -> list[str]:
    """Return the registered message types, sorted (the interface specification and the AR text list them)."""
    return sorted(_HANDLERS)
