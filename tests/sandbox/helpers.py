"""Helpers for the sandbox tests: constants, client assertions and a SMART app driven over the test client."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.http import HttpResponse
from django.test import Client
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ORIGIN = "http://localhost"
FHIR_BASE = f"{ORIGIN}/sandbox/fhir"
TOKEN_URL = f"{ORIGIN}/sandbox/oauth/token"
REDIRECT_URI = "http://127.0.0.1:8000/smart/callback"
SCOPE = "launch openid fhirUser patient/DeviceRequest.read patient/Patient.read"


def client_assertion(
    key: RSAKey | ECKey, *, client_id: str, alg: str = "RS384", lifetime: int = 240, **header: str
) -> str:
    """Sign a SMART client assertion (SMART 2.2 "Client Authentication: Asymmetric")."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + lifetime, "jti": secrets.token_hex(16)}
    return jwt.encode({"alg": alg, "kid": str(key.kid), "typ": "JWT", **header}, claims, key, algorithms=[alg])


def query_of(response: HttpResponse) -> dict[str, str]:
    """Return the query parameters of a redirect's Location."""
    return {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}


class SmartApp:
    """Plays the SMART app: EHR launch, authorize with PKCE, token exchange, FHIR calls."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.verifier = secrets.token_urlsafe(48)

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def launch(self, *, patient: str = "pat014", practitioner: str = "pra1234", request: str = "") -> str:
        params = {"patient": patient, "practitioner": practitioner} | ({"request": request} if request else {})
        response = self.client.get("/sandbox/launch", params)
        assert response.status_code == 302, response.content[:300]
        return query_of(response)["launch"]

    def authorize(self, *, client_id: str, launch: str, method: str = "get", **overrides: str) -> HttpResponse:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(16),
            "aud": FHIR_BASE,
            "launch": launch,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        } | overrides
        params = {k: v for k, v in params.items() if v is not None}
        return getattr(self.client, method)("/sandbox/oauth/authorize", params)

    def code(self, *, client_id: str, **launch_args: str) -> str:
        response = self.authorize(client_id=client_id, launch=self.launch(**launch_args))
        assert response.status_code == 302, response.content[:300]
        params = query_of(response)
        assert "code" in params, params
        return params["code"]

    def exchange(self, code: str, *, client_id: str | None = None, **extra: Any) -> HttpResponse:
        headers = extra.pop("headers", {})
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        data |= {"code_verifier": self.verifier} | ({"client_id": client_id} if client_id else {}) | extra
        data = {k: v for k, v in data.items() if v is not None}
        return self.client.post("/sandbox/oauth/token", data, headers=headers)

    def token(self, *, client_id: str = "public-app", **launch_args: str) -> dict[str, Any]:
        """Run the whole public-client flow and return the token response."""
        response = self.exchange(self.code(client_id=client_id, **launch_args), client_id=client_id)
        assert response.status_code == 200, response.content
        return response.json()

    def get(self, path: str, token: str | None, **params: Any) -> HttpResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/sandbox/fhir/{path}", params, headers=headers)
