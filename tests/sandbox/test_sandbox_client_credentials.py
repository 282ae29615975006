"""The sandbox's SMART Backend Services token endpoint (client credentials + signed assertion, ``system/`` scopes),
over HTTP against the running sandbox EHR, and the registration of backend clients."""

import io
import json
import secrets
import time
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.sandbox.models import SandboxClient
from tests.conftest import SandboxEHR

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "system/Patient.rs system/Coverage.rs"


def register(sandbox: SandboxEHR, client_id: str, *args: str) -> None:
    sandbox.manage("sandbox_client", "add", "--client-id", client_id, *args)


def assertion(sandbox: SandboxEHR, key: RSAKey | ECKey, client_id: str, *, alg: str = "RS384", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{sandbox.base}/sandbox/oauth/token",
        "exp": now + 240,
        "jti": secrets.token_hex(16),
    } | changes
    return jwt.encode({"alg": alg, "kid": str(key.kid), "typ": "JWT"}, claims, key, algorithms=[alg])


def token_request(sandbox: SandboxEHR, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(f"{sandbox.base}/sandbox/oauth/token", data=data, timeout=10, **kwargs)


def client_credentials(sandbox: SandboxEHR, key: RSAKey | ECKey, client_id: str, scope: str = SCOPE, **changes: Any):
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(sandbox, key, client_id, **changes),
    }
    return token_request(sandbox, data)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


@pytest.fixture(scope="module")
def backend_client(sandbox_ehr: SandboxEHR, rsa_key: RSAKey) -> str:
    """A backend-only client (no redirect URI) registered with its public JWKS and two system/ scopes."""
    jwks = {"keys": [rsa_key.as_dict(private=False) | {"alg": "RS384"}]}
    register(sandbox_ehr, "cc-backend", "--jwks-json", json.dumps(jwks), "--scope", SCOPE)
    return "cc-backend"


def test_a_backend_client_gets_a_short_system_token_without_refresh_token_or_launch_context(
    sandbox_ehr: SandboxEHR, rsa_key: RSAKey, backend_client: str
) -> None:
    response = client_credentials(sandbox_ehr, rsa_key, backend_client)

    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == SCOPE
    assert token["expires_in"] == 300
    assert response.headers["Cache-Control"] == "no-store"
    assert not {"refresh_token", "patient", "encounter", "fhirContext", "id_token"} & set(token)


def test_the_token_reads_any_patient_but_only_the_granted_types(
    sandbox_ehr: SandboxEHR, rsa_key: RSAKey, backend_client: str
) -> None:
    token = client_credentials(sandbox_ehr, rsa_key, backend_client, scope="system/Patient.rs").json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    for patient in ("pat014", "pat1234"):
        read = requests.get(f"{sandbox_ehr.fhir_base}/Patient/{patient}", headers=headers, timeout=10)
        assert read.status_code == 200 and read.json()["id"] == patient
    found = requests.get(f"{sandbox_ehr.fhir_base}/Patient", params={"_count": 2}, headers=headers, timeout=10)
    assert found.status_code == 200 and found.json()["total"] > 2
    other = requests.get(f"{sandbox_ehr.fhir_base}/DeviceRequest/devreq021", headers=headers, timeout=10)
    assert other.status_code == 403


def test_an_es384_backend_client_is_served_too(sandbox_ehr: SandboxEHR) -> None:
    key = ECKey.generate_key("P-384", auto_kid=True)
    register(sandbox_ehr, "cc-ec", "--jwks-json", json.dumps({"keys": [key.as_dict(private=False)]}), "--scope", SCOPE)

    response = client_credentials(sandbox_ehr, key, "cc-ec", alg="ES384")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        ("system/Patient.rs system/DeviceRequest.rs", "beyond the registration"),
        ("system/Patient.cruds", "more permissions than registered"),
        ("patient/Patient.rs", "not a system/ scope"),
        ("launch system/Patient.rs", "launch has no meaning here"),
        ("", "no scope at all"),
    ],
)
def test_a_scope_that_is_not_all_registered_system_scopes_is_refused(
    sandbox_ehr: SandboxEHR, rsa_key: RSAKey, backend_client: str, scope: str, why: str
) -> None:
    response = client_credentials(sandbox_ehr, rsa_key, backend_client, scope=scope)

    assert response.status_code == 400, why
    assert response.json()["error"] == "invalid_scope", why


def test_a_public_client_is_refused(sandbox_ehr: SandboxEHR) -> None:
    register(sandbox_ehr, "cc-public", "--redirect-uri", "http://127.0.0.1/cb")

    response = token_request(
        sandbox_ehr, {"grant_type": "client_credentials", "client_id": "cc-public", "scope": "system/Patient.rs"}
    )

    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


def test_a_client_secret_client_is_refused(sandbox_ehr: SandboxEHR) -> None:
    register(sandbox_ehr, "cc-secret", "--redirect-uri", "http://127.0.0.1/cb", "--client-secret", "s3cret")

    response = token_request(
        sandbox_ehr, {"grant_type": "client_credentials", "scope": "system/Patient.rs"}, auth=("cc-secret", "s3cret")
    )

    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


def test_an_assertion_signed_with_an_unregistered_key_is_refused(sandbox_ehr: SandboxEHR, backend_client: str) -> None:
    stranger = RSAKey.generate_key(2048, auto_kid=True)

    response = client_credentials(sandbox_ehr, stranger, backend_client)

    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == "invalid_client"


def test_an_expired_assertion_is_refused(sandbox_ehr: SandboxEHR, rsa_key: RSAKey, backend_client: str) -> None:
    now = int(time.time())

    response = client_credentials(sandbox_ehr, rsa_key, backend_client, iat=now - 900, exp=now - 600)

    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_a_replayed_assertion_is_refused(sandbox_ehr: SandboxEHR, rsa_key: RSAKey, backend_client: str) -> None:
    data = {
        "grant_type": "client_credentials",
        "scope": SCOPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(sandbox_ehr, rsa_key, backend_client),
    }
    assert token_request(sandbox_ehr, data).status_code == 200

    again = token_request(sandbox_ehr, data)

    assert again.status_code in (400, 401) and again.json()["error"] == "invalid_client"


def test_discovery_advertises_backend_services(sandbox_ehr: SandboxEHR) -> None:
    config = requests.get(f"{sandbox_ehr.fhir_base}/.well-known/smart-configuration", timeout=10).json()

    assert "client_credentials" in config["grant_types_supported"]
    assert "system/*.rs" in config["scopes_supported"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(config["capabilities"])
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_command_registers_a_backend_only_client_without_redirect_uri(db: None) -> None:
    output = run("sandbox_client", "add", "--client-id", "worker", "--jwks-url", "https://app.example/jwks.json",
                 "--scope", "system/Patient.rs system/Communication.c")  # fmt: skip

    client = SandboxClient.objects.get(client_id="worker")
    assert client.redirect_uris == [] and client.backend_services
    assert "backend services" in output
    assert "worker\tprivate_key_jwt backend" in run("sandbox_client", "list")


def test_the_command_refuses_system_scopes_for_a_client_without_keys(db: None) -> None:
    with pytest.raises(CommandError, match="private_key_jwt"):
        run("sandbox_client", "add", "--client-id", "w", "--client-secret", "s", "--scope", "system/Patient.rs")
    with pytest.raises(CommandError, match="redirect URI"):
        run("sandbox_client", "add", "--client-id", "w", "--scope", "launch patient/Patient.rs")
