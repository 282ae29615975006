"""Our signing keys (ehr/keys.py): the published JWKS, rotation with ``manage.py ehr_keys``, and, over HTTP, the
sandbox EHR trusting our JWKS URL (and ``jku``) through a rotation, a launch signed with the active key, and the
demo's backend-services registration."""

import io
import json
import secrets
import time
from datetime import timedelta

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.backend import backend_read, backend_token, backend_tokens_forget
from healthcommerce.ehr.errors import SigningKeyRefused
from healthcommerce.ehr.keys import (
    jwks_url,
    private_key,
    published_jwks,
    signing_key_activate,
    signing_key_create,
    signing_key_for,
    signing_key_remove,
)
from healthcommerce.ehr.management.commands.ehr_keys import kid_argument
from healthcommerce.ehr.models import AppSigningKey, EHRSite, Launch
from healthcommerce.ehr.oauth import client_key
from tests.conftest import SandboxEHR, complete_launch

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
ACTOR = "test"


def published_kids() -> set[str]:
    return {key["kid"] for key in published_jwks()["keys"]}


def age(row: AppSigningKey, hours: float) -> None:
    """Pretend ``row`` was published ``hours`` ago."""
    AppSigningKey.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=hours))
    row.refresh_from_db()


def active_key(*, site: EHRSite | None = None, alg: str = "RS384") -> AppSigningKey:
    row = signing_key_create(site=site, alg=alg, actor=ACTOR)
    return signing_key_activate(kid=row.kid, actor=ACTOR, force=True)[0]


@pytest.fixture(autouse=True)
def no_cached_tokens():  # type: ignore[no-untyped-def]
    backend_tokens_forget()
    yield
    backend_tokens_forget()


@pytest.mark.django_db
def test_the_jwks_endpoint_publishes_rs384_and_es384_public_keys_only(client) -> None:  # type: ignore[no-untyped-def]
    site = EHRSite.objects.create(name="Mercy", iss="https://ehr.example.org/fhir", client_id="hc")
    rsa = signing_key_create(site=None, alg="RS384", actor=ACTOR)
    ec = signing_key_create(site=site, alg="ES384", actor=ACTOR)

    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "public, max-age=3600"
    keys = {key["kid"]: key for key in response.json()["keys"]}
    assert set(keys) == {rsa.kid, ec.kid}
    assert (keys[rsa.kid]["kty"], keys[rsa.kid]["alg"], keys[rsa.kid]["use"]) == ("RSA", "RS384", "sig")
    assert (keys[ec.kid]["kty"], keys[ec.kid]["crv"], keys[ec.kid]["alg"]) == ("EC", "P-384", "ES384")
    assert all(not PRIVATE_MEMBERS & set(key) for key in keys.values())
    assert RSAKey.import_key(keys[rsa.kid]).thumbprint() == rsa.kid  # RFC 7638
    assert ECKey.import_key(keys[ec.kid]).thumbprint() == ec.kid
    assert RSAKey.import_key(keys[rsa.kid]).raw_value.key_size >= 2048


@pytest.mark.django_db
def test_the_private_key_is_encrypted_at_rest() -> None:
    row = signing_key_create(site=None, alg="RS384", actor=ACTOR)

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT private_jwk FROM {AppSigningKey._meta.db_table} WHERE kid = %s", [row.kid])
        stored = cursor.fetchone()[0]
    raw = stored.encode() if isinstance(stored, str) else bytes(stored)

    assert b'"d"' not in raw and row.kid.encode() not in raw
    assert private_key(row).thumbprint() == row.kid


@pytest.mark.django_db
def test_only_this_environments_published_keys_are_in_the_jwks(settings) -> None:  # type: ignore[no-untyped-def]
    settings.APP_ENVIRONMENT = "staging"
    staging = signing_key_create(site=None, alg="RS384", actor=ACTOR)
    settings.APP_ENVIRONMENT = "production"
    production = signing_key_create(site=None, alg="RS384", actor=ACTOR)

    assert published_kids() == {production.kid}
    assert signing_key_for(None, "RS384") is None  # a next key does not sign
    with pytest.raises(SigningKeyRefused) as caught:
        signing_key_activate(kid=staging.kid, actor=ACTOR, force=True)
    assert caught.value.code == "key_unknown"


