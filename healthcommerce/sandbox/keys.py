"""The sandbox's signing keys, generated once and kept in the database: the id_token key (RS256) and the CDS Hooks
key (RS384, kid prefixed ``cds-``, which signs the JWT of each hook call); and client keys.

Sources: OpenID Connect Core 1.0 section 10.1 (signing), SMART App Launch 2.2 "Client Authentication:
Asymmetric (public key)" (client JWKS, ``jku``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import requests
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import outbound_session
from healthcommerce.sandbox.models import SandboxClient, SandboxSigningKey

ID_TOKEN_ALG = "RS256"
CDS_ALG = "RS384"  # CDS Hooks 2.0 "JWT Signing Algorithm": RS384 or ES384
CDS_KID_PREFIX = "cds-"


class ClientKeyError(HealthcommerceError):
    """A client's public key or JWKS is missing, unreadable or unreachable."""

    code = "sandbox_client_key"
    message = "The client's public key could not be read."


def signing_key() -> RSAKey:
    """Return the private RSA signing key, creating and storing it on first use.

    If two processes race, both keys are stored; the oldest signs and the JWKS lists all of them.
    """
    row = SandboxSigningKey.objects.exclude(kid__startswith=CDS_KID_PREFIX).order_by("created_at").first()
    if row is None:
        key = RSAKey.generate_key(2048, private=True, auto_kid=True)
        row, _ = SandboxSigningKey.objects.get_or_create(
            kid=key.kid, defaults={"private_jwk": key.as_dict(private=True)}
        )
    return _imported(row.kid, json.dumps(row.private_jwk, sort_keys=True))


def cds_signing_key() -> RSAKey:
    """Return the private RSA key that signs CDS Hooks JWTs (RS384), creating and storing it on first use.

    A key of its own (kid ``cds-<thumbprint>``), published in the same JWK Set with ``alg`` RS384: one key, one
    algorithm (RFC 7517 section 4.4), so the id_token key stays RS256.
    """
    row = SandboxSigningKey.objects.filter(kid__startswith=CDS_KID_PREFIX).order_by("created_at").first()
    if row is None:
        key = RSAKey.generate_key(2048, private=True, auto_kid=True)
        kid = CDS_KID_PREFIX + str(key.kid)
        row, _ = SandboxSigningKey.objects.get_or_create(
            kid=kid, defaults={"private_jwk": {**key.as_dict(private=True), "kid": kid}}
        )
    return _imported(row.kid, json.dumps(row.private_jwk, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _imported(kid: str, private_jwk: str) -> RSAKey:
    """Import a stored key once per process: cryptography validates an RSA private key on load (~40 ms)."""
    return RSAKey.import_key(json.loads(private_jwk))


def public_jwks() -> dict[str, list[dict[str, Any]]]:
    """Return the JWK Set of the sandbox's public signing keys: ``{"keys": [{"kty": "RSA", "kid", "alg", ...}]}``
    (the id_token keys with ``alg`` RS256, the CDS Hooks keys with RS384)."""
    signing_key()
    # Both keys exist once anyone reads the JWK Set: a CDS service (or the app's readiness check) that fetches it
    # before the first hook call finds the key that will sign the calls, as with a real EHR.
    cds_signing_key()
    keys = []
    for row in SandboxSigningKey.objects.order_by("created_at"):
        public = RSAKey.import_key(row.private_jwk).as_dict(private=False)
        alg = CDS_ALG if row.kid.startswith(CDS_KID_PREFIX) else ID_TOKEN_ALG
        keys.append({**public, "kid": row.kid, "use": "sig", "alg": alg})
    return {"keys": keys}


def jwks_from_input(*, jwks_json: str | None = None, public_key_pem: bytes | None = None) -> dict[str, Any]:
    """Return a public JWK Set from a JWKS JSON text or a PEM public key (RSA or EC).

    A key without ``kid`` gets its RFC 7638 thumbprint. Raises ``ClientKeyError`` for unreadable input or
    private key material.
    """
    try:
        if jwks_json is not None:
            data = json.loads(jwks_json)
            keys = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
            imported = [import_key(item) for item in keys]
        elif public_key_pem is not None:
            imported = [_import_pem(public_key_pem)]
        else:
            raise ClientKeyError("Give a JWKS or a public key.")
    except (ValueError, KeyError, TypeError, JoseError) as exc:
        raise ClientKeyError("The JWKS or public key is not valid.") from exc
    result = []
    for key in imported:
        if key.is_private:
            raise ClientKeyError("Register the public key only.")
        result.append({**key.as_dict(private=False), "kid": key.kid or key.thumbprint()})
    return {"keys": result}


def _import_pem(pem: bytes) -> RSAKey | ECKey:
    try:
        return RSAKey.import_key(pem)
    except (ValueError, JoseError):
        return ECKey.import_key(pem)


def client_key_set(client: SandboxClient, jku: str | None = None) -> KeySet:
    """Return the client's public keys: its registered JWKS, else a fetch of its ``jwks_url``.

    A ``jku`` header must equal the registered ``jwks_url`` (SMART 2.2 asymmetric client authentication).
    Raises ``ClientKeyError`` when no key is registered, the ``jku`` is not allowed, or the fetch fails.
    """
    if jku and jku != client.jwks_url:
        raise ClientKeyError("The jku header does not match the registered JWKS URL.")
    if client.jwks and not jku:
        return KeySet.import_key_set(client.jwks)
    if not client.jwks_url:
        raise ClientKeyError("The client has no registered public key.")
    try:
        response = outbound_session().get(client.jwks_url, headers={"Accept": "application/json"})
        response.raise_for_status()
        return KeySet.import_key_set(response.json())
    except (requests.RequestException, HealthcommerceError, ValueError, JoseError) as exc:
        raise ClientKeyError("The client's JWKS URL could not be read.") from exc
