"""The patient's language on the pages under ``/p/`` (ADR 0013).

``PatientLocaleMiddleware`` is Django's ``LocaleMiddleware`` (the language cookie set by the switch, else
``Accept-Language``, else ``LANGUAGE_CODE``) for the patient pages only; every other page (the clinician's
``/o/``, the admin, webhooks) stays in English. The language is deactivated once the response is made, so it
never leaks into later work on the same thread (a test client, a live server).
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

# The patient pages' prefix (healthcommerce/urls.py mounts purchaselinks.urls here).
PATIENT_PREFIX = "/p/"


def is_patient_path(path: str) -> bool:
    """Return True for a path under the patient pages (``/p/...``)."""
    return path.startswith(PATIENT_PREFIX)


class PatientLocaleMiddleware(LocaleMiddleware):
    """Negotiate the language on ``/p/`` (Django's ``LocaleMiddleware``: cookie ``LANGUAGE_COOKIE_NAME``, then
    ``Accept-Language`` per RFC 9110 section 12.5.4, then ``LANGUAGE_CODE``); activate ``LANGUAGE_CODE``
    elsewhere. Adds ``Vary: Accept-Language`` and ``Content-Language`` to patient pages."""

    def process_request(self, request: HttpRequest) -> None:
        if is_patient_path(request.path_info):
            super().process_request(request)
        else:
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = translation.get_language()

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        try:
            if is_patient_path(request.path_info):
                response = super().process_response(request, response)
            return response
        finally:
            translation.deactivate()
