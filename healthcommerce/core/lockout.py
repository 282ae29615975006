"""django-axes with one failure limit per lockout parameter set (settings ``AXES_LOCKOUT_PARAMETERS``).

axes counts failed logins per parameter set and compares the largest count with one ``AXES_FAILURE_LIMIT``. The
admin login uses two sets with their own limits (``AXES_PARAMETER_LIMITS``):

- ``["username", "ip_address"]``, ``AXES_FAILURE_LIMIT`` (5): one client guessing one account. One address
  (or a proxy every client shares) can no longer lock every account, only the pairs it tried.
- ``"username"``, a higher limit (20): the same account guessed from rotating addresses.

Both cool off after ``AXES_COOLOFF_TIME``. Source: OWASP ASVS 5.0 V6.3.1 (credential stuffing and brute force
controls), NIST SP 800-63B section 5.2.2 (rate limiting, at most 100 consecutive failures per account).
"""

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit, get_lockout_parameters
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def _key(parameter: str | list[str]) -> str:
    return parameter if isinstance(parameter, str) else ",".join(parameter)


class StaffLockoutHandler(AxesDatabaseHandler):
    """axes' database handler, each parameter set measured against its own limit (``AXES_HANDLER``)."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """Return the failures of the set closest to its limit, scaled to ``AXES_FAILURE_LIMIT``: a set with
        limit ``m`` and ``c`` failures counts ``c * AXES_FAILURE_LIMIT // m``, which reaches the limit exactly
        when ``c`` reaches ``m``. Sets without their own limit (``AXES_PARAMETER_LIMITS``) count as axes does."""
        limit = get_failure_limit(request, credentials)
        own = settings.AXES_PARAMETER_LIMITS
        parameters = get_lockout_parameters(request, credentials)
        worst = 0
        for parameter, attempts in zip(parameters, self.get_user_attempts(request, credentials), strict=True):
            count = attempts.aggregate(Sum("failures_since_start"))["failures_since_start__sum"] or 0
            worst = max(worst, count * limit // own.get(_key(parameter), limit))
        return worst
