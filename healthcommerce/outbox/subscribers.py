"""Who handles which topic: stages subscribe to the topic of the stage before them (ADR 0008).

A subscriber registers in its app's ``AppConfig.ready()``; ``outbox_publish`` writes one row per subscriber
of the topic. ``handler`` and ``on_dead`` are dotted paths, imported when a row is delivered, so the outbox
never imports a stage.
"""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Subscriber:
    """``name`` (``fulfillment.submit``), the ``topic`` it handles, ``handler`` (dotted path of a callable taking
    ``message``) and optional ``on_dead`` (dotted path of a callable taking ``message`` and ``code``, run in the
    dead-letter transaction)."""

    name: str
    topic: str
    handler: str
    on_dead: str = ""


_SUBSCRIBERS: dict[str, Subscriber] = {}


def subscribe(*, name: str, topic: str, handler: str, on_dead: str = "") -> None:
    """Register ``name`` for ``topic``. Registering the same subscriber again is a no-op; another definition
    under a used name raises ``ImproperlyConfigured``."""
    subscriber = Subscriber(name=name, topic=topic, handler=handler, on_dead=on_dead)
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