@pytest.mark.django_db
def test_a_rotation_publishes_the_next_key_before_it_signs_and_the_old_one_until_removed() -> None:
    first = active_key()
    assert signing_key_for(None, "RS384") == first

    second = signing_key_create(site=None, alg="RS384", actor=ACTOR)
    assert published_kids() == {first.kid, second.kid}
    assert signing_key_for(None, "RS384") == first

    with pytest.raises(SigningKeyRefused) as too_new:
        signing_key_activate(kid=second.kid, actor=ACTOR)
    assert too_new.value.code == "key_too_new" and "29 hours" in too_new.value.message
    age(second, 31)
    activated, retired = signing_key_activate(kid=second.kid, actor=ACTOR)

    assert (activated, retired) == (second, first)
    first.refresh_from_db()
    assert (first.status, first.retired_at is not None) == ("retired", True)
    assert signing_key_for(None, "RS384") == second
    assert published_kids() == {first.kid, second.kid}

    with pytest.raises(SigningKeyRefused) as active:
        signing_key_remove(kid=second.kid, actor=ACTOR)
    assert active.value.code == "key_active"
    with pytest.raises(SigningKeyRefused) as not_next:
        signing_key_activate(kid=first.kid, actor=ACTOR, force=True)
    assert not_next.value.code == "key_not_next"

    signing_key_remove(kid=first.kid, actor=ACTOR)
    assert published_kids() == {second.kid}
    with pytest.raises(SigningKeyRefused):
        signing_key_remove(kid=first.kid, actor=ACTOR)
    actions = list(AuditEvent.objects.filter(target=f"AppSigningKey/{first.kid}").values_list("action", flat=True))
    assert sorted(actions) == ["keys.activate", "keys.create", "keys.remove", "keys.retire"]


@pytest.mark.django_db
def test_a_sites_own_key_then_its_stored_pem_win_over_the_shared_one() -> None:
    site = EHRSite.objects.create(name="Mercy", iss="https://ehr.example.org/fhir", client_id="hc", key_id="legacy")
    assert client_key(site) is None
    shared = active_key()
    assert (client_key(site).kid, client_key(site).source) == (shared.kid, "shared")  # type: ignore[union-attr]
    site.private_key_pem = ECKey.generate_key("P-384", private=True).as_pem(private=True).decode()
    site.signing_alg = "ES384"
    assert (client_key(site).kid, client_key(site).source) == ("legacy", "site_pem")  # type: ignore[union-attr]
    own = active_key(site=site, alg="ES384")

    chosen = client_key(site)

    assert chosen is not None and (chosen.kid, chosen.alg, chosen.jku, chosen.source) == (own.kid, "ES384", "", "site")
    other = EHRSite.objects.create(name="Other", iss="https://other.example.org/fhir", client_id="hc", send_jku=True)
    assert client_key(other).jku == jwks_url()  # type: ignore[union-attr]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("ehr_keys", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_creates_activates_lists_rotates_and_removes() -> None:
    EHRSite.objects.create(name="Mercy", iss="https://ehr.example.org/fhir", client_id="hc")
    created = run("new", "--shared", "--alg", "ES384")
    kid = AppSigningKey.objects.get().kid
    assert f"Created ES384 key {kid}" in created and "not signing" in created

    with pytest.raises(CommandError, match="--force"):
        run("activate", "--", kid)  # a thumbprint may start with "-" (kid_argument)
    assert "Activated" in run("activate", "--min-published-hours", "0", "--", kid)

    rotated = run("rotate", "--site", "Mercy", "--alg", "RS384")
    new_kid = AppSigningKey.objects.get(site__name="Mercy").kid
    assert f"ehr_keys activate {kid_argument(new_kid)}" in rotated and "Activate it after" in rotated
    listing = run("list")
    assert f"{kid}\tES384\tactive\t(shared)" in listing and f"{new_kid}\tRS384\tnext\tMercy" in listing

    with pytest.raises(CommandError, match="signing"):
        run("remove", "--", kid)
    assert "Removed" in run("remove", "--", new_kid)
    with pytest.raises(CommandError, match="No single EHR site"):
        run("new", "--site", "Nowhere")


# --- Over HTTP: the app's live server publishes the JWKS, the sandbox EHR fetches it -------------------------------

SCOPE = "system/Patient.rs"


def register_backend(sandbox: SandboxEHR, client_id: str, jwks: str) -> None:
    sandbox.manage("sandbox_client", "add", "--client-id", client_id, "--jwks-url", jwks, "--scope", SCOPE)


