"""SMART Backend Services from the app's side (ehr/backend.py), over HTTP against the running sandbox EHR:
tokens with system/ scopes, reads with ``_elements``, the retry after a 401, typed errors and audit rows."""

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.backend import backend_create, backend_read, backend_token, backend_tokens_forget, ehr_said
from healthcommerce.ehr.errors import (
    BackendFHIRError,
    BackendNoSigningKey,
    BackendNotEnabled,
    BackendServicesError,
    BackendTokenRefused,
    BackendTokenUnavailable,
)
from healthcommerce.ehr.models import EHRSite
from tests.conftest import SandboxEHR
from tests.servers import free_port

pytestmark = pytest.mark.django_db
SCOPES = "system/Patient.rs system/Coverage.rs"


def _pem(key) -> str:  # type: ignore[no-untyped-def]
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def registered(sandbox_ehr: SandboxEHR, rsa_pem: str) -> str:
    """The backend client ``hc-backend``, registered with the public half of ``rsa_pem`` as kid ``b1``."""
    public = RSAKey.import_key(rsa_pem).as_dict(private=False) | {"kid": "b1", "alg": "RS384"}
    sandbox_ehr.manage("sandbox_client", "add", "--client-id", "hc-backend", "--jwks-json",
                       json.dumps({"keys": [public]}), "--scope", SCOPES)  # fmt: skip
    return "hc-backend"


@pytest.fixture(autouse=True)
def no_cached_tokens() -> Iterator[None]:
    backend_tokens_forget()
    yield
    backend_tokens_forget()


@pytest.fixture
def site(sandbox_ehr: SandboxEHR, registered: str, rsa_pem: str) -> EHRSite:
    """A site whose launch client is public (``test-app``) and whose backend client is ``hc-backend``."""
    return EHRSite.objects.create(
        name="Sandbox backend",
        iss=sandbox_ehr.fhir_base,
        client_id="test-app",
        private_key_pem=rsa_pem,
        key_id="b1",
        signing_alg="RS384",
        backend_services=True,
        backend_client_id=registered,
        backend_scopes=SCOPES,
    )


def test_a_token_is_granted_with_the_system_scopes_and_reused_until_near_expiry(site: EHRSite) -> None:
    token = backend_token(site)

    assert token.scope == SCOPES
    assert 200 < (token.expires_at - token.expires_at.now(token.expires_at.tzinfo)).total_seconds() <= 300
    assert backend_token(site) is token
    assert token.access_token not in repr(token)
    assert not hasattr(token, "refresh_token")


def test_a_narrower_scope_gets_a_token_of_its_own(site: EHRSite) -> None:
    narrow = backend_token(site, scope="system/Patient.rs")

    assert narrow.scope == "system/Patient.rs"
    assert narrow.access_token != backend_token(site).access_token


def test_it_reads_a_patient_with_elements_and_audits_the_read(site: EHRSite) -> None:
    patient = backend_read(site, "Patient", "pat014", elements=["address"])

    assert patient["id"] == "pat014" and "address" in patient
    assert "name" not in patient and "telecom" not in patient
    row = AuditEvent.objects.get(action="fhir.read", target="Patient/pat014")
    assert (row.actor, row.outcome, row.site) == ("backend:hc-backend", "success", site.iss)
    assert row.detail == {"via": "backend_services", "elements": ["address"]}


def test_it_reads_any_patient_without_a_launch(site: EHRSite) -> None:
    assert backend_read(site, "Patient", "pat1234")["id"] == "pat1234"
    assert backend_read(site, "Patient", "pat013")["id"] == "pat013"


def test_a_401_fetches_a_fresh_token_and_retries_once(site: EHRSite, sandbox_faults: SandboxEHR) -> None:
    first = backend_token(site)
    sandbox_faults.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "401", "--count", "1")

    assert backend_read(site, "Patient", "pat014")["id"] == "pat014"

    assert backend_token(site).access_token != first.access_token
    assert AuditEvent.objects.filter(action="fhir.read", outcome="success").count() == 1


def test_a_second_401_is_unauthorized(site: EHRSite, sandbox_faults: SandboxEHR) -> None:
    sandbox_faults.manage("sandbox_fault", "set", "--type", "Patient", "--kind", "401", "--count", "2")

    with pytest.raises(BackendFHIRError) as caught:
        backend_read(site, "Patient", "pat014")

    assert caught.value.code == "unauthorized" and not caught.value.transient
    assert AuditEvent.objects.get(action="fhir.read").outcome == "unauthorized"


@pytest.mark.parametrize(
    ("kind", "code", "transient"),
    [("403", "forbidden", False), ("404", "not_found", False), ("503", "server_error", True),
     ("500", "server_error", True), ("truncated", "malformed", False)],
)  # fmt: skip
def test_failures_are_typed_and_say_whether_they_are_transient(
    site: EHRSite, sandbox_faults: SandboxEHR, kind: str, code: str, transient: bool
) -> None:
    sandbox_faults.fault("Patient", kind)

    with pytest.raises(BackendFHIRError) as caught:
        backend_read(site, "Patient", "pat014")

    assert (caught.value.code, caught.value.transient) == (code, transient)
    assert AuditEvent.objects.get(action="fhir.read", target="Patient/pat014").outcome == code


