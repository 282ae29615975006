"""Discovery documents: SMART configuration, OpenID configuration and the FHIR CapabilityStatement.

Every absolute URL is built from the incoming request, so the sandbox works on any host and port.
Sources: SMART App Launch 2.2 "Conformance" (``.well-known/smart-configuration``, capabilities) and the
``oauth-uris`` extension of older servers; OpenID Connect Discovery 1.0 section 3; FHIR R4 CapabilityStatement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from healthcommerce.sandbox.models import AuthMethod

OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
CAPABILITIES = [
    "launch-ehr",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "sso-openid-connect",
    "permission-v1",
    "permission-v2",
    "permission-offline",
    "permission-online",
    "authorize-post",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "online_access",
    "offline_access",
    "patient/*.read",
    "patient/*.rs",
    "user/*.read",
    "user/*.rs",
    "system/*.read",
    "system/*.rs",
]
CLIENT_ASSERTION_ALGS = ["RS384", "ES384", "RS256"]
TOKEN_AUTH_METHODS = [AuthMethod.CLIENT_SECRET_BASIC.value, AuthMethod.PRIVATE_KEY_JWT.value, AuthMethod.NONE.value]


@dataclass(frozen=True)
class SandboxUrls:
    """Absolute URLs of the sandbox for one request, e.g. ``fhir_base = "http://host:port/sandbox/fhir"``."""

    root: str
    fhir_base: str
    authorize: str
    token: str
    jwks: str
    style: str

    @classmethod
    def from_request(cls, request: HttpRequest) -> SandboxUrls:
        """Build the URLs from the request's scheme and host (``request.build_absolute_uri``)."""

        def absolute(name: str) -> str:
            return request.build_absolute_uri(reverse(f"sandbox:{name}"))

        return cls(
            root=absolute("ehr").rstrip("/"),
            fhir_base=absolute("fhir-base").rstrip("/"),
            authorize=absolute("authorize"),
            token=absolute("token"),
            jwks=absolute("jwks"),
            style=absolute("smart-style"),
        )

    @property
    def origin(self) -> str:
        """Return ``scheme://host[:port]``."""
        scheme, _, rest = self.root.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"


def smart_configuration(urls: SandboxUrls) -> dict[str, Any]:
    """Return the SMART configuration document (SMART 2.2 "Metadata", ``.well-known/smart-configuration``)."""
    return {
        "issuer": urls.fhir_base,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(urls: SandboxUrls) -> dict[str, Any]:
    """Return the OpenID Provider metadata; ``issuer`` is exactly the FHIR base (OIDC Discovery section 3)."""
    return {
        "issuer": urls.fhir_base,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
    }


def capability_statement(
    urls: SandboxUrls, resource_types: Iterable[str], creatable: Iterable[str] = ()
) -> dict[str, Any]:
    """Return a CapabilityStatement with the SMART ``oauth-uris``: read and search-type for ``resource_types``, and
    also create for the ``creatable`` types (listed even when none is stored yet; FHIR R4 ``rest.resource``)."""
    creatable = set(creatable)
    search_params = [
        {"name": name, "type": kind}
        for name, kind in (("patient", "reference"), ("subject", "reference"), ("status", "token"), ("_id", "token"))
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.now().date().isoformat(),
        "kind": "instance",
        "software": {"name": "healthcommerce sandbox EHR"},
        "implementation": {"description": "SMART sandbox EHR", "url": urls.fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": OAUTH_URIS_EXTENSION,
                            "extension": [
                                {"url": "authorize", "valueUri": urls.authorize},
                                {"url": "token", "valueUri": urls.token},
                            ],
                        }
                    ],
                },
                "resource": [
                    {
                        "type": name,
                        "interaction": [{"code": "read"}, {"code": "search-type"}]
                        + ([{"code": "create"}] if name in creatable else []),
                        "searchParam": search_params,
                    }
                    | ({"conditionalCreate": True} if name in creatable else {})
                    for name in sorted(set(resource_types) | creatable)
                ],
            }
        ],
    }