def signed_with(row: AppSigningKey, sandbox: SandboxEHR, client_id: str, *, jku: str) -> requests.Response:
    """A client credentials request whose assertion is signed with ``row`` (as a stale process would sign)."""
    token_url = f"{sandbox.base}/sandbox/oauth/token"
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 120, "jti": secrets.token_hex(16)}
    header = {"alg": row.alg, "kid": row.kid, "typ": "JWT", "jku": jku}
    assertion = jwt.encode(header, claims, private_key(row), algorithms=[row.alg])
    data = {
        "grant_type": "client_credentials",
        "scope": SCOPE,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    return requests.post(token_url, data=data, timeout=10)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_sandbox_trusts_our_jwks_url_and_jku_through_a_rotation(live_server, sandbox_ehr, settings) -> None:  # type: ignore[no-untyped-def]
    settings.APP_BASE_URL = live_server.url
    url = f"{live_server.url}/.well-known/jwks.json"
    assert jwks_url() == url
    register_backend(sandbox_ehr, "hc-jwks", url)
    site = EHRSite.objects.create(name="Sandbox", iss=sandbox_ehr.fhir_base, client_id="hc-jwks", send_jku=True,
                                  backend_services=True, backend_scopes=SCOPE)  # fmt: skip
    old = active_key()
    assert backend_token(site).scope == SCOPE

    new = signing_key_create(site=None, alg="RS384", actor=ACTOR)
    assert new.kid in [key["kid"] for key in requests.get(url, timeout=10).json()["keys"]]
    age(new, 31)
    signing_key_activate(kid=new.kid, actor=ACTOR)
    backend_tokens_forget()

    assert client_key(site).kid == new.kid  # type: ignore[union-attr]
    assert backend_read(site, "Patient", "pat014")["id"] == "pat014"
    assert signed_with(old, sandbox_ehr, "hc-jwks", jku=url).status_code == 200  # retired: still published

    signing_key_remove(kid=old.kid, actor=ACTOR)

    refused = signed_with(old, sandbox_ehr, "hc-jwks", jku=url)
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"
    backend_tokens_forget()
    assert backend_token(site).access_token  # the active key still works
    assert signed_with(new, sandbox_ehr, "hc-jwks", jku="https://elsewhere.example/jwks.json").status_code in (400, 401)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_launch_signs_its_token_exchange_with_the_active_key_and_jku(  # type: ignore[no-untyped-def]
    client, live_server, sandbox_ehr, settings
) -> None:
    settings.APP_BASE_URL = live_server.url
    sandbox_ehr.manage("sandbox_client", "add", "--client-id", "hc-launch-jwks", "--redirect-uri",
                       f"{live_server.url}/smart/callback", "--jwks-url", jwks_url())  # fmt: skip
    EHRSite.objects.create(name="Sandbox", iss=sandbox_ehr.fhir_base, client_id="hc-launch-jwks", send_jku=True,
                           auth_method=EHRSite.AuthMethod.PRIVATE_KEY_JWT)  # fmt: skip
    active_key(alg="RS384")

    result = complete_launch(client, sandbox_ehr, patient="pat014")

    assert result.launch_id, getattr(result.response, "content", b"")[:300]
    assert Launch.objects.get(pk=result.launch_id).status == Launch.Status.ACTIVE


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_demo_setup_registers_backend_services_with_a_shared_key_idempotently(live_server, settings) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.sandbox.models import SandboxClient

    settings.APP_BASE_URL = live_server.url
    for _ in range(2):
        call_command("demo_setup", stdout=io.StringIO())

    key = AppSigningKey.objects.get()
    assert (key.status, key.alg, key.site) == ("active", "RS384", None)
    demo = SandboxClient.objects.get(client_id="healthcommerce-demo")
    assert key.kid in [k["kid"] for k in demo.jwks["keys"]] and "system/Patient.rs" in demo.scope.split()
    site = EHRSite.objects.get(iss=f"{live_server.url}/sandbox/fhir")
    assert site.backend_services and "system/Communication.c" in site.backend_scopes.split()
    token = backend_token(site, scope="system/Patient.rs")  # over HTTP to the live server's sandbox
    assert token.scope == "system/Patient.rs"
    assert json.loads(json.dumps(published_jwks()))["keys"][0]["kid"] == key.kid
