"""Django system checks for fulfillment (``manage.py check --deploy``; ``make deploy-check`` and ``make release``
run it): every configured commerce backend checks its own options (``CommerceBackend.check``), the one
``COMMERCE_BACKEND`` selects fully. Without this, a missing ``MEDUSA_API_KEY`` shows only when the first order is
handed over (docs/reliability.md "Retries and dead letters").
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.fulfillment.backends.registry import backend_config, backend_name, backend_names


@register(Tags.compatibility, deploy=True)
def commerce_backend_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return each configured backend's ``check(options, selected=...)`` messages (``healthcommerce.E101``
    options missing or wrong, ``E102`` a URL the outbound rules refuse, ``E103`` a malformed status webhook
    secret), plus ``E101`` when ``COMMERCE_BACKEND`` names no configured backend or an entry names no class.
    Never puts a secret into a message."""
    errors: list[CheckMessage] = []
    try:
        selected = backend_name()
    except ImproperlyConfigured as exc:
        errors.append(Error(f"COMMERCE_BACKEND={settings.COMMERCE_BACKEND!r}: {exc}", id="healthcommerce.E101"))
        selected = ""
    for name in backend_names():
        try:
            backend_class, options = backend_config(name)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="healthcommerce.E101"))
            continue
        errors += backend_class.check(options, selected=name == selected)
    return errors
