"""The EHR's JWT over HTTP (CDS Hooks 2.0 "Trusting CDS Clients"): RS384 and ES384 from an allowlisted issuer and
JWK Set pass; every other token is refused with the same 401 and an aggregated audit row naming the reason."""

import base64
import json
import time
from collections.abc import Callable

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from healthcommerce.audit.models import AuditEvent
from healthcommerce.cdshooks.services import service_url
from healthcommerce.ehr.sitefeatures import site_settings_update
from tests.cdshooks.conftest import ES_KEY, RS_KEY, SELECT, SIGN, STRANGER_KEY, call, hook_body, signed

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
# The published RS384 key's own material, without its "alg": it can sign RS256.
RS_ANY_ALG = RSAKey.import_key({k: v for k, v in RS_KEY.as_dict(private=True).items() if k != "alg"})
REFUSED = {"error": "unauthorized", "message": "The request is not authorized."}


def _b64(data: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(aud: str, iss: str, jku: str) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": "unsigned-1"}
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'test-rs384', 'jku': jku})}.{_b64(claims)}."


def _hs256(aud: str, iss: str, jku: str) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": "hmac-1"}
    key = OctKey.import_key("a-shared-secret-the-ehr-should-never-use-32b")
    return jwt.encode({"alg": "HS256", "typ": "JWT", "kid": "test-rs384", "jku": jku}, claims, key)


# name -> (token maker: (url, iss, jku) -> token, the refusal's audit reason)
CASES: dict[str, tuple[Callable[[str, str, str], str], str]] = {
    "alg none": (_unsigned, "alg_refused"),
    "HS256": (_hs256, "alg_refused"),
    "RS256": (lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, key=RS_ANY_ALG, alg="RS256"), "alg_refused"),
    "wrong aud": (lambda url, iss, jku: signed(aud=url.replace(SELECT, SIGN), iss=iss, jku=jku), "aud_invalid"),
    "iss not allowlisted": (
        lambda url, iss, jku: signed(aud=url, iss="https://evil.example/fhir", jku=jku),
        "iss_unknown",
    ),
    "jku not allowlisted": (
        lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku.replace("jwks.json", "other.json")),
        "jku_refused",
    ),
    "expired": (
        lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, exp=int(time.time()) - 600, iat=int(time.time()) - 900),
        "expired",
    ),
    "no exp": (lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, exp=None), "exp_missing"),
    "iat in the future": (
        lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, iat=int(time.time()) + 600),
        "iat_future",
    ),
    "no jti": (lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, jti=None), "jti_missing"),
    "bad signature": (lambda url, iss, jku: signed(aud=url, iss=iss, jku=jku, key=STRANGER_KEY), "signature_invalid"),
    "not a JWT": (lambda url, iss, jku: "not-a-jwt", "jwt_malformed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_jwt_answers_401_with_one_body_and_an_audit_row(cds_site, cds_ehr, jwks_url, case) -> None:  # type: ignore[no-untyped-def]
    make, reason = CASES[case]
    url = service_url(SELECT)
    response = call(url, hook_body(), make(url, cds_ehr.fhir_base, jwks_url))
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    [row] = AuditEvent.objects.filter(action="cds.call")
    assert (row.outcome, row.target, row.detail["count"]) == (reason, f"cds-services/{SELECT}", 1)
    assert "pat014" not in json.dumps(row.detail)


def test_no_authorization_header_is_refused(cds_site) -> None:
    response = call(service_url(SELECT), hook_body(), None)
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert AuditEvent.objects.get(action="cds.call").outcome == "jwt_missing"


def test_a_replayed_jti_is_refused(cds_site, cds_ehr, jwks_url) -> None:
    url = service_url(SELECT)
    token = signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url)
    assert call(url, hook_body(), token).status_code == 200
    response = call(url, hook_body(), token)
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert AuditEvent.objects.filter(action="cds.call", outcome="jti_replayed").exists()


def test_es384_and_an_aud_array_are_accepted(cds_site, cds_ehr, jwks_url) -> None:
    url = service_url(SIGN)
    token = signed(aud=[url, "https://other.example"], iss=cds_ehr.fhir_base, jku=jwks_url, key=ES_KEY, alg="ES384")
    response = call(url, hook_body("order-sign"), token)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1


def test_without_jku_only_a_single_allowlisted_jwks_is_used(cds_site, cds_ehr, jwks_url) -> None:
    url = service_url(SELECT)
    response = call(url, hook_body(), signed(aud=url, iss=cds_ehr.fhir_base, jku=None))
    assert response.status_code == 401  # two JWKS URLs allowlisted: which one is not ours to guess
    site_settings_update(cds_site, {"cds_jku_allowlist": [jwks_url]})
    response = call(url, hook_body(), signed(aud=url, iss=cds_ehr.fhir_base, jku=None))
    assert response.status_code == 200


def test_a_site_without_cds_hooks_enabled_is_refused(cds_site, cds_ehr, jwks_url) -> None:
    site_settings_update(cds_site, {"cds_hooks_enabled": False})
    url = service_url(SELECT)
    response = call(url, hook_body(), signed(aud=url, iss=cds_ehr.fhir_base, jku=jwks_url))
    assert response.status_code == 401
    assert AuditEvent.objects.get(action="cds.call").outcome == "iss_unknown"
