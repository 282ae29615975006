"""Error pages, the landing page and the liveness endpoint. The 400/403/404/500 pages are in the request's language
(Spanish on a patient page whose language is Spanish, English everywhere else)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from healthcommerce.core.errors import HealthcommerceError


def render_error(
    request: HttpRequest, error: HealthcommerceError, *, title: str = "We could not continue"
) -> HttpResponse:
    """Render ``error.html`` with the error's user-safe message and its HTTP status."""
    return render(
        request, "error.html", {"title": title, "message": error.message, "code": error.code}, status=error.status
    )


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "error.html", {"title": title, "message": message, "code": str(status)}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 page without details."""
    return _page(request, 400, _("Bad request"), _("The request could not be understood."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403 page without details."""
    return _page(request, 403, _("Not allowed"), _("You do not have access to this page."))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 page; never says whether the thing exists."""
    return _page(request, 404, _("Not found"), _("This page does not exist or is no longer available."))


def server_error(request: HttpRequest) -> HttpResponse:
    """500 page; no stack trace, no PHI."""
    title, message = _("Something went wrong"), _("An unexpected error happened. Nothing you entered was lost.")
    return _page(request, 500, title, message)


def home(request: HttpRequest) -> HttpResponse:
    """Landing page: what this is and where to start."""
    return render(request, "home.html")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: ``{"status": "ok"}``."""
    return JsonResponse({"status": "ok"})
