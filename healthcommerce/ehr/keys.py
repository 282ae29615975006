"""Our signing keys: generation, the published JWKS, the key that signs, and rotation.

Sources: SMART App Launch 2.2 "Client Authentication: Asymmetric" (the app publishes its public keys as a JWKS URL;
RS384 and ES384; ``kid``; an optional ``jku`` header equal to that URL), RFC 7517 (JWK Set), RFC 7638 (JWK
thumbprint, our ``kid``), Epic on FHIR "OAuth 2.0" (Epic caches a JWKS up to 29 hours, so a key is published at
least ``MIN_PUBLISHED_HOURS`` before it signs). docs/adr/0020-our-signing-keys.md explains the life cycle:
``next`` (published, not signing) -> ``active`` (signing) -> ``retired`` (published, not signing) -> ``removed``.
Every change writes an audit row (``keys.*``); nothing logs key material.
"""

import functools
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from joserfc.jwk import ECKey, RSAKey, import_key

from healthcommerce.audit.services import audit_record
from healthcommerce.ehr.errors import SigningKeyRefused
from healthcommerce.ehr.models import AppSigningKey, EHRSite

logger = logging.getLogger(__name__)

ALGS = ("RS384", "ES384")
RSA_BITS = 2048  # SMART and Epic accept 2048-bit RSA and more
EC_CURVE = "P-384"  # ES384 (RFC 7518 section 3.4)
MIN_PUBLISHED_HOURS = 30  # Epic caches a JWKS up to 29 hours
PUBLISHED = (AppSigningKey.Status.NEXT, AppSigningKey.Status.ACTIVE, AppSigningKey.Status.RETIRED)


def jwks_url() -> str:
    """Return the absolute URL of our JWKS: ``<APP_BASE_URL>/.well-known/jwks.json`` (the ``jku`` we send)."""
    return settings.APP_BASE_URL.rstrip("/") + reverse("jwks")


def _environment() -> str:
    return str(settings.APP_ENVIRONMENT)


def published_jwks() -> dict[str, list[dict[str, Any]]]:
    """Return the JWK Set of this environment's ``next``, ``active`` and ``retired`` keys:
    ``{"keys": [{"kty", "kid", "alg", "use": "sig", ...public members only}]}``, oldest first."""
    rows = AppSigningKey.objects.filter(environment=_environment(), status__in=PUBLISHED).order_by("created_at")
    return {"keys": [dict(row.public_jwk) for row in rows]}


def _active(alg: str) -> Any:
    return AppSigningKey.objects.filter(environment=_environment(), alg=alg, status=AppSigningKey.Status.ACTIVE)


def own_signing_key(site: EHRSite, alg: str) -> AppSigningKey | None:
    """Return the active ``alg`` key made for ``site`` alone in this environment, else None."""
    return _active(alg).filter(site=site).first()


def shared_signing_key(alg: str) -> AppSigningKey | None:
    """Return the active ``alg`` key shared by every site in this environment, else None."""
    return _active(alg).filter(site__isnull=True).first()


def signing_key_for(site: EHRSite | None, alg: str) -> AppSigningKey | None:
    """Return the active ``alg`` key of ``site`` in this environment, else the shared active one, else None.
    (Which key signs a site's assertions, its stored private key included, is ``ehr.oauth.client_key``.)"""
    own = own_signing_key(site, alg) if site is not None else None
    return own or shared_signing_key(alg)


def private_key(row: AppSigningKey) -> RSAKey | ECKey:
    """Return the joserfc private key of ``row`` (imported once per process: RSA validation takes ~40 ms)."""
    return _imported(row.kid, row.private_jwk)


@functools.lru_cache(maxsize=32)
def _imported(kid: str, private_jwk: str) -> Any:
    return import_key(json.loads(private_jwk))


def _generate(alg: str) -> RSAKey | ECKey:
    if alg == "RS384":
        return RSAKey.generate_key(RSA_BITS, private=True)
    if alg == "ES384":
        return ECKey.generate_key(EC_CURVE, private=True)
    raise SigningKeyRefused(f"Unsupported algorithm {alg!r}: use RS384 or ES384.", code="key_alg")


def _audit(row: AppSigningKey, *, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=f"AppSigningKey/{row.kid}",
        detail={"alg": row.alg, "environment": row.environment, "site": str(row.site_id or "shared")} | (detail or {}),
        site=row.site.iss if row.site is not None else "",
    )


