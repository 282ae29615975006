"""Refresh tokens at the sandbox token endpoint (RFC 6749 section 6; SMART 2.2 "Refresh access token"): issued
only with ``offline_access``/``online_access``, rotated on every use, reuse revokes the grant."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone
from joserfc.jwk import RSAKey

from healthcommerce.sandbox.models import SandboxClient, SandboxToken
from healthcommerce.sandbox.services import sandbox_client_register
from tests.sandbox.helpers import REDIRECT_URI, SCOPE, SmartApp, client_assertion, query_of

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ONLINE_SCOPE = f"{SCOPE} online_access"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def first_token(
    app: SmartApp, *, client_id: str = "public-app", scope: str = ONLINE_SCOPE, **auth: Any
) -> dict[str, Any]:
    """Run a launch with ``scope`` and the code exchange (``auth``: extra form fields or ``headers``)."""
    authorized = app.authorize(
        client_id=client_id, launch=app.launch(patient="pat014", request="DeviceRequest/devreq021"), scope=scope
    )
    assert authorized.status_code == 302, authorized.content[:300]
    if not auth:
        auth = {"client_id": client_id}
    response = app.exchange(query_of(authorized)["code"], **auth)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client: Client, refresh_token: str, *, headers: dict[str, str] | None = None, **form: str) -> HttpResponse:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token} | form
    return client.post("/sandbox/oauth/token", data, headers=headers or {})


def test_discovery_advertises_refresh(client: Client, sandbox_data: dict) -> None:
    config = client.get("/sandbox/fhir/.well-known/smart-configuration").json()

    assert {"permission-offline", "permission-online"} <= set(config["capabilities"])
    assert "refresh_token" in config["grant_types_supported"]
    assert {"offline_access", "online_access"} <= set(config["scopes_supported"])


def test_no_refresh_token_without_offline_or_online_access(app: SmartApp, public_client: SandboxClient) -> None:
    token = first_token(app, scope=SCOPE)

    assert "refresh_token" not in token
    assert SandboxToken.objects.get().refresh_token_hash == ""


def test_no_refresh_token_when_the_client_may_not_get_online_access(app: SmartApp, sandbox_data: dict) -> None:
    sandbox_client_register(client_id="narrow", redirect_uris=[REDIRECT_URI], scope="launch patient/*.read")

    token = first_token(app, client_id="narrow")

    assert "online_access" not in token["scope"].split()
    assert "refresh_token" not in token


@pytest.mark.parametrize("scope_name", ["online_access", "offline_access"])
def test_a_refresh_token_comes_with_online_or_offline_access(
    app: SmartApp, sandbox_data: dict, scope_name: str
) -> None:
    sandbox_client_register(
        client_id="public-app",
        redirect_uris=[REDIRECT_URI],
        scope=f"launch openid fhirUser {scope_name} patient/*.read",
    )

    token = first_token(app, scope=f"{SCOPE} {scope_name}")

    assert len(token["refresh_token"]) == 48
    stored = SandboxToken.objects.get()
    assert token["refresh_token"] not in (stored.refresh_token_hash, stored.access_token_hash)  # stored hashed
    assert stored.refresh_expires_at > stored.expires_at


def test_a_refresh_gives_a_new_access_token_with_the_launch_context_and_scope(
    client: Client, app: SmartApp, public_client: SandboxClient
) -> None:
    first = first_token(app)
    SandboxToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert app.get("DeviceRequest/devreq021", first["access_token"]).status_code == 401

    response = refresh(client, first["refresh_token"], client_id="public-app")

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    token = response.json()
    assert token["access_token"] != first["access_token"]
    assert token["refresh_token"] != first["refresh_token"]
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == first["scope"]
    assert token["patient"] == "pat014"
    assert token["fhirContext"] == [{"reference": "DeviceRequest/devreq021"}]
    assert app.get("DeviceRequest/devreq021", token["access_token"]).status_code == 200
    assert app.get("Patient/pat013", token["access_token"]).status_code == 403  # still the launch patient only


def test_the_access_token_lifetime_comes_from_the_settings(
    client: Client, app: SmartApp, public_client: SandboxClient, settings: Any
) -> None:
    settings.SANDBOX_TOKEN_TTL = 2
    first = first_token(app)

    second = refresh(client, first["refresh_token"], client_id="public-app").json()

    assert first["expires_in"] == second["expires_in"] == 2


def test_rotation_refuses_the_old_refresh_token_and_reuse_revokes_the_grant(
    client: Client, app: SmartApp, public_client: SandboxClient
) -> None:
    first = first_token(app)
    second = refresh(client, first["refresh_token"], client_id="public-app").json()
    third = refresh(client, second["refresh_token"], client_id="public-app").json()
    assert app.get("Patient/pat014", third["access_token"]).status_code == 200

    reused = refresh(client, first["refresh_token"], client_id="public-app")

    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # Reuse detection: the newest refresh token and the newest access token of the grant are revoked too.
    assert refresh(client, third["refresh_token"], client_id="public-app").json()["error"] == "invalid_grant"
    assert app.get("Patient/pat014", third["access_token"]).status_code == 401


def test_reuse_does_not_touch_another_grant(client: Client, app: SmartApp, public_client: SandboxClient) -> None:
    mine = first_token(app)
    other = first_token(SmartApp(client))
    refresh(client, mine["refresh_token"], client_id="public-app")

    assert refresh(client, mine["refresh_token"], client_id="public-app").json()["error"] == "invalid_grant"

    assert refresh(client, other["refresh_token"], client_id="public-app").status_code == 200


def test_rotation_does_not_extend_the_refresh_deadline(
    client: Client, app: SmartApp, public_client: SandboxClient, settings: Any
) -> None:
    settings.SANDBOX_REFRESH_TOKEN_TTL = 120
    first = first_token(app)
    deadline = SandboxToken.objects.get().refresh_expires_at
    assert timedelta(seconds=110) < deadline - timezone.now() <= timedelta(seconds=120)

    second = refresh(client, first["refresh_token"], client_id="public-app").json()

    assert SandboxToken.objects.get(refresh_revoked_at__isnull=True).refresh_expires_at == deadline
    SandboxToken.objects.update(refresh_expires_at=timezone.now() - timedelta(seconds=1))
    expired = refresh(client, second["refresh_token"], client_id="public-app")
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


def test_a_narrower_scope_is_allowed_and_a_wider_one_refused(
    client: Client, app: SmartApp, public_client: SandboxClient
) -> None:
    first = first_token(app)

    wider = refresh(client, first["refresh_token"], client_id="public-app", scope=f"{ONLINE_SCOPE} user/*.read")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"

    narrower = refresh(client, first["refresh_token"], client_id="public-app", scope="launch patient/Patient.read")
    assert narrower.status_code == 200, narrower.content
    token = narrower.json()
    assert token["scope"] == "launch patient/Patient.read"
    assert "refresh_token" not in token  # online_access was dropped, so the grant ends here
    assert app.get("Patient/pat014", token["access_token"]).status_code == 200
    assert app.get("DeviceRequest/devreq021", token["access_token"]).status_code == 403


def test_it_refuses_unknown_and_missing_refresh_tokens(client: Client, public_client: SandboxClient) -> None:
    unknown = refresh(client, "not-a-refresh-token", client_id="public-app")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_grant"

    missing = client.post("/sandbox/oauth/token", {"grant_type": "refresh_token", "client_id": "public-app"})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


def test_another_client_cannot_use_the_refresh_token_or_revoke_the_grant(
    client: Client, app: SmartApp, public_client: SandboxClient
) -> None:
    sandbox_client_register(client_id="other-app", redirect_uris=[REDIRECT_URI])
    first = first_token(app)

    stolen = refresh(client, first["refresh_token"], client_id="other-app")

    assert stolen.json()["error"] == "invalid_grant"
    assert refresh(client, first["refresh_token"], client_id="public-app").status_code == 200


def test_a_symmetric_client_must_authenticate_to_refresh(
    client: Client, app: SmartApp, secret_client: SandboxClient
) -> None:
    first = first_token(app, client_id="secret-app", headers=basic("secret-app", "s3cr:t"))

    unauthenticated = refresh(client, first["refresh_token"], client_id="secret-app")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "invalid_client"
    wrong = refresh(client, first["refresh_token"], headers=basic("secret-app", "wrong"))
    assert wrong.json()["error"] == "invalid_client"

    response = refresh(client, first["refresh_token"], headers=basic("secret-app", "s3cr:t"))
    assert response.status_code == 200, response.content
    assert response.json()["refresh_token"]


def test_an_asymmetric_client_refreshes_with_a_fresh_assertion(
    client: Client, app: SmartApp, jwt_client: SandboxClient, rsa_key: RSAKey
) -> None:
    first = first_token(
        app,
        client_id="jwt-app",
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(rsa_key, client_id="jwt-app"),
    )

    response = refresh(
        client,
        first["refresh_token"],
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=client_assertion(rsa_key, client_id="jwt-app"),
    )

    assert response.status_code == 200, response.content
    assert response.json()["patient"] == "pat014"
