"""Commerce backends by name, derived from ``settings.COMMERCE_BACKENDS`` (configured like Django's ``CACHES``:
each entry names the class and its options); ``settings.COMMERCE_BACKEND`` picks the one that takes new orders.

See docs/architecture.md "Commerce backends" and docs/extending.md "Add a commerce backend".
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from healthcommerce.fulfillment.backends.base import CommerceBackend


def backend_names() -> list[str]:
    """Return the names of the configured backends (the keys of ``settings.COMMERCE_BACKENDS``), sorted."""
    return sorted(getattr(settings, "COMMERCE_BACKENDS", {}))


def backend_name(name: str | None = None) -> str:
    """Return ``name`` or ``settings.COMMERCE_BACKEND``; raise ``ImproperlyConfigured`` if it is not configured."""
    name = name or settings.COMMERCE_BACKEND
    if name not in backend_names():
        raise ImproperlyConfigured(f"Unknown commerce backend {name!r}; known: {', '.join(backend_names())}.")
    return name


def backend_config(name: str) -> tuple[type[CommerceBackend], dict[str, Any]]:
    """Return the class and the ``OPTIONS`` of configured backend ``name``. Raises ``ImproperlyConfigured`` for
    an unknown name, an entry without ``BACKEND``, or a ``BACKEND`` that cannot be imported."""
    entry = settings.COMMERCE_BACKENDS[backend_name(name)]
    try:
        backend_class = import_string(entry["BACKEND"])
    except (KeyError, ImportError) as exc:
        raise ImproperlyConfigured(f"COMMERCE_BACKENDS[{name!r}] names no importable BACKEND class.") from exc
    return backend_class, dict(entry.get("OPTIONS") or {})


def get_backend(name: str | None = None) -> CommerceBackend:
    """Return a new instance of the backend configured as ``name`` (default ``settings.COMMERCE_BACKEND``), built
    with its ``OPTIONS``. Raises ``ImproperlyConfigured`` (unknown name, missing or wrong options)."""
    backend_class, options = backend_config(backend_name(name))
    return backend_class(options)


def backend_reports_status(backend: CommerceBackend) -> bool:
    """Whether ``backend`` can be asked for an order's status: its class overrides ``CommerceBackend.status``."""
    return type(backend).status is not CommerceBackend.status