@transaction.atomic
def signing_key_create(*, site: EHRSite | None, alg: str, actor: str) -> AppSigningKey:
    """Generate a key pair for ``site`` (None: shared by every site) in this environment as a ``next`` key:
    published at once, signing only after ``signing_key_activate``. ``kid`` is the RFC 7638 thumbprint; the
    private JWK is stored encrypted. Raises ``SigningKeyRefused`` (``key_alg``) for another algorithm."""
    key = _generate(alg)
    kid = key.thumbprint()
    public = key.as_dict(private=False) | {"kid": kid, "alg": alg, "use": "sig"}
    row = AppSigningKey.objects.create(
        site=site,
        environment=_environment(),
        kid=kid,
        alg=alg,
        status=AppSigningKey.Status.NEXT,
        private_jwk=json.dumps(key.as_dict(private=True)),
        public_jwk=public,
    )
    _audit(row, actor=actor, action="keys.create")
    logger.info("Signing key %s (%s) created for %s", kid, alg, site.pk if site else "every site")
    return row


def activation_time(row: AppSigningKey, *, min_published_hours: float = MIN_PUBLISHED_HOURS) -> datetime:
    """Return when ``row`` (published since it was created) has been published ``min_published_hours``."""
    return row.created_at + timedelta(hours=min_published_hours)


def _locked(kid: str) -> AppSigningKey:
    row = AppSigningKey.objects.select_for_update().filter(kid=kid, environment=_environment()).order_by("pk").first()
    if row is None:
        raise SigningKeyRefused(f"No key {kid!r} in environment {_environment()!r}.", code="key_unknown")
    return row


@transaction.atomic
def signing_key_activate(
    *, kid: str, actor: str, min_published_hours: float = MIN_PUBLISHED_HOURS, force: bool = False
) -> tuple[AppSigningKey, AppSigningKey | None]:
    """Make the ``next`` key ``kid`` sign and retire the key it replaces (same site, environment and algorithm;
    still published). Return ``(activated, retired or None)``.

    Raises ``SigningKeyRefused``: ``key_unknown``, ``key_not_next`` (not a ``next`` key), ``key_too_new`` (published
    less than ``min_published_hours`` ago, unless ``force``: an EHR that cached our JWKS would not know it yet).
    """
    row = _locked(kid)
    if row.status != AppSigningKey.Status.NEXT:
        raise SigningKeyRefused(f"Key {kid} is {row.status}; only a next key can be activated.", code="key_not_next")
    ready = activation_time(row, min_published_hours=min_published_hours)
    if ready > timezone.now() and not force:
        raise SigningKeyRefused(
            f"Key {kid} was published at {row.created_at:%Y-%m-%d %H:%M} UTC; EHRs cache our JWKS (Epic up to 29 "
            f"hours), so activate it after {ready:%Y-%m-%d %H:%M} UTC, or pass --force.",
            code="key_too_new",
        )
    now = timezone.now()
    old = (
        AppSigningKey.objects.select_for_update()
        .filter(site=row.site, environment=row.environment, alg=row.alg, status=AppSigningKey.Status.ACTIVE)
        .order_by("pk")  # not the model's ordering, whose join on the site FOR UPDATE cannot lock
        .first()
    )
    if old is not None:
        old.status, old.retired_at = AppSigningKey.Status.RETIRED, now
        old.save(update_fields=["status", "retired_at", "updated_at"])
        _audit(old, actor=actor, action="keys.retire", detail={"replaced_by": row.kid})
    row.status, row.activated_at = AppSigningKey.Status.ACTIVE, now
    row.save(update_fields=["status", "activated_at", "updated_at"])
    _audit(row, actor=actor, action="keys.activate", detail={"forced": force and ready > now})
    return row, old


@transaction.atomic
def signing_key_remove(*, kid: str, actor: str) -> AppSigningKey:
    """Stop publishing the ``retired`` (or never used ``next``) key ``kid``; EHRs then refuse assertions signed
    with it. Raises ``SigningKeyRefused``: ``key_unknown``, ``key_active`` (activate its successor first) or
    ``key_removed`` (already removed)."""
    row = _locked(kid)
    if row.status == AppSigningKey.Status.ACTIVE:
        raise SigningKeyRefused(f"Key {kid} is signing; activate its successor first.", code="key_active")
    if row.status == AppSigningKey.Status.REMOVED:
        raise SigningKeyRefused(f"Key {kid} is already removed.", code="key_removed")
    row.status, row.removed_at = AppSigningKey.Status.REMOVED, timezone.now()
    row.save(update_fields=["status", "removed_at", "updated_at"])
    _audit(row, actor=actor, action="keys.remove")
    return row
