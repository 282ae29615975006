"""Django system checks for fulfillment (``manage.py check --deploy``; ``make deploy-check`` and ``make release``
run it): the configured commerce backend can be built from its settings, and the status webhook secrets, when
set, are Standard Webhooks secrets. Without this, a missing ``MEDUSA_API_KEY`` shows only when the first order
is handed over (docs/reliability.md "Retries and dead letters").
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import check_url
from healthcommerce.fulfillment.backends.inbound import secret_check
from healthcommerce.fulfillment.backends.registry import backend_name, get_backend

# The settings each backend sends requests to; each must pass the outbound rules (https, or http to loopback).
_URL_SETTINGS = {"medusa": "MEDUSA_URL", "webhook": "WEBHOOK_URL"}
_STATUS_SECRETS = ("WEBHOOK_STATUS_SECRET", "MEDUSA_STATUS_SECRET")


@register(Tags.compatibility, deploy=True)
def commerce_backend_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return errors ``healthcommerce.E101`` (``COMMERCE_BACKEND`` unknown, or the backend's settings missing or
    wrong: the message says which), ``E102`` (its URL breaks the outbound rules) and ``E103`` (a status webhook
    secret that is set but not ``whsec_<base64>``). Never puts a secret into a message."""
    errors: list[CheckMessage] = []
    try:
        name = backend_name()
        get_backend(name)
    except ImproperlyConfigured as exc:
        errors.append(Error(f"COMMERCE_BACKEND={settings.COMMERCE_BACKEND!r}: {exc}", id="healthcommerce.E101"))
        name = ""
    url_setting = _URL_SETTINGS.get(name)
    if url_setting:
        try:
            check_url(str(getattr(settings, url_setting)))
        except OutboundRefused:
            errors.append(Error(f"{url_setting} must be https (or http to this machine).", id="healthcommerce.E102"))
    for setting in _STATUS_SECRETS:
        value = str(getattr(settings, setting, "") or "")
        if value:
            try:
                secret_check(value, setting=setting)
            except ImproperlyConfigured as exc:
                errors.append(Error(str(exc), id="healthcommerce.E103"))
    return errors
