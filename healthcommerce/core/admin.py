"""Admin building blocks shared by the apps."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse


def admin_actor(request: HttpRequest) -> str:
    """Return the audit actor for an admin request: ``admin:<username>``."""
    return f"admin:{request.user.get_username()}"


class ServiceOnlyAdmin(admin.ModelAdmin):
    """An admin whose rows change only through services (its actions): every field is read-only, and
    there is no add, save or delete."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Return every model field (besides the declared ones and ``exclude``): nothing is editable."""
        declared = list(super().get_readonly_fields(request, obj))
        return declared + [
            f.name for f in self.model._meta.fields if f.name not in declared and f.name not in (self.exclude or ())
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rows are made by services only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are never deleted from the admin."""
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Never save from the form (there is nothing editable); state changes go through the actions."""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """Show the row without save or delete buttons."""
        hidden = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **hidden})
