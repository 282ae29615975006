"""Django system checks for payments (``manage.py check --deploy``; ``make deploy-check`` and ``make release`` run
it): Stripe's settings, when payments are on, can work, and its URLs pass the outbound rules (docs/adr/0012).
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import check_url

_KEY_PREFIXES = ("sk_", "rk_")


@register(Tags.compatibility, deploy=True)
def stripe_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return errors ``healthcommerce.E111`` (``STRIPE_API_BASE`` or ``STRIPE_JS_URL`` neither https nor http to
    this machine), ``E112`` (``STRIPE_SECRET_KEY`` set but not a secret or restricted key) and ``E113`` (payments
    on without ``STRIPE_PUBLISHABLE_KEY``, or without a ``whsec_`` ``STRIPE_WEBHOOK_SECRET``: no payment would
    ever be recorded). Nothing when ``STRIPE_SECRET_KEY`` is empty (payments off). Never echoes a secret."""
    errors: list[CheckMessage] = []
    for setting in ("STRIPE_API_BASE", "STRIPE_JS_URL"):
        value = str(getattr(settings, setting, "") or "")
        if value:
            try:
                check_url(value)
            except OutboundRefused:
                errors.append(Error(f"{setting} must be https (or http to this machine).", id="healthcommerce.E111"))
    key = str(settings.STRIPE_SECRET_KEY or "")
    if not key:
        return errors
    if not key.startswith(_KEY_PREFIXES):
        errors.append(
            Error("STRIPE_SECRET_KEY must be a secret (sk_) or restricted (rk_) key.", id="healthcommerce.E112")
        )
    if not str(settings.STRIPE_PUBLISHABLE_KEY or "").startswith("pk_"):
        errors.append(Error("STRIPE_PUBLISHABLE_KEY (pk_) is needed with STRIPE_SECRET_KEY.", id="healthcommerce.E113"))
    if not str(settings.STRIPE_WEBHOOK_SECRET or "").startswith("whsec_"):
        errors.append(
            Error(
                "STRIPE_WEBHOOK_SECRET (whsec_, the endpoint's signing secret) is needed with STRIPE_SECRET_KEY.",
                id="healthcommerce.E113",
            )
        )
    return errors