def test_a_timeout_is_transient(site: EHRSite, sandbox_faults: SandboxEHR) -> None:
    sandbox_faults.fault("Patient", "timeout")

    with pytest.raises(BackendFHIRError) as caught:
        backend_read(site, "Patient", "pat014")

    assert caught.value.code == "timeout" and caught.value.transient


def test_a_type_outside_the_granted_scopes_is_forbidden(site: EHRSite) -> None:
    with pytest.raises(BackendFHIRError) as caught:
        backend_read(site, "DeviceRequest", "devreq021")

    assert caught.value.code == "forbidden"


def test_an_unknown_patient_is_not_found_and_a_bad_id_never_leaves(site: EHRSite) -> None:
    with pytest.raises(BackendFHIRError) as missing:
        backend_read(site, "Patient", "no-such-patient")
    with pytest.raises(BackendFHIRError) as bad:
        backend_read(site, "Patient", "../metadata")

    assert (missing.value.code, bad.value.code) == ("not_found", "invalid_id")


def test_a_key_the_ehr_does_not_know_is_refused_as_invalid_client(site: EHRSite) -> None:
    site.private_key_pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    site.save(update_fields=["private_key_pem"])

    with pytest.raises(BackendTokenRefused) as caught:
        backend_token(site)

    assert caught.value.oauth_error == "invalid_client"
    assert caught.value.code == "backend_token_refused" and not caught.value.transient
    assert caught.value.description  # the EHR's own error_description, shown
    assert caught.value.message == (
        f'The EHR refused our backend services credentials: invalid_client, "{caught.value.description}"'
    )


def test_the_ehrs_error_text_is_shown_without_control_characters_credentials_or_excess() -> None:
    assertion = "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJoYyJ9.c2lnbmF0dXJlLW9mLXRoZS1hc3NlcnRpb24"
    said = ehr_said(
        f"bad\x1b[31m assertion {assertion} for secret s3cr3t-value\n" + "x " * 200, secrets=["s3cr3t-value"]
    )

    assert said.startswith("bad [31m assertion [redacted] for secret [redacted] x x")
    assert ehr_said(f"No key for kid: {'k' * 43} token {'t' * 64}") == f"No key for kid: {'k' * 43} token [redacted]"
    assert len(said) == 200 and said.endswith("...") and assertion not in said and "\x1b" not in said
    assert ehr_said(None) == "" and ehr_said("invalid_client", limit=80) == "invalid_client"


def test_a_scope_beyond_the_registration_is_refused_as_invalid_scope(site: EHRSite) -> None:
    with pytest.raises(BackendTokenRefused) as caught:
        backend_read(site, "Patient", "pat014", scope="system/Patient.rs system/DeviceRequest.rs")

    assert caught.value.oauth_error == "invalid_scope"
    assert AuditEvent.objects.get(action="fhir.read").outcome == "backend_token_refused"


def test_an_es384_key_works_too(sandbox_ehr: SandboxEHR, site: EHRSite) -> None:
    pem = _pem(ec.generate_private_key(ec.SECP384R1()))
    public = ECKey.import_key(pem).as_dict(private=False) | {"kid": "e1", "alg": "ES384"}
    sandbox_ehr.manage("sandbox_client", "add", "--client-id", "hc-backend-ec", "--jwks-json",
                       json.dumps({"keys": [public]}), "--scope", SCOPES)  # fmt: skip
    site.private_key_pem, site.key_id, site.signing_alg, site.backend_client_id = pem, "e1", "ES384", "hc-backend-ec"
    site.save(update_fields=["private_key_pem", "key_id", "signing_alg", "backend_client_id"])

    assert backend_read(site, "Patient", "pat014")["id"] == "pat014"


def test_a_site_without_backend_services_or_key_is_refused_before_any_request(site: EHRSite) -> None:
    site.backend_services = False
    with pytest.raises(BackendNotEnabled):
        backend_token(site)
    site.backend_services, site.backend_scopes = True, ""
    with pytest.raises(BackendNotEnabled):
        backend_token(site)
    site.backend_scopes, site.private_key_pem = SCOPES, ""
    with pytest.raises(BackendNoSigningKey) as caught:
        backend_token(site)
    assert isinstance(caught.value, BackendServicesError) and caught.value.code == "backend_no_signing_key"


def test_an_unreachable_ehr_is_transient(site: EHRSite) -> None:
    site.iss, site.discovery = f"http://127.0.0.1:{free_port()}/fhir", {}
    site.save(update_fields=["iss", "discovery"])

    with pytest.raises(BackendTokenUnavailable) as caught:
        backend_token(site)

    assert caught.value.transient and caught.value.code == "backend_token_unreachable"


def test_a_create_the_ehr_does_not_accept_is_permanent_and_audited(site: EHRSite) -> None:
    with pytest.raises(BackendFHIRError) as caught:
        backend_create(site, {"resourceType": "Basic", "code": {"text": "not accepted here"}})

    assert not caught.value.transient and caught.value.code in ("rejected", "not_found", "forbidden")
    row = AuditEvent.objects.get(action="fhir.create")
    assert (row.target, row.outcome, row.actor) == ("Basic", caught.value.code, "backend:hc-backend")
