"""Who handles which topic: stages subscribe to the topic of the stage before them (ADR 0008).

A subscriber registers in its app's ``AppConfig.ready()``; ``outbox_publish`` writes one row per subscriber
of the topic. ``handler``, ``on_dead``, ``batch_handler`` and ``batch_if`` are dotted paths, imported when a row
is delivered or published, so the outbox never imports a stage.
"""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Subscriber:
    """``name`` (``fulfillment.submit``), the ``topic`` it handles, ``handler`` (dotted path of a callable taking
    ``message``) and optional ``on_dead`` (dotted path of a callable taking ``message`` and ``code``, run in the
    dead-letter transaction).

    Optional batch delivery (ADR 0014): ``batch_handler`` is the dotted path of a callable taking a list of
    claimed messages and returning ``{message pk: exception}`` for the rows that failed (the others succeeded);
    ``batch_if`` is the dotted path of a callable with no arguments that says whether rows should be delivered
    in batches now (for example only while the configured backend stores many orders in one statement). Rows of
    a subscriber without both are always delivered one per task.

    Optional ``wants``: the dotted path of a callable taking the subjects of the events being published (a list)
    and returning those this subscriber wants a row for; the others get none. For a subscriber that acts on a few
    subjects of a busy topic (the HL7 v2 status back, only for orders that came as HL7 v2). It runs in the
    publisher's transaction: one read-only query at most, whatever the number of events."""

    name: str
    topic: str
    handler: str
    on_dead: str = ""
    batch_handler: str = ""
    batch_if: str = ""
    wants: str = ""


_SUBSCRIBERS: dict[str, Subscriber] = {}


def subscribe(
    *,
    name: str,
    topic: str,
    handler: str,
    on_dead: str = "",
    batch_handler: str = "",
    batch_if: str = "",
    wants: str = "",
) -> None:
    """Register ``name`` for ``topic``. Registering the same subscriber again is a no-op; another definition
    under a used name raises ``ImproperlyConfigured``. ``batch_handler`` and ``batch_if`` go together;
    ``wants`` narrows the subjects it gets rows for (``Subscriber``)."""
    if bool(batch_handler) != bool(batch_if):
        raise ImproperlyConfigured(f"Outbox subscriber {name!r} needs both batch_handler and batch_if, or neither.")
    subscriber = Subscriber(
        name=name,
        topic=topic,
        handler=handler,
        on_dead=on_dead,
        batch_handler=batch_handler,
        batch_if=batch_if,
        wants=wants,
    )
    known = _SUBSCRIBERS.get(name)
    if known is not None and known != subscriber:
        raise ImproperlyConfigured(f"Outbox subscriber {name!r} is already registered differently.")
    _SUBSCRIBERS[name] = subscriber


def subscribers_of(topic: str) -> list[Subscriber]:
    """Return the subscribers of ``topic``, by name."""
    return sorted((s for s in _SUBSCRIBERS.values() if s.topic == topic), key=lambda s: s.name)


def subscriber_named(name: str) -> Subscriber:
    """Return the subscriber ``name``; raise ``ImproperlyConfigured`` when none is registered."""
    try:
        return _SUBSCRIBERS[name]
    except KeyError:
        raise ImproperlyConfigured(f"No outbox subscriber {name!r} is registered.") from None
