"""Staff roles and PHI masking in the admin (issue 9 "Accounts"; docs/reliability.md "Accounts").

Two staff roles are Django groups, made by the data migration ``core/migrations/0001_staff_roles.py``:

- ``support``: operations without PHI. It views orders, launches, sites, links, payments, the outbox and the audit
  trail, and it may run the operating actions (outbox "Retry now", link revoke and re-issue, local order
  "Mark shipped/delivered"). Every PHI field is masked in the admin's lists and forms and left out of search.
- ``admin``: everything, PHI included.

Clinicians are not Django users: a clinician is the EHR's ``fhirUser`` of a SMART launch bound to one browser
session (``ehr/services.py`` ``launch_access``), and sees only the launches that browser started.

Deny by default: only superusers and members of ``admin`` see PHI; any other staff account (``support``, or a
staff user in no group) sees it masked. Source: HIPAA 164.308(a)(4) information access management and
164.514(d) minimum necessary; OWASP ASVS 5.0 V8 authorization.
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.http import HttpRequest
from django.utils.text import capfirst

ADMIN = "admin"
SUPPORT = "support"
MASK = "(hidden)"
_PREFIX = "masked_"


def sees_phi(user: Any) -> bool:
    """Return whether this user may see PHI in the admin: a superuser, or a member of the ``admin`` group."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.groups.filter(name=ADMIN).exists())


PATIENT_REFERENCE_PREFIX = "Patient/"


def mask_reference(reference: str) -> str:
    """Return a FHIR-style reference with a patient's id hidden: ``Patient/pat014`` -> ``Patient/(hidden)``; any
    other reference (``Order/<uuid>``, ``EHRSite/<uuid>``) unchanged. A patient's FHIR id is PHI (an identifier
    that leads to the chart); an order's or a site's UUID is not."""
    if reference.startswith(PATIENT_REFERENCE_PREFIX):
        return f"{PATIENT_REFERENCE_PREFIX}{MASK}"
    return reference


def _masked_display(name: str, label: str) -> Callable[[Any], str]:
    def shown(obj: Any) -> str:
        return MASK

    shown.short_description = label  # type: ignore[attr-defined]
    shown.__name__ = f"{_PREFIX}{name}"
    return shown


class PhiMaskedAdmin(admin.ModelAdmin):
    """Put first among a ``ModelAdmin``'s bases (``class OrderAdmin(PhiMaskedAdmin, admin.ModelAdmin)``); list its
    PHI in ``phi_fields``.

    For a user who does not see PHI (``sees_phi``), each name in ``phi_fields`` (a model field or an admin
    display method) is shown as ``(hidden)`` in the list and the form, the raw field never reaches the form, and
    search fields that reach a PHI field are dropped. Other users see the admin unchanged. Additive: it only
    rewrites the field lists the admin already has.
    """

    phi_fields: Sequence[str] = ()

    def _masks(self, request: HttpRequest) -> bool:
        if not hasattr(request, "_hc_sees_phi"):
            request._hc_sees_phi = sees_phi(request.user)  # type: ignore[attr-defined]  # one query per request
        return bool(self.phi_fields) and not request._hc_sees_phi  # type: ignore[attr-defined]

    def _masked_name(self, name: Any) -> Any:
        if not isinstance(name, str) or name not in self.phi_fields:
            return name
        masked = f"{_PREFIX}{name}"
        if not hasattr(self, masked):
            try:
                label = capfirst(str(self.model._meta.get_field(name).verbose_name))
            except FieldDoesNotExist:  # an admin display method
                label = str(getattr(getattr(self, name, None), "short_description", name.replace("_", " ")))
            setattr(self, masked, _masked_display(name, label))
        return masked

    def _mask_all(self, names: Sequence[Any]) -> list[Any]:
        seen: list[Any] = []
        for name in names:
            masked = self._masked_name(name)
            if masked not in seen:
                seen.append(masked)
        return seen

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """Return the admin's read-only fields, each PHI field replaced by its masked twin."""
        names = list(super().get_readonly_fields(request, obj))
        return self._mask_all(names) if self._masks(request) else names

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[Any] | None:
        """Return the admin's ``exclude`` plus, when masking, every PHI field: the form never holds one."""
        excluded = super().get_exclude(request, obj)
        if not self._masks(request):
            return None if excluded is None else list(excluded)
        return [*(excluded or ()), *(name for name in self.phi_fields if name not in (excluded or ()))]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """Return the form's fields with each PHI field replaced by its masked twin."""
        names = list(super().get_fields(request, obj))
        return self._mask_all(names) if self._masks(request) else names

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """Return the fieldsets with each PHI field replaced by its masked twin."""
        fieldsets = super().get_fieldsets(request, obj)
        if not self._masks(request):
            return list(fieldsets)
        return [
            (title, {**options, "fields": self._mask_all(list(options.get("fields", ())))})
            for title, options in fieldsets
        ]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """Return the list columns with each PHI column masked."""
        names = list(super().get_list_display(request))
        return self._mask_all(names) if self._masks(request) else names

    def get_search_fields(self, request: HttpRequest) -> list[Any]:
        """Return the search fields without those that reach a PHI field (no searching by name or birth date)."""
        names = list(super().get_search_fields(request))
        if not self._masks(request):
            return names
        return [entry for entry in names if not set(entry.lstrip("^=@").split("__")) & set(self.phi_fields)]
