"""Writes of the sandbox EHR: client registration, EHR launches and fault injection.

The sandbox is a stand-in for a third-party EHR, so its writes are not audited in the app's AuditEvent trail.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from healthcommerce.sandbox.errors import ClientRegistrationError, LaunchError
from healthcommerce.sandbox.models import (
    AuthMethod,
    FaultKind,
    SandboxClient,
    SandboxFault,
    SandboxLaunch,
    secret_hash,
)
from healthcommerce.sandbox.r4 import ORDER_TYPES
from healthcommerce.sandbox.scopes import is_system_scope
from healthcommerce.sandbox.selectors import resource_get

DEFAULT_CLIENT_SCOPE = "launch openid fhirUser online_access patient/*.read patient/*.rs user/*.read user/*.rs"


def _check_registration(
    auth_method: str, client_secret: str | None, jwks: dict[str, Any] | None, jwks_url: str, scope: str
) -> None:
    if auth_method not in AuthMethod.values:
        raise ClientRegistrationError(f"Unknown auth method {auth_method!r}.")
    if auth_method == AuthMethod.CLIENT_SECRET_BASIC and not client_secret:
        raise ClientRegistrationError("client_secret_basic needs a client secret.")
    if auth_method == AuthMethod.PRIVATE_KEY_JWT and not (jwks or jwks_url):
        raise ClientRegistrationError("private_key_jwt needs a JWKS or a JWKS URL.")
    if auth_method == AuthMethod.NONE and (client_secret or jwks or jwks_url):
        raise ClientRegistrationError("A public client has no secret and no keys.")
    if any(is_system_scope(item) for item in scope.split()) and auth_method != AuthMethod.PRIVATE_KEY_JWT:
        raise ClientRegistrationError("system/ scopes (backend services) need private_key_jwt.")


@transaction.atomic
def sandbox_client_register(
    *,
    client_id: str,
    redirect_uris: Sequence[str],
    auth_method: str = AuthMethod.NONE,
    client_secret: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_url: str = "",
    scope: str = DEFAULT_CLIENT_SCOPE,
    name: str = "",
) -> SandboxClient:
    """Create or replace the registration of ``client_id`` (SMART 2.2 client types: public, symmetric, asymmetric).

    ``auth_method`` is ``none``, ``client_secret_basic`` (needs ``client_secret``) or ``private_key_jwt`` (needs a
    public ``jwks`` dict or a ``jwks_url``). ``system/`` scopes (SMART 2.2 "Backend Services", the client
    credentials grant) need ``private_key_jwt``; a backend-only client (every scope ``system/``) needs no redirect
    URI. Raises ``ClientRegistrationError`` for an incomplete registration.
    """
    backend_only = bool(scope.split()) and all(is_system_scope(item) for item in scope.split())
    if not client_id or not (redirect_uris or backend_only):
        raise ClientRegistrationError("A client needs an id and at least one redirect URI.")
    _check_registration(auth_method, client_secret, jwks, jwks_url, scope)
    client, _ = SandboxClient.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": name or client_id,
            "token_endpoint_auth_method": auth_method,
            "client_secret_hash": secret_hash(client_secret) if client_secret else "",
            "redirect_uris": list(redirect_uris),
            "scope": scope,
            "jwks": jwks,
            "jwks_url": jwks_url,
        },
    )
    return client


def default_client_settings() -> tuple[str, list[str]]:
    """Return ``(client_id, redirect_uris)`` of the default client.

    Read from ``SANDBOX_DEFAULT_CLIENT_ID`` (default ``"healthcommerce"``) and ``SANDBOX_DEFAULT_REDIRECT_URIS``
    (default ``["{APP_BASE_URL}/smart/callback"]``).
    """
    client_id = getattr(settings, "SANDBOX_DEFAULT_CLIENT_ID", "healthcommerce")
    base = str(getattr(settings, "APP_BASE_URL", "http://127.0.0.1:8000")).rstrip("/")
    uris = getattr(settings, "SANDBOX_DEFAULT_REDIRECT_URIS", [f"{base}/smart/callback"])
    return client_id, list(uris)


def sandbox_default_client_ensure() -> tuple[SandboxClient, bool]:
    """Register the default public client unless it exists; return ``(client, created)``.

    An existing registration (perhaps changed with ``sandbox_client add``) is left as it is.
    """
    client_id, uris = default_client_settings()
    existing = SandboxClient.objects.filter(client_id=client_id).first()
    if existing is not None:
        return existing, False
    return sandbox_client_register(client_id=client_id, redirect_uris=uris, name="healthcommerce (default)"), True


def _order_for_launch(request_ref: str, patient_id: str) -> tuple[str, str]:
    """Return ``(request_ref, encounter_id)`` after checking the order belongs to ``patient_id``."""
    resource_type, _, fhir_id = request_ref.partition("/")
    if resource_type not in ORDER_TYPES or not fhir_id:
        raise LaunchError("The request must be a DeviceRequest or ServiceRequest reference.")
    order = resource_get(resource_type=resource_type, fhir_id=fhir_id)
    if order is None or order.patient_id != patient_id:
        raise LaunchError("That request does not exist for this patient.")
    encounter = order.data.get("encounter")
    reference = encounter.get("reference") if isinstance(encounter, dict) else None
    encounter_id = ""
    if isinstance(reference, str) and reference.startswith("Encounter/"):
        encounter_id = reference.removeprefix("Encounter/")
    return request_ref, encounter_id


@transaction.atomic
def sandbox_launch_create(*, patient_id: str, practitioner_id: str, request_ref: str = "") -> SandboxLaunch:
    """Create an opaque one-time EHR launch (SMART 2.2 "EHR Launch") bound to the patient, practitioner, the
    optional ``DeviceRequest/<id>``/``ServiceRequest/<id>`` and that request's encounter (if it names one).

    Lives ``SANDBOX_LAUNCH_TTL`` seconds (default 600). Raises ``LaunchError`` for unknown or mismatched ids.
    """
    if resource_get(resource_type="Patient", fhir_id=patient_id) is None:
        raise LaunchError("Unknown patient.")
    if resource_get(resource_type="Practitioner", fhir_id=practitioner_id) is None:
        raise LaunchError("Unknown practitioner.")
    encounter_id = ""
    if request_ref:
        request_ref, encounter_id = _order_for_launch(request_ref, patient_id)
    ttl = int(getattr(settings, "SANDBOX_LAUNCH_TTL", 600))
    return SandboxLaunch.objects.create(
        value=secrets.token_urlsafe(32),
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        encounter_id=encounter_id,
        request_ref=request_ref,
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )


def sandbox_launch_consume(*, launch: SandboxLaunch) -> bool:
    """Mark ``launch`` used if it is still unused and unexpired; return whether this call claimed it."""
    claimed = SandboxLaunch.objects.filter(pk=launch.pk, used_at__isnull=True, expires_at__gt=timezone.now()).update(
        used_at=timezone.now(), updated_at=timezone.now()
    )
    return claimed == 1


@transaction.atomic
def sandbox_fault_set(*, resource_type: str, kind: str | int, count: int | None = None) -> SandboxFault:
    """Make the FHIR API fail for ``resource_type`` (or ``"*"``) the next ``count`` times (None: until cleared).

    ``kind`` is one of 401, 403, 404, 500, 503, ``"timeout"``, ``"malformed"`` or ``"truncated"``.
    Raises ``ValueError`` for another kind or a negative count.
    """
    kind = str(kind)
    if kind not in FaultKind.values:
        raise ValueError(f"Unknown fault kind {kind!r}.")
    if count is not None and count < 0:
        raise ValueError("count must be >= 0.")
    return SandboxFault.objects.create(resource_type=resource_type or "*", kind=kind, remaining=count)


def sandbox_fault_clear() -> int:
    """Delete every fault; return how many there were."""
    deleted, _ = SandboxFault.objects.all().delete()
    return deleted


def sandbox_fault_take(*, resource_type: str, include_wildcard: bool = True) -> str | None:
    """Return the kind of the active fault that applies to ``resource_type`` and use up one of its requests.

    A fault for the exact type wins over ``"*"``; returns None when no fault applies.
    """
    types = [resource_type, "*"] if include_wildcard else [resource_type]
    candidates = SandboxFault.objects.filter(active=True, resource_type__in=types).filter(
        Q(remaining__isnull=True) | Q(remaining__gt=0)
    )
    for fault in sorted(candidates, key=lambda f: (f.resource_type == "*", -f.created_at.timestamp())):
        if fault.remaining is None:
            return fault.kind
        claimed = SandboxFault.objects.filter(pk=fault.pk, remaining__gt=0).update(
            remaining=F("remaining") - 1, updated_at=timezone.now()
        )
        if claimed:
            return fault.kind
    return None
