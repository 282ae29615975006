"""CDS Hooks fixtures: the app as pytest-django's ``live_server`` (the CDS service the EHR calls), the sandbox EHR as
its own server configured to call it, and a loopback JWK Set server for the test's own signing keys (RS384, ES384),
so refusals are tested with real signed JWTs."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.cache import cache
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_settings_update
from tests.conftest import SandboxEHR, sandbox_server

FIXTURES = Path(__file__).resolve().parents[2] / "healthcommerce" / "sandbox" / "fixtures" / "davinci"
RS_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "test-rs384", "alg": "RS384", "use": "sig"})
ES_KEY = ECKey.generate_key("P-384", private=True, parameters={"kid": "test-es384", "alg": "ES384", "use": "sig"})
# Same kid as RS_KEY, but not the key the JWK Set publishes: its signatures must not verify.
STRANGER_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "test-rs384"})
SELECT = "healthcommerce-order-select"
SIGN = "healthcommerce-order-sign"


class _JwksHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="session")
def jwks_url() -> Iterator[str]:
    """A loopback JWK Set server publishing RS_KEY and ES_KEY (public halves); its URL."""
    keys = [RS_KEY.as_dict(private=False), ES_KEY.as_dict(private=False)]
    _JwksHandler.body = json.dumps({"keys": keys}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def cds_ehr(live_server) -> Iterator[SandboxEHR]:  # type: ignore[no-untyped-def]
    """The sandbox EHR as its own server, calling the app's CDS services and launching the app's SMART link."""
    with sandbox_server(
        SANDBOX_CDS_SERVICES_URL=f"{live_server.url}/cds-services",
        SANDBOX_APP_LAUNCH_URL=f"{live_server.url}/smart/launch",
    ) as sandbox:
        sandbox.manage(
            "sandbox_client", "add", "--client-id", "cds-app", "--redirect-uri", f"{live_server.url}/smart/callback"
        )
        yield sandbox


@pytest.fixture
def cds_site(live_server, cds_ehr: SandboxEHR, jwks_url: str, settings) -> EHRSite:  # type: ignore[no-untyped-def]
    """The sandbox as an EHR site with CDS Hooks on: its FHIR base is the allowed ``iss``; its own JWKS URL and the
    test's are the allowed ``jku``. The app's public URL is the live server's, so ``aud`` is a live URL."""
    settings.APP_BASE_URL = live_server.url
    cache.clear()
    site = EHRSite.objects.create(name="Sandbox (CDS)", iss=cds_ehr.fhir_base, client_id="cds-app")
    jkus = [f"{cds_ehr.base}/sandbox/oauth/jwks", jwks_url]
    site_settings_update(
        site, {"cds_hooks_enabled": True, "cds_issuers": [cds_ehr.fhir_base], "cds_jku_allowlist": jkus}
    )
    return site


def fixture(name: str) -> dict[str, Any]:
    """A FHIR resource from the sandbox's Da Vinci fixtures, as the EHR stores it."""
    return dict(json.loads((FIXTURES / name).read_text()))


def hook_body(hook: str = "order-select", *orders: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """An ``order-select``/``order-sign`` request for pat014 with ``orders`` as draft orders (default: the CPAP
    DeviceRequest devreq021) and the prefetched Patient."""
    drafts = list(orders) or [fixture("o2teddy_05_device-request-cpap-e0601.json")]
    context: dict[str, Any] = {
        "userId": "Practitioner/pra1234",
        "patientId": "pat014",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in drafts]},
    }
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": {"patient": fixture("o2teddy_01__patient.json")},
    }
    return body | overrides


def signed(*, aud: str, iss: str, jku: str | None, key: Any = RS_KEY, alg: str = "RS384", **claims: Any) -> str:
    """A CDS client JWT (CDS Hooks 2.0 "Trusting CDS Clients") signed with ``key``; ``claims`` override or, with
    ``None``, remove the defaults (``exp`` in 5 minutes, ``iat`` now, a fresh ``jti``)."""
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())} | claims
    payload = {name: value for name, value in payload.items() if value is not None}
    header = {"alg": alg, "typ": "JWT", "kid": key.kid} | ({"jku": jku} if jku else {})
    return jwt.encode(header, payload, key, algorithms=[alg])


def call(url: str, body: Any, token: str | None) -> requests.Response:
    """POST a hook request to ``url`` with ``token`` as the bearer JWT."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, data=data, headers=headers | {"Content-Type": "application/json"}, timeout=10)
