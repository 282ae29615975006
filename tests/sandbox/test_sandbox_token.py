"""The token endpoint: PKCE verification, the three client authentication methods, id_token and context."""

import base64
from typing import Any
from urllib.parse import quote

from django.test import Client
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from healthcommerce.sandbox.models import SandboxClient
from healthcommerce.sandbox.services import sandbox_client_register
from tests.sandbox.helpers import FHIR_BASE, REDIRECT_URI, SmartApp, client_assertion, query_of

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def id_token_claims(client: Client, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/sandbox/oauth/jwks").json())
    return jwt.decode(token, keys, algorithms=["RS256"]).claims


def test_a_public_client_gets_a_token_with_the_launch_context(app: SmartApp, public_client: SandboxClient) -> None:
    token = app.token(patient="pat014", request="DeviceRequest/devreq021")

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["patient"] == "pat014"
    assert token["encounter"] == "enc-pat014-cpape0601"
    assert token["fhirContext"] == [{"reference": "DeviceRequest/devreq021"}]
    assert token["need_patient_banner"] is True
    assert token["smart_style_url"] == "http://localhost/sandbox/smart-style.json"
    assert token["scope"].split() == [
        "launch",
        "openid",
        "fhirUser",
        "patient/DeviceRequest.read",
        "patient/Patient.read",
    ]
    assert "refresh_token" not in token


def test_a_launch_without_encounter_gives_no_encounter(app: SmartApp, public_client: SandboxClient) -> None:
    token = app.token(patient="pat013", request="DeviceRequest/devreq013")

    assert token["patient"] == "pat013"
    assert "encounter" not in token


def test_a_launch_without_a_request_gives_no_fhir_context(app: SmartApp, public_client: SandboxClient) -> None:
    token = app.token(patient="pat1234")

    assert "fhirContext" not in token
    assert "encounter" not in token


def test_the_token_response_is_not_cached(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.exchange(app.code(client_id="public-app"), client_id="public-app")

    assert response["Cache-Control"] == "no-store"


def test_the_granted_scope_is_the_requested_scope_within_the_clients(app: SmartApp, sandbox_data: dict) -> None:
    sandbox_client_register(client_id="narrow", redirect_uris=[REDIRECT_URI], scope="launch patient/*.read")

    token = app.token(client_id="narrow")

    assert token["scope"].split() == ["launch", "patient/DeviceRequest.read", "patient/Patient.read"]
    assert "id_token" not in token


def test_the_id_token_verifies_with_the_jwks_and_names_the_fhir_user(
    client: Client, app: SmartApp, public_client: SandboxClient
) -> None:
    authorized = app.authorize(client_id="public-app", launch=app.launch(practitioner="pra1234"), nonce="n-1")

    token = app.exchange(query_of(authorized)["code"], client_id="public-app").json()

    claims = id_token_claims(client, token["id_token"])
    assert claims["iss"] == FHIR_BASE
    assert claims["aud"] == "public-app"
    assert claims["sub"] == "pra1234"
    assert claims["fhirUser"] == f"{FHIR_BASE}/Practitioner/pra1234"
    assert claims["nonce"] == "n-1"
    assert claims["exp"] > claims["iat"]


def test_it_refuses_a_token_request_without_code_verifier(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.exchange(app.code(client_id="public-app"), client_id="public-app", code_verifier=None)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_it_refuses_a_wrong_code_verifier(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.exchange(app.code(client_id="public-app"), client_id="public-app", code_verifier="x" * 50)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_it_refuses_a_code_used_twice(app: SmartApp, public_client: SandboxClient) -> None:
    code = app.code(client_id="public-app")
    assert app.exchange(code, client_id="public-app").status_code == 200

    response = app.exchange(code, client_id="public-app")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_it_refuses_another_redirect_uri_at_the_token_endpoint(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.exchange(
        app.code(client_id="public-app"), client_id="public-app", redirect_uri="http://127.0.0.1:9/smart/callback"
    )

    assert response.json()["error"] == "invalid_grant"


def test_a_symmetric_client_authenticates_with_http_basic(app: SmartApp, secret_client: SandboxClient) -> None:
    response = app.exchange(app.code(client_id="secret-app"), headers=basic("secret-app", "s3cr:t"))

    assert response.status_code == 200, response.content
    assert response.json()["patient"] == "pat014"


def test_it_refuses_a_symmetric_client_with_a_wrong_secret(app: SmartApp, secret_client: SandboxClient) -> None:
    response = app.exchange(app.code(client_id="secret-app"), headers=basic("secret-app", "wrong"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_it_refuses_a_confidential_client_that_does_not_authenticate(
    app: SmartApp, secret_client: SandboxClient
) -> None:
    response = app.exchange(app.code(client_id="secret-app"), client_id="secret-app")

    assert response.json()["error"] == "invalid_client"


def test_an_asymmetric_client_authenticates_with_an_rs384_assertion(
    app: SmartApp, jwt_client: SandboxClient, rsa_key: RSAKey
) -> None:
    response = app.exchange(
        app.code(client_id="jwt-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(rsa_key, client_id="jwt-app"),
    )

    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


def test_an_asymmetric_client_authenticates_with_an_es384_assertion(
    app: SmartApp, sandbox_data: dict, ec_key: ECKey
) -> None:
    jwks = {"keys": [ec_key.as_dict(private=False)]}
    sandbox_client_register(client_id="ec-app", redirect_uris=[REDIRECT_URI], auth_method="private_key_jwt", jwks=jwks)

    response = app.exchange(
        app.code(client_id="ec-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(ec_key, client_id="ec-app", alg="ES384"),
    )

    assert response.status_code == 200, response.content


def test_it_refuses_a_replayed_assertion(app: SmartApp, jwt_client: SandboxClient, rsa_key: RSAKey) -> None:
    assertion = client_assertion(rsa_key, client_id="jwt-app")
    first = app.exchange(
        app.code(client_id="jwt-app"), client_assertion_type=ASSERTION_TYPE, client_assertion=assertion
    )
    assert first.status_code == 200

    response = app.exchange(
        app.code(client_id="jwt-app"), client_assertion_type=ASSERTION_TYPE, client_assertion=assertion
    )

    assert response.json()["error"] == "invalid_client"


def test_it_refuses_an_assertion_that_lives_too_long(app: SmartApp, jwt_client: SandboxClient, rsa_key: RSAKey) -> None:
    response = app.exchange(
        app.code(client_id="jwt-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(rsa_key, client_id="jwt-app", lifetime=3600),
    )

    assert response.json()["error"] == "invalid_client"


def test_it_refuses_an_assertion_signed_by_another_key(app: SmartApp, jwt_client: SandboxClient) -> None:
    other = RSAKey.generate_key(2048, auto_kid=True)

    response = app.exchange(
        app.code(client_id="jwt-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(other, client_id="jwt-app"),
    )

    assert response.json()["error"] == "invalid_client"


def test_it_refuses_an_hs256_assertion(app: SmartApp, jwt_client: SandboxClient) -> None:
    secret = OctKey.import_key("a-shared-secret-that-is-long-enough-32b")

    response = app.exchange(
        app.code(client_id="jwt-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(secret, client_id="jwt-app", alg="HS256"),  # type: ignore[arg-type]
    )

    assert response.json()["error"] == "invalid_client"


def test_it_refuses_a_jku_that_is_not_registered(app: SmartApp, jwt_client: SandboxClient, rsa_key: RSAKey) -> None:
    response = app.exchange(
        app.code(client_id="jwt-app"),
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(rsa_key, client_id="jwt-app", jku="https://evil.example/jwks"),
    )

    assert response.json()["error"] == "invalid_client"
