"""The intake's outbox topic (ADR 0008): a stored FHIR notification names a request; the stage that owns orders
subscribes to it in its ``AppConfig.ready()`` (``orders.apps``) and reads the request on a worker, so the EHR's POST
is answered at once (Subscriptions R5 Backport IG, "rest-hook" channel: answer promptly, do the work later).

Subject ``IntakeMessage/<id>``; payload ``{"focus": "<Type>/<id>", "site": "<EHRSite id>"}`` (ids only, no PHI); the
key is the message's id, so a resend (same subscription and event number: the same stored message) publishes
nothing new.
"""

from django.db.models import QuerySet

from healthcommerce.intake.models import IntakeMessage

TOPIC_FHIR_NOTIFICATION = "intake.fhir_notification"


def intake_message_subject(message: IntakeMessage) -> str:
    """Return the outbox ``subject`` of ``message``: ``IntakeMessage/<id>``."""
    return f"IntakeMessage/{message.pk}"


def intake_message_for_subject(subject: str) -> "QuerySet[IntakeMessage]":
    """Return the messages (zero or one) an outbox ``subject`` (``IntakeMessage/<id>``) names, as a queryset."""
    return IntakeMessage.objects.filter(pk=subject.removeprefix("IntakeMessage/"))
