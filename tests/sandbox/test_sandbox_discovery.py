"""SMART and OpenID discovery, the CapabilityStatement, the JWKS and the style document."""

from django.test import Client

from tests.sandbox.helpers import FHIR_BASE

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def test_it_publishes_the_smart_configuration(client: Client, sandbox_data: dict[str, int]) -> None:
    response = client.get("/sandbox/fhir/.well-known/smart-configuration")

    config = response.json()
    assert response.status_code == 200
    assert config["issuer"] == FHIR_BASE
    assert config["authorization_endpoint"] == "http://localhost/sandbox/oauth/authorize"
    assert config["token_endpoint"] == "http://localhost/sandbox/oauth/token"
    assert config["jwks_uri"] == "http://localhost/sandbox/oauth/jwks"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "private_key_jwt", "none"} <= set(config["token_endpoint_auth_methods_supported"])
    assert {"launch-ehr", "context-ehr-encounter", "sso-openid-connect", "authorize-post", "permission-v2"} <= set(
        config["capabilities"]
    )


def test_its_urls_follow_the_request_host(sandbox_data: dict[str, int]) -> None:
    response = Client(HTTP_HOST="127.0.0.1:8765").get("/sandbox/fhir/.well-known/smart-configuration")

    assert response.json()["issuer"] == "http://127.0.0.1:8765/sandbox/fhir"


def test_the_openid_issuer_is_exactly_the_fhir_base(client: Client, sandbox_data: dict[str, int]) -> None:
    config = client.get("/sandbox/fhir/.well-known/openid-configuration").json()

    assert config["issuer"] == FHIR_BASE
    assert config["jwks_uri"] == "http://localhost/sandbox/oauth/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]


def test_metadata_carries_the_oauth_uris_for_older_clients(client: Client, sandbox_data: dict[str, int]) -> None:
    response = client.get("/sandbox/fhir/metadata")

    body = response.json()
    assert response["Content-Type"].startswith("application/fhir+json")
    assert body["resourceType"] == "CapabilityStatement"
    extension = next(e for e in body["rest"][0]["security"]["extension"] if e["url"] == OAUTH_URIS)
    uris = {e["url"]: e["valueUri"] for e in extension["extension"]}
    assert uris == {
        "authorize": "http://localhost/sandbox/oauth/authorize",
        "token": "http://localhost/sandbox/oauth/token",
    }
    assert "DeviceRequest" in {r["type"] for r in body["rest"][0]["resource"]}


def test_the_jwks_holds_the_id_token_key_and_the_cds_hooks_key_public_only(
    client: Client, sandbox_data: dict[str, int]
) -> None:
    keys = client.get("/sandbox/oauth/jwks").json()["keys"]

    assert [(k["kty"], k["alg"]) for k in keys] == [("RSA", "RS256"), ("RSA", "RS384")]
    assert keys[1]["kid"].startswith("cds-") and keys[0]["kid"]
    assert not any(member in key for key in keys for member in ("d", "p", "q", "dp", "dq", "qi"))


def test_the_signing_key_is_created_once(client: Client, sandbox_data: dict[str, int]) -> None:
    first = client.get("/sandbox/oauth/jwks").json()

    assert client.get("/sandbox/oauth/jwks").json() == first


def test_it_serves_the_smart_style(client: Client, sandbox_data: dict[str, int]) -> None:
    style = client.get("/sandbox/smart-style.json").json()

    assert style["color_background"].startswith("#")
