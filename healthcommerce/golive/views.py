"""The readiness check's admin page: run ``site_readiness`` for one EHR site from its admin change page."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.models import EHRSite
from healthcommerce.golive.readiness import site_readiness


class ReadinessForm(forms.Form):
    """The optional test patient: a FHIR id (``[A-Za-z0-9\\-\\.]{1,64}``, FHIR R4 ``id``)."""

    patient = forms.RegexField(
        regex=r"^[A-Za-z0-9\-.]{1,64}$",
        required=False,
        label="Test patient id",
        help_text="A test patient's FHIR id with a pending DME or kit order; read with backend services.",
    )


def _readiness(request: HttpRequest, site_id: Any) -> HttpResponse:
    if not request.user.has_perm("ehr.change_ehrsite"):
        raise PermissionDenied
    site = get_object_or_404(EHRSite, pk=site_id)
    form = ReadinessForm(request.POST or None)
    report = None
    if request.method == "POST" and form.is_valid():
        actor = f"staff:{request.user.get_username()}"
        report = site_readiness(site, patient_id=form.cleaned_data["patient"], actor=actor)
        audit_record(
            actor=actor,
            action="readiness.run",
            target=f"EHRSite/{site.pk}",
            where=site.iss,
            outcome="pass" if report.passed else "fail",
            detail={"failed": [c.name for c in report.failures], "patient": bool(report.patient_id)},
            site=site.iss,
        )
    context = admin.site.each_context(request) | {
        "title": f"Readiness check: {site.name}",
        "site": site,
        "opts": EHRSite._meta,
        "form": form,
        "report": report,
    }
    return render(request, "golive/readiness.html", context)


# The admin's own login, two-factor verification and CSRF checks wrap the view (core.adminsite).
readiness = never_cache(require_http_methods(["GET", "POST"])(admin.site.admin_view(_readiness)))
