"""SMART App Launch 2.2 scopes (section "Scopes and Launch Context"): v1 ``patient/DeviceRequest.read`` and v2
``patient/DeviceRequest.rs``, matched case-insensitively because Epic mixes ``.Read`` and ``.read``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# v1 permissions map to v2 letters ("Scopes for requesting clinical data", v1 compatibility).
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_V2_PERMISSIONS = re.compile(r"c?r?u?d?s?")
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([A-Za-z*]+)(\?.*)?$", re.IGNORECASE)

Interaction = Literal["c", "r", "s"]
Context = Literal["patient", "user", "system"]


@dataclass(frozen=True)
class ResourceScope:
    """A parsed resource scope: ``context`` (patient, user or system), ``resource_type`` (or ``*``) and
    ``permissions`` (letters of ``cruds``). A v2 ``?param=value`` filter is accepted but not enforced."""

    context: str
    resource_type: str
    permissions: frozenset[str]

    def covers(self, other: ResourceScope) -> bool:
        """Return whether this scope grants everything ``other`` asks for."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and self.permissions >= other.permissions
        )


def parse_resource_scope(scope: str) -> ResourceScope | None:
    """Parse ``patient/Type.read`` or ``user/*.rs``; return None for other scopes (``launch``, ``openid``...)."""
    match = _RESOURCE_SCOPE.match(scope)
    if not match:
        return None
    context, resource_type, permission, _filter = match.groups()
    letters = _V1_PERMISSIONS.get(permission.lower())
    if letters is None:
        letters = permission.lower()
        if not letters or not _V2_PERMISSIONS.fullmatch(letters):
            return None
    return ResourceScope(context.lower(), resource_type, frozenset(letters))


def _resource_scopes(scope: str) -> list[ResourceScope]:
    return [parsed for item in scope.split() if (parsed := parse_resource_scope(item))]


def grantable(requested: str, allowed: str) -> str:
    """Return the requested scopes that ``allowed`` covers, in request order and spelling.

    A scope is granted when ``allowed`` lists it (case-insensitively) or, for resource scopes, when an allowed
    resource scope covers it (``patient/*.read`` covers ``patient/DeviceRequest.Read``).
    """
    allowed_names = {item.lower() for item in allowed.split()}
    allowed_resources = _resource_scopes(allowed)
    granted: list[str] = []
    for item in requested.split():
        if item in granted:
            continue
        parsed = parse_resource_scope(item)
        if item.lower() in allowed_names or (parsed and any(a.covers(parsed) for a in allowed_resources)):
            granted.append(item)
    return " ".join(granted)


def access_context(
    scope: str, resource_type: str, interaction: Interaction, *, backend: bool = False
) -> Context | None:
    """Return how ``scope`` lets a token ``c``reate, ``r``ead or ``s``earch ``resource_type``.

    ``"system"`` (only for a ``backend`` token, one issued by the client credentials grant: SMART 2.2 "Backend
    Services") and ``"user"``: any resource of that type; ``"patient"``: only the launch patient's compartment
    (plus shared resources such as Practitioner); None: not covered, the FHIR API answers 403. A ``system/``
    scope of a launch token counts for nothing.
    """
    contexts = {
        granted.context
        for granted in _resource_scopes(scope)
        if granted.resource_type in ("*", resource_type) and interaction in granted.permissions
    }
    if backend and "system" in contexts:
        return "system"
    if "user" in contexts:
        return "user"
    if "patient" in contexts:
        return "patient"
    return None


def has_scope(scope: str, name: str) -> bool:
    """Return whether the space-separated ``scope`` contains ``name`` (case-insensitive)."""
    return name.lower() in {item.lower() for item in scope.split()}


def is_system_scope(scope: str) -> bool:
    """Return whether ``scope`` is a resource scope of the ``system/`` context (``system/Patient.rs``)."""
    parsed = parse_resource_scope(scope)
    return parsed is not None and parsed.context == "system"
