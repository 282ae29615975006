"""The ``sandbox_client`` and ``sandbox_fault`` management commands."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from joserfc.jwk import RSAKey

from healthcommerce.sandbox.models import SandboxClient, SandboxFault


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_adds_a_public_client(db: None) -> None:
    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "http://127.0.0.1:8000/smart/callback")

    client = SandboxClient.objects.get(client_id="app")
    assert client.token_endpoint_auth_method == "none"
    assert client.redirect_uris == ["http://127.0.0.1:8000/smart/callback"]
    assert "launch" in client.scope.split()


def test_it_adds_a_symmetric_client_and_keeps_only_a_hash(db: None) -> None:
    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://a.example/cb", "--client-secret", "s")

    client = SandboxClient.objects.get(client_id="app")
    assert client.token_endpoint_auth_method == "client_secret_basic"
    assert client.client_secret_hash != "s"
    assert client.check_client_secret("s")


def test_it_adds_an_asymmetric_client_from_a_jwks(db: None) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    jwks = json.dumps({"keys": [key.as_dict(private=False)]})

    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://a.example/cb", "--jwks-json", jwks)

    client = SandboxClient.objects.get(client_id="app")
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.jwks["keys"][0]["kid"] == key.kid


def test_it_adds_an_asymmetric_client_from_a_pem_file(db: None, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048)
    pem = tmp_path / "public.pem"
    pem.write_bytes(key.as_pem(private=False))

    run(
        "sandbox_client",
        "add",
        "--client-id",
        "app",
        "--redirect-uri",
        "https://a.example/cb",
        "--public-key-pem",
        str(pem),
    )

    client = SandboxClient.objects.get(client_id="app")
    assert client.jwks["keys"][0]["kid"] == key.thumbprint()
    assert "d" not in client.jwks["keys"][0]


def test_it_refuses_a_private_key_as_the_registered_key(db: None) -> None:
    key = RSAKey.generate_key(2048)
    jwks = json.dumps({"keys": [key.as_dict(private=True)]})

    with pytest.raises(CommandError):
        run(
            "sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://a.example/cb", "--jwks-json", jwks
        )


def test_adding_again_replaces_the_registration(db: None) -> None:
    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://a.example/cb", "--client-secret", "s")
    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://b.example/cb")

    client = SandboxClient.objects.get(client_id="app")
    assert client.token_endpoint_auth_method == "none"
    assert client.redirect_uris == ["https://b.example/cb"]
    assert client.client_secret_hash == ""


def test_it_lists_and_removes_clients(db: None) -> None:
    run("sandbox_client", "add", "--client-id", "app", "--redirect-uri", "https://a.example/cb")

    assert "app\tnone" in run("sandbox_client", "list")
    run("sandbox_client", "remove", "--client-id", "app")
    assert not SandboxClient.objects.exists()


def test_the_fault_command_sets_and_clears_faults(db: None) -> None:
    run("sandbox_fault", "set", "--type", "DeviceRequest", "--kind", "503", "--count", "2")

    fault = SandboxFault.objects.get()
    assert (fault.resource_type, fault.kind, fault.remaining) == ("DeviceRequest", "503", 2)
    assert "DeviceRequest\t503" in run("sandbox_fault", "list")
    run("sandbox_fault", "clear")
    assert not SandboxFault.objects.exists()
