"""Django system checks for the intake (``manage.py check --deploy``; ``make deploy-check`` and ``make release`` run
it): production's HL7 v2 listener speaks MLLP over TLS with client certificates only (issue 20 "HL7 v2 intake"), so
once any of ``HL7_TLS_CERT``, ``HL7_TLS_KEY`` and ``HL7_TLS_CLIENT_CA`` is set, all three must be, naming readable
files. With none set, HL7 v2 intake is off: ``hl7_listen`` says so and listens on nothing (a health system that
takes no HL7 feed deploys without certificates)."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

TLS_SETTINGS = ("HL7_TLS_CERT", "HL7_TLS_KEY", "HL7_TLS_CLIENT_CA")


def tls_configured() -> bool:
    """Return whether any ``HL7_TLS_*`` setting is set (HL7 v2 intake is then on in production)."""
    return any(getattr(settings, name, "") for name in TLS_SETTINGS)


def tls_problems() -> list[str]:
    """Return one line per ``HL7_TLS_*`` setting that is empty or names no readable file; empty when all are set."""
    problems = []
    for name in TLS_SETTINGS:
        value = getattr(settings, name, "")
        if not value:
            problems.append(f"{name} is not set: the HL7 v2 listener needs TLS with client certificates.")
        elif not Path(value).is_file():
            problems.append(f"{name} names no readable file ({value}).")
    return problems


@register(Tags.security, deploy=True)
def hl7_tls_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return ``intake.E001`` per missing or unreadable ``HL7_TLS_*`` setting in production (``PRODUCTION``) once any
    of them is set; nothing when none is (intake off) or in embedded mode, where the demo listens on loopback without
    TLS."""
    if not getattr(settings, "PRODUCTION", False) or not tls_configured():
        return []
    return [
        Error(problem, hint="Set HL7_TLS_CERT, HL7_TLS_KEY and HL7_TLS_CLIENT_CA (docs/deploy.md).", id="intake.E001")
        for problem in tls_problems()
    ]
