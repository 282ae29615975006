"""Give a test EHR site SMART Backend Services against a running sandbox EHR: an RS384 key on our side, its public
JWKS registered with the sandbox as a ``private_key_jwt`` client with ``system/`` scopes (tests of write-back and the
ship-to re-read, ADR 0022)."""

import json
from functools import cache
from typing import Any

from joserfc.jwk import RSAKey

from healthcommerce.ehr.backend import backend_tokens_forget
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_feature_fields, site_settings_update
from tests.conftest import SandboxEHR

KID = "wb-backend-1"


@cache
def _key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": KID, "alg": "RS384", "use": "sig"}, private=True)


def sandbox_backend_client(sandbox: SandboxEHR, *, client_id: str, scope: str) -> None:
    """Register ``client_id`` with ``sandbox`` as a backend-services client allowed ``scope`` (system/ scopes)."""
    jwks = {"keys": [_key().as_dict(private=False)]}
    sandbox.manage("sandbox_client", "add", "--client-id", client_id, "--jwks-json", json.dumps(jwks), "--scope", scope)


def backend_site_enable(
    site: EHRSite, sandbox: SandboxEHR, *, scopes: str, granted: str | None = None, **fields: Any
) -> EHRSite:
    """Turn on backend services for ``site``: our key on the site, a sandbox client per site named
    ``<client_id>-backend`` allowed ``granted`` (default ``scopes``), ``site.backend_scopes`` = ``scopes``; set the
    other ``fields`` (the site's, or a stage's setting: ``writeback``, ``shipto_reread``...). Returns the saved site."""
    client_id = f"{site.client_id}-backend"
    sandbox_backend_client(sandbox, client_id=client_id, scope=granted if granted is not None else scopes)
    site.backend_services = True
    site.backend_client_id = client_id
    site.backend_scopes = scopes
    site.private_key_pem = _key().as_pem(private=True).decode()
    site.key_id = KID
    site.signing_alg = "RS384"
    for name, value in fields.items():
        if name not in site_feature_fields():
            setattr(site, name, value)
    site.save()
    site_settings_update(site, {name: value for name, value in fields.items() if name in site_feature_fields()})
    backend_tokens_forget()
    return site
