"""Audit rows for logins, logouts, failed logins, lockouts and admin changes (HIPAA 164.312(b); ADR 0015).

Connected in ``AuditConfig.ready()``. Django's ``user_logged_in``/``user_logged_out`` write one row each; failed
logins (``user_login_failed``) and django-axes lockouts (``user_locked_out``) are refusals of unauthenticated
requests, so they are aggregated (``audit_refusal``). Every admin add, change and delete that Django records as a
``LogEntry`` (one object at a time) becomes ``admin.add``, ``admin.change`` or ``admin.delete`` with the changed
field names only; ``audit.admin.AuditedAdminMixin`` covers deletions of several objects at once.
"""

import json
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model

from healthcommerce.audit.services import audit_record, audit_refusal

_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def _known_actor(username: object) -> str:
    """``admin:<username>`` when such a user exists; otherwise ``anonymous`` (a typed password stays out)."""
    name = str(username or "")[:150]
    if name and get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: name}).exists():
        return f"admin:{name}"
    return "anonymous"


def logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_in``: ``admin.login``."""
    audit_record(actor=f"admin:{user.get_username()}", action="admin.login")


def logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out``: ``admin.logout`` (``user`` is ``None`` when nobody was logged in: nothing written)."""
    if user is not None:
        audit_record(actor=f"admin:{user.get_username()}", action="admin.logout")


def login_failed(sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any) -> None:
    """``user_login_failed``: aggregated ``admin.login`` refusal ``bad_credentials``."""
    username = (credentials or {}).get(get_user_model().USERNAME_FIELD) or (credentials or {}).get("username")
    audit_refusal(action="admin.login", reason="bad_credentials", actor=_known_actor(username))


def locked_out(sender: Any, request: Any = None, username: Any = None, ip_address: Any = None, **kwargs: Any) -> None:
    """django-axes ``user_locked_out``: aggregated ``admin.lockout`` refusal ``locked_out``."""
    audit_refusal(
        action="admin.lockout",
        reason="locked_out",
        actor=_known_actor(username),
        ip=str(ip_address) if ip_address else None,
    )


def _fields(change_message: str) -> list[str]:
    """The field names in a ``LogEntry.change_message`` (JSON list of ``{"changed": {"fields": [...]}}``)."""
    try:
        parts = json.loads(change_message or "[]")
    except ValueError:
        return []
    names: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        for body in part.values() if isinstance(part, dict) else []:
            if isinstance(body, dict):
                names += [str(name) for name in body.get("fields", [])]
    return names


def log_entry_audit(entry: LogEntry) -> None:
    """Write the audit row of one admin ``LogEntry``: target ``<app>.<model>/<object id>``, field names only."""
    model = entry.content_type.natural_key() if entry.content_type is not None else ("", "")
    detail: dict[str, Any] = {"log_entry": entry.pk}
    fields = _fields(entry.change_message)
    if fields:
        detail["fields"] = fields
    audit_record(
        actor=f"admin:{entry.user.get_username()}",
        action=_ACTIONS.get(entry.action_flag, "admin.change"),
        target=f"{'.'.join(model)}/{entry.object_id}",
        detail=detail,
    )


def log_entry_saved(sender: Any, instance: LogEntry, created: bool = False, **kwargs: Any) -> None:
    """``post_save`` of ``LogEntry``: audit a newly created entry."""
    if created:
        log_entry_audit(instance)
