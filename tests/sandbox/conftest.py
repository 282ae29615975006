"""Fixtures for the sandbox EHR tests: the real FHIR fixtures loaded once per test database, registered
clients of each kind, and a helper that plays the SMART app over Django's test client.

The test client talks to ``http://localhost`` (a loopback host, as authlib requires outside https).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from joserfc.jwk import ECKey, RSAKey

from healthcommerce.sandbox.loader import default_fixture_dirs, sandbox_resources_load
from healthcommerce.sandbox.models import FhirResource, SandboxClient
from healthcommerce.sandbox.services import sandbox_client_register
from tests.sandbox.helpers import REDIRECT_URI, SmartApp


@pytest.fixture(scope="session")
def sandbox_loaded(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, int]]:
    """Load every fixture once per test database (committed), and remove it when the session ends."""
    with django_db_blocker.unblock():
        counts = sandbox_resources_load(dirs=default_fixture_dirs())
    yield counts
    with django_db_blocker.unblock():
        FhirResource.objects.all().delete()


@pytest.fixture
def sandbox_data(db: None, sandbox_loaded: dict[str, int]) -> dict[str, int]:
    """The loaded fixtures; reloaded inside the test if a transactional test flushed them."""
    if not FhirResource.objects.filter(resource_type="Patient").exists():
        sandbox_resources_load(dirs=default_fixture_dirs())
    return sandbox_loaded


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="localhost")


@pytest.fixture
def public_client(sandbox_data: dict[str, int]) -> SandboxClient:
    return sandbox_client_register(client_id="public-app", redirect_uris=[REDIRECT_URI])


@pytest.fixture
def secret_client(sandbox_data: dict[str, int]) -> SandboxClient:
    return sandbox_client_register(
        client_id="secret-app", redirect_uris=[REDIRECT_URI], auth_method="client_secret_basic", client_secret="s3cr:t"
    )


@pytest.fixture
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


@pytest.fixture
def jwt_client(sandbox_data: dict[str, int], rsa_key: RSAKey) -> SandboxClient:
    jwks = {"keys": [rsa_key.as_dict(private=False)]}
    return sandbox_client_register(
        client_id="jwt-app", redirect_uris=[REDIRECT_URI], auth_method="private_key_jwt", jwks=jwks
    )


@pytest.fixture
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", auto_kid=True)


@pytest.fixture
def app(client: Client) -> SmartApp:
    return SmartApp(client)
