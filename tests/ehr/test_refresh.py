"""Refreshing a launch's access token against the real sandbox EHR process (SMART App Launch 2.2 "Refresh access
token"; RFC 6749 section 6; OAuth 2.0 Security BCP refresh token rotation).

The sandbox here runs with 2-second access tokens (``SANDBOX_TOKEN_TTL``) over its own copy of the database, so
the tests can count the tokens it issued.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection
from django.utils import timezone
from joserfc.jwk import RSAKey

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr import tokens
from healthcommerce.ehr.errors import ReauthorizationNeeded, RefreshUnavailable
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.ehr.tokens import launch_access_token, launch_token_refresh
from tests.conftest import SandboxEHR, complete_launch, sandbox_database_copy, sandbox_server

TTL = 2  # seconds, the sandbox's access token lifetime
CLIENT_ID = "refresh-app"
REDIRECT = "http://testserver/smart/callback"
ONLINE_SCOPES = f"{default_scopes()} online_access"


@pytest.fixture(scope="module")
def refresh_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the loaded sandbox database."""
    return sandbox_database_copy(tmp_path_factory.mktemp("refresh") / "sandbox.sqlite3")


@pytest.fixture(scope="module")
def refresh_sandbox(refresh_db: Path) -> Iterator[SandboxEHR]:
    """A sandbox EHR process issuing 2-second access tokens, with the public client ``refresh-app``."""
    with sandbox_server(database=refresh_db, SANDBOX_TOKEN_TTL=str(TTL)) as sandbox:
        sandbox.manage("sandbox_client", "add", "--client-id", CLIENT_ID, "--redirect-uri", REDIRECT)
        yield sandbox


@pytest.fixture
def site(refresh_sandbox: SandboxEHR, settings: Any) -> EHRSite:
    """The sandbox as an EHR site that asks for ``online_access`` (so it gets a refresh token)."""
    settings.APP_BASE_URL = "http://testserver"
    return EHRSite.objects.create(
        name="Sandbox", iss=refresh_sandbox.fhir_base, client_id=CLIENT_ID, scopes=ONLINE_SCOPES
    )


