"""Confidential clients complete the launch against the sandbox (SMART App Launch 2.2 "Client Authentication")."""

import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.ehr.backend import backend_token, backend_tokens_forget
from healthcommerce.ehr.keys import signing_key_activate, signing_key_create
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.golive.readiness import site_readiness
from healthcommerce.sandbox.services import DEFAULT_CLIENT_SCOPE
from tests.conftest import complete_launch

pytestmark = pytest.mark.django_db
REDIRECT = "http://testserver/smart/callback"


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_it_launches_as_an_asymmetric_client(client, sandbox_ehr, settings, alg):
    settings.APP_BASE_URL = "http://testserver"
    if alg == "RS384":
        pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        public = RSAKey.import_key(pem).as_dict(private=False)
    else:
        pem = _pem(ec.generate_private_key(ec.SECP384R1()))
        public = ECKey.import_key(pem).as_dict(private=False)
    client_id = f"jwt-{alg.lower()}"
    jwks = {"keys": [public | {"kid": "k1", "alg": alg}]}
    sandbox_ehr.manage(
        "sandbox_client", "add", "--client-id", client_id, "--redirect-uri", REDIRECT, "--jwks-json", json.dumps(jwks)
    )
    EHRSite.objects.create(
        name="Sandbox",
        iss=sandbox_ehr.fhir_base,
        client_id=client_id,
        signing_alg=alg,
        auth_method=EHRSite.AuthMethod.PRIVATE_KEY_JWT,
        private_key_pem=pem,
        key_id="k1",
    )
    result = complete_launch(client, sandbox_ehr, patient="pat014")
    assert result.launch_id, result.response.content[:300]
    assert Launch.objects.get(pk=result.launch_id).status == Launch.Status.ACTIVE


def test_it_launches_as_a_symmetric_client_with_an_awkward_secret(client, sandbox_ehr, settings):
    settings.APP_BASE_URL = "http://testserver"
    secret = "s3:cr%t+/="
    sandbox_ehr.manage(
        "sandbox_client", "add", "--client-id", "basic-app", "--redirect-uri", REDIRECT, "--client-secret", secret
    )
    EHRSite.objects.create(
        name="Sandbox",
        iss=sandbox_ehr.fhir_base,
        client_id="basic-app",
        auth_method=EHRSite.AuthMethod.CLIENT_SECRET_BASIC,
        client_secret=secret,
    )
    result = complete_launch(client, sandbox_ehr, patient="pat014")
    assert result.launch_id, result.response.content[:300]


def test_a_wrong_secret_ends_in_a_clear_page_not_a_500(client, sandbox_ehr, settings):
    settings.APP_BASE_URL = "http://testserver"
    sandbox_ehr.manage(
        "sandbox_client", "add", "--client-id", "basic-app2", "--redirect-uri", REDIRECT, "--client-secret", "right"
    )
    EHRSite.objects.create(
        name="Sandbox",
        iss=sandbox_ehr.fhir_base,
        client_id="basic-app2",
        auth_method=EHRSite.AuthMethod.CLIENT_SECRET_BASIC,
        client_secret="wrong",
    )
    result = complete_launch(client, sandbox_ehr, patient="pat014")
    assert result.launch_id is None
    assert result.response.status_code == 400
    assert b"refused this app&#x27;s set-up" in result.response.content  # for IT, with a reference (issue 18)


def test_a_site_added_with_its_own_private_key_signs_with_it_even_when_a_shared_key_is_active(
    client, sandbox_ehr, settings, tmp_path
):
    """``ehr_site add --private-key k.pem --key-id k1``: the EHR registered only k1's public key, so a launch and a
    backend token signed with the shared demo key would be refused (``invalid_client``)."""
    settings.APP_BASE_URL = "http://testserver"
    shared = signing_key_create(site=None, alg="RS384", actor="test")
    signing_key_activate(kid=shared.kid, actor="test", force=True)
    pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (tmp_path / "k.pem").write_text(pem)
    k1 = RSAKey.import_key(pem).as_dict(private=False) | {"kid": "k1", "alg": "RS384"}
    sandbox_ehr.manage("sandbox_client", "add", "--client-id", "own-key-app", "--redirect-uri", REDIRECT,
                       "--scope", f"{DEFAULT_CLIENT_SCOPE} system/Patient.rs", "--jwks-json",
                       json.dumps({"keys": [k1]}))  # fmt: skip
    call_command("ehr_site", "add", "--name", "Own Key", "--iss", sandbox_ehr.fhir_base, "--client-id",
                 "own-key-app", "--private-key", str(tmp_path / "k.pem"), "--key-id", "k1", "--alg", "RS384",
                 stdout=io.StringIO())  # fmt: skip

    result = complete_launch(client, sandbox_ehr, patient="pat014")

    assert result.launch_id, getattr(result.response, "content", b"")[:300]
    assert Launch.objects.get(pk=result.launch_id).status == Launch.Status.ACTIVE
    site = EHRSite.objects.get(client_id="own-key-app")
    site.backend_services, site.backend_scopes = True, "system/Patient.rs"
    site.save()
    backend_tokens_forget()
    assert backend_token(site).access_token  # over HTTP, signed with k1
    signing = next(c for c in site_readiness(site).checks if c.name == "signing_key")
    assert "the site's own RS384 key k1 (stored private key)" in signing.detail
