"""Commerce backends by name; ``settings.COMMERCE_BACKEND`` picks the default.

See docs/architecture.md "Commerce backends".
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from healthcommerce.fulfillment.backends.base import CommerceBackend

BACKENDS: dict[str, str] = {
    "local": "healthcommerce.fulfillment.backends.local.backend.LocalCommerceBackend",
    "medusa": "healthcommerce.fulfillment.backends.medusa.backend.MedusaCommerceBackend",
    "webhook": "healthcommerce.fulfillment.backends.webhook.backend.WebhookCommerceBackend",
}


def backend_name(name: str | None = None) -> str:
    """Return ``name`` or ``settings.COMMERCE_BACKEND``; raise ``ImproperlyConfigured`` if it is not registered."""
    name = name or settings.COMMERCE_BACKEND
    if name not in BACKENDS:
        raise ImproperlyConfigured(f"Unknown commerce backend {name!r}; known: {', '.join(sorted(BACKENDS))}.")
    return name


def get_backend(name: str | None = None) -> CommerceBackend:
    """Return a new instance of the backend registered as ``name`` (default ``settings.COMMERCE_BACKEND``)."""
    backend_class = import_string(BACKENDS[backend_name(name)])
    backend: CommerceBackend = backend_class()
    return backend