def sandbox_tokens(db: Path) -> int:
    """Return how many access tokens the sandbox has issued (its own database)."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM sandbox_sandboxtoken").fetchone()[0])


def launched(client: Any, sandbox: SandboxEHR) -> Launch:
    result = complete_launch(client, sandbox, patient="pat014", request="DeviceRequest/devreq021")
    assert result.launch_id, getattr(result.response, "content", b"")[:500]
    return Launch.objects.select_related("site").get(pk=result.launch_id)


def expire(launch: Launch) -> None:
    """Make the app see the access token as expired (the sandbox's copy may still be valid)."""
    Launch.objects.filter(pk=launch.pk).update(token_expires_at=timezone.now() - timedelta(seconds=1))
    launch.refresh_from_db()


def read_patient(launch: Launch, token: str) -> int:
    """Read the launch's Patient from the sandbox FHIR API with ``token``; return the HTTP status."""
    url = f"{launch.site.iss}/Patient/{launch.patient_id}"
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if response.status_code == 200:
        assert response.json()["id"] == launch.patient_id
    return response.status_code


def sandbox_refresh(sandbox: SandboxEHR, refresh_token: str) -> requests.Response:
    """Present ``refresh_token`` to the sandbox directly, as another holder of it would."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    return requests.post(f"{sandbox.base}/sandbox/oauth/token", data=data, timeout=10)


def refresh_audits(outcome: str = "success") -> int:
    return AuditEvent.objects.filter(action="smart.refresh", outcome=outcome).count()


@pytest.mark.django_db
def test_an_expired_token_is_refreshed_and_the_new_one_reads(client, site, refresh_sandbox, refresh_db):
    launch = launched(client, refresh_sandbox)
    old_access, old_refresh = launch.access_token, launch.refresh_token
    assert old_refresh, "the sandbox grants a refresh token with online_access"
    assert "online_access" in launch.scope_granted.split()
    time.sleep(TTL + 0.5)
    assert read_patient(launch, old_access) == 401
    issued = sandbox_tokens(refresh_db)

    token = launch_access_token(launch)

    assert token not in ("", old_access)
    assert read_patient(launch, token) == 200
    stored = Launch.objects.get(pk=launch.pk)
    assert stored.access_token == token == launch.access_token
    assert stored.refresh_token not in ("", old_refresh)  # rotated
    assert stored.token_expires_at > timezone.now()
    assert stored.token_expires_at <= timezone.now() + timedelta(seconds=TTL)
    assert "online_access" in stored.scope_granted.split()
    assert sandbox_tokens(refresh_db) == issued + 1
    event = AuditEvent.objects.get(action="smart.refresh")
    assert (event.outcome, event.target, event.where) == ("success", f"Launch/{launch.pk}", site.iss)
    assert event.detail == {"forced": False, "rotated": True}
    assert token not in json.dumps(event.detail) and token not in event.actor


@pytest.mark.django_db
def test_a_fresh_token_is_used_without_any_request(client, site, refresh_sandbox, monkeypatch):
    launch = launched(client, refresh_sandbox)
    Launch.objects.filter(pk=launch.pk).update(token_expires_at=timezone.now() + timedelta(minutes=10))
    launch.refresh_from_db()

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a fresh token needs no request")

    monkeypatch.setattr(requests.Session, "request", no_network)

    assert launch_access_token(launch) == launch.access_token
    assert refresh_audits() == 0


@pytest.mark.django_db
def test_a_401_mid_read_forces_a_refresh(client, site, refresh_sandbox):
    launch = launched(client, refresh_sandbox)
    Launch.objects.filter(pk=launch.pk).update(token_expires_at=timezone.now() + timedelta(minutes=10))
    launch.refresh_from_db()
    old = launch.access_token

    token = launch_token_refresh(launch)

    assert token != old
    assert read_patient(launch, token) == 200
    assert AuditEvent.objects.get(action="smart.refresh").detail["forced"] is True


@pytest.mark.django_db
def test_rotation_the_old_refresh_token_is_refused_by_the_sandbox(client, site, refresh_sandbox):
    launch = launched(client, refresh_sandbox)
    old_refresh = launch.refresh_token
    expire(launch)

    launch_access_token(launch)

    assert launch.refresh_token not in ("", old_refresh)
    replay = sandbox_refresh(refresh_sandbox, old_refresh)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


@pytest.mark.django_db
def test_reuse_of_a_rotated_refresh_token_revokes_the_grant(client, site, refresh_sandbox):
    launch = launched(client, refresh_sandbox)
    stolen = launch.refresh_token
    expire(launch)
    current = launch_access_token(launch)
    assert read_patient(launch, current) == 200

    assert sandbox_refresh(refresh_sandbox, stolen).json()["error"] == "invalid_grant"  # reuse detected

    assert read_patient(launch, current) == 401  # the grant's newest access token is revoked too
    with pytest.raises(ReauthorizationNeeded) as refused:
        launch_token_refresh(launch)
    assert refused.value.code == "refresh_invalid_grant"
    assert Launch.objects.get(pk=launch.pk).refresh_token == ""
    assert refresh_audits("refresh_invalid_grant") == 1


@pytest.mark.django_db
def test_a_refused_refresh_asks_to_relaunch_and_clears_the_refresh_token(client, site, refresh_sandbox):
    launch = launched(client, refresh_sandbox)
    assert sandbox_refresh(refresh_sandbox, launch.refresh_token).status_code == 200  # spent elsewhere
    expire(launch)

    with pytest.raises(ReauthorizationNeeded) as refused:
        launch_access_token(launch)

    assert refused.value.code == "refresh_invalid_grant"
    assert "launch the app again" in refused.value.message and "draft is kept" in refused.value.message
    stored = Launch.objects.get(pk=launch.pk)
    assert stored.refresh_token == "" == launch.refresh_token
    assert stored.status == Launch.Status.ACTIVE
    with pytest.raises(ReauthorizationNeeded) as again:
        launch_access_token(launch)
    assert again.value.code == "no_refresh_token"


@pytest.mark.django_db
def test_without_a_refresh_token_the_clinician_is_asked_to_relaunch(client, site, refresh_sandbox, monkeypatch):
    site.scopes = default_scopes()  # no online_access: the sandbox grants no refresh token
    site.save(update_fields=["scopes"])
    launch = launched(client, refresh_sandbox)
    assert launch.refresh_token == ""
    expire(launch)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no refresh token, no request")

    monkeypatch.setattr(requests.Session, "request", no_network)
    with pytest.raises(ReauthorizationNeeded) as needed:
        launch_access_token(launch)

    assert needed.value.code == "no_refresh_token"
    assert needed.value.message == (
        "Your EHR session has ended. Please launch the app again from the EHR; your draft is kept."
    )
    assert refresh_audits("no_refresh_token") == 1


@pytest.mark.django_db
def test_an_unreachable_token_endpoint_says_try_again_and_keeps_the_refresh_token(
    client, site, refresh_sandbox, monkeypatch
):
    launch = launched(client, refresh_sandbox)
    refresh_token = launch.refresh_token
    expire(launch)
    dead = {"authorization_endpoint": "http://127.0.0.1:9/authorize", "token_endpoint": "http://127.0.0.1:9/token"}
    monkeypatch.setattr(tokens, "discover", lambda site: dead)

    with pytest.raises(RefreshUnavailable) as needed:
        launch_access_token(launch)

    assert needed.value.code == "refresh_unreachable" and needed.value.temporary
    assert "try again in a moment" in needed.value.message
    assert Launch.objects.get(pk=launch.pk).refresh_token == refresh_token
    assert refresh_audits("refresh_unreachable") == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_callers_refresh_once(client, site, refresh_sandbox, refresh_db):
    launch = launched(client, refresh_sandbox)
    expire(launch)
    issued = sandbox_tokens(refresh_db)
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            mine = Launch.objects.select_related("site").get(pk=launch.pk)
            barrier.wait(timeout=10)
            results.append(launch_access_token(mine))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1] != launch.access_token
    assert sandbox_tokens(refresh_db) == issued + 1
    assert refresh_audits() == 1
    assert read_patient(launch, results[0]) == 200


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.django_db
def test_an_asymmetric_client_refreshes_with_private_key_jwt(client, refresh_sandbox, settings):
    settings.APP_BASE_URL = "http://testserver"
    pem = _pem()
    jwks = {"keys": [RSAKey.import_key(pem).as_dict(private=False) | {"kid": "k1", "alg": "RS384"}]}
    refresh_sandbox.manage(
        "sandbox_client",
        "add",
        "--client-id",
        "refresh-jwt",
        "--redirect-uri",
        REDIRECT,
        "--jwks-json",
        json.dumps(jwks),
    )
    EHRSite.objects.create(
        name="Sandbox",
        iss=refresh_sandbox.fhir_base,
        client_id="refresh-jwt",
        auth_method=EHRSite.AuthMethod.PRIVATE_KEY_JWT,
        private_key_pem=pem,
        key_id="k1",
        scopes=ONLINE_SCOPES,
    )
    launch = launched(client, refresh_sandbox)
    old = launch.access_token
    expire(launch)

    token = launch_access_token(launch)

    assert token != old
    assert read_patient(launch, token) == 200


# --- Epic-style responses (no sandbox needed) ----------------------------------------------------------------


@pytest.fixture
def epic_launch(db: None) -> Launch:
    site = EHRSite.objects.create(name="Epic", iss="https://epic.example/fhir", client_id="c", scopes=ONLINE_SCOPES)
    return Launch.objects.create(
        site=site,
        status=Launch.Status.ACTIVE,
        browser_key="k",
        state="s",
        code_verifier="v",
        nonce="n",
        launch_token="l",
        expires_at=timezone.now() + timedelta(hours=1),
        access_token="old-access",
        refresh_token="old-refresh",
        token_expires_at=timezone.now() - timedelta(seconds=1),
        scope_granted=ONLINE_SCOPES,
        patient_id="pat014",
    )


def test_a_response_without_refresh_token_expiry_or_scope_keeps_the_old_values(epic_launch, monkeypatch):
    monkeypatch.setattr(tokens, "_token_request", lambda site, rt: {"access_token": "new", "token_type": "bearer"})

    assert launch_access_token(epic_launch) == "new"

    stored = Launch.objects.get(pk=epic_launch.pk)
    assert stored.refresh_token == "old-refresh"  # not rotated: keep using it (SMART 2.2)
    assert stored.scope_granted == ONLINE_SCOPES
    lifetime = (stored.token_expires_at - timezone.now()).total_seconds()
    assert 3590 < lifetime <= 3600  # expires_in missing: one hour
    assert AuditEvent.objects.get(action="smart.refresh").detail == {"forced": False, "rotated": False}


def test_a_narrower_scope_is_stored(epic_launch, monkeypatch):
    response = {"access_token": "new", "token_type": "Bearer", "expires_in": 600, "scope": "launch patient/Patient.rs"}
    monkeypatch.setattr(tokens, "_token_request", lambda site, rt: response)

    launch_access_token(epic_launch)

    assert Launch.objects.get(pk=epic_launch.pk).scope_granted == "launch patient/Patient.rs"


def test_a_token_for_another_patient_is_refused(epic_launch, monkeypatch):
    response = {"access_token": "new", "token_type": "Bearer", "patient": "someone-else", "refresh_token": "r2"}
    monkeypatch.setattr(tokens, "_token_request", lambda site, rt: response)

    with pytest.raises(ReauthorizationNeeded) as refused:
        launch_access_token(epic_launch)

    assert refused.value.code == "refresh_patient_mismatch"
    stored = Launch.objects.get(pk=epic_launch.pk)
    assert (stored.access_token, stored.refresh_token) == ("old-access", "")


def test_a_malformed_response_asks_to_relaunch(epic_launch, monkeypatch):
    monkeypatch.setattr(tokens, "_token_request", lambda site, rt: {"access_token": "new", "token_type": "mac"})

    with pytest.raises(ReauthorizationNeeded) as refused:
        launch_access_token(epic_launch)

    assert refused.value.code == "refresh_malformed"
    assert Launch.objects.get(pk=epic_launch.pk).access_token == "old-access"


# --- The clinician's "Re-read from the EHR" button ------------------------------------------------------------


def open_draft(client: Any, launch: Launch) -> str:
    page = client.get(f"/o/{launch.pk}/", follow=True)
    assert page.status_code == 200
    return str(page.request["PATH_INFO"])


@pytest.mark.django_db
def test_re_read_after_the_token_expired_refreshes_it_and_reads_again(client: Any, site: EHRSite, refresh_sandbox):
    launch = launched(client, refresh_sandbox)
    order_path = open_draft(client, launch)
    old_refresh = Launch.objects.get(pk=launch.pk).refresh_token
    assert old_refresh
    refreshed = AuditEvent.objects.filter(action="smart.refresh", outcome="success").count()
    time.sleep(TTL + 0.5)  # the sandbox's access token has really expired now
    client.post(order_path, {"action": "save", "contact_email": "edited@example.org"})  # the draft was edited

    page = client.post(order_path, {"action": "reread"}, follow=True)
    assert page.status_code == 200
    assert b"Read again from the EHR." in page.content
    after = Launch.objects.get(pk=launch.pk)
    assert after.refresh_token and after.refresh_token != old_refresh  # rotated
    assert after.token_expires_at > timezone.now()
    assert set(after.prefill_outcomes.values()) == {"success"}
    assert AuditEvent.objects.filter(action="smart.refresh", outcome="success").count() == refreshed + 1


@pytest.mark.django_db
def test_re_read_without_a_refresh_token_says_to_relaunch_and_keeps_the_draft(
    client: Any, site: EHRSite, refresh_sandbox
):
    site.scopes = default_scopes()  # no online_access: the EHR grants no refresh token
    site.save()
    launch = launched(client, refresh_sandbox)
    order_path = open_draft(client, launch)
    assert Launch.objects.get(pk=launch.pk).refresh_token == ""
    expire(launch)
    drafts = list(launch.orders.values_list("pk", "status", "request_code"))

    page = client.post(order_path, {"action": "reread"}, follow=True)
    assert page.status_code == 200, page.content.decode()[:3000]
    assert b"Please launch the app again from the EHR; your draft is kept." in page.content
    assert list(launch.orders.values_list("pk", "status", "request_code")) == drafts
    assert page.request["PATH_INFO"] == order_path  # still on the draft


@pytest.mark.django_db
def test_pre_fill_keeps_both_tokens_and_re_read_renews_an_expired_access_token(
    client: Any, site: EHRSite, refresh_sandbox
):
    launch = launched(client, refresh_sandbox)
    assert launch.access_token and launch.refresh_token
    order_path = open_draft(client, launch)
    after = Launch.objects.get(pk=launch.pk)
    assert after.prefilled_at is not None
    assert after.access_token and after.refresh_token  # kept (encrypted) for the access token's lifetime
    assert after.token_expires_at is not None
    refreshes = refresh_audits()
    time.sleep(TTL + 0.5)  # the sandbox's access token has expired

    page = client.post(order_path, {"action": "reread"}, follow=True)  # a new access token from the refresh token
    assert b"Read again from the EHR." in page.content
    again = Launch.objects.get(pk=launch.pk)
    assert again.access_token not in ("", after.access_token)
    assert again.refresh_token not in ("", after.refresh_token)
    assert refresh_audits() == refreshes + 1
