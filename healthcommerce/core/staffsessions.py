"""Staff (admin) sessions end after 15 minutes without admin activity and 12 hours after login.

``SESSION_COOKIE_AGE`` is global (clinician launch sessions and patient pages share the session machinery and
keep their own limits: ``LAUNCH_TTL``, the purchase link's 15-minute verification), so staff sessions carry two
Unix timestamps of their own, written at login (``staff_session_start``) and on each admin request:

- ``STAFF_SESSION_IDLE_SECONDS`` (900) after the last admin request, and
- ``STAFF_SESSION_MAX_SECONDS`` (43,200) after login, however active,

the next admin request finds the staff login ended: the user is logged out (``user_logged_out`` is sent, the
login and second-factor keys leave the session, the session key changes) and the admin asks for password and code
again. The rest of the session stays, so a clinician launch open in the same browser keeps working. A session
without the timestamps (logged in before this existed) is ended too. Only admin requests are checked: the admin
is the only part of the app that uses a staff login, and clinician and patient requests never read the session
for it (a session read for nothing would, among other things, make Django drop a cookie it does not know).

django-session-timeout and django-auto-logout were looked at and not used: both apply one limit to every session
(clinicians' and patients' too), and neither has been released since 2022.

Source: HIPAA 164.312(a)(2)(iii) automatic logoff; OWASP ASVS 5.0 V7.3.1 (inactivity timeout) and V7.3.2
(absolute maximum session lifetime); NIST SP 800-63B section 4.2.3 (AAL2: 12 hours, 30 minutes idle).
"""

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, user_logged_out
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django_otp import DEVICE_ID_SESSION_KEY

STARTED = "staff_started_at"
SEEN = "staff_seen_at"
_ENDED_KEYS = (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY, DEVICE_ID_SESSION_KEY, STARTED, SEEN)


def staff_session_start(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """Stamp a new login's session with its start (``user_logged_in`` receiver, connected in ``core/apps.py``)."""
    if request is not None and hasattr(request, "session"):
        now = time.time()  # a Unix timestamp in the session, like the patient's verified-at
        request.session[STARTED] = now
        request.session[SEEN] = now


def staff_session_expired(session: Any, now: float) -> bool:
    """Return whether the staff login of ``session`` has ended: idle too long, too old, or never stamped."""
    started, seen = session.get(STARTED), session.get(SEEN)
    if not isinstance(started, int | float) or not isinstance(seen, int | float):
        return True
    return now - seen > settings.STAFF_SESSION_IDLE_SECONDS or now - started > settings.STAFF_SESSION_MAX_SECONDS


def staff_session_end(request: HttpRequest) -> None:
    """Log the staff user out of this request's session and keep the rest of the session under a new key."""
    user = request.user
    user_logged_out.send(sender=type(user), request=request, user=user)
    for key in _ENDED_KEYS:
        request.session.pop(key, None)
    request.session.cycle_key()
    request.user = AnonymousUser()


class StaffSessionMiddleware:
    """On admin requests, end a staff login that is idle or too old, else refresh its idle clock (after
    ``AuthenticationMiddleware`` and ``OTPMiddleware`` in ``MIDDLEWARE``)."""

    admin_prefix = "/admin/"  # healthcommerce/urls.py

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(self.admin_prefix) and request.user.is_authenticated:
            now = time.time()
            if staff_session_expired(request.session, now):
                staff_session_end(request)
            else:
                request.session[SEEN] = now
        return self.get_response(request)
