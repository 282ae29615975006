"""The sandbox's SMART Backend Services token grant: client credentials with a signed client assertion.

Source: SMART App Launch 2.2 "Backend Services" (``grant_type=client_credentials``, ``client_assertion_type``
``jwt-bearer``, ``system/`` scopes, short-lived access token, no refresh token) and RFC 6749 section 4.4.
Only ``private_key_jwt`` clients may use it (asymmetric authentication is required); a public or a
``client_secret_basic`` client is refused with ``invalid_client`` (or ``unauthorized_client``).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from healthcommerce.sandbox.scopes import grantable, is_system_scope

BACKEND_TOKEN_TTL = 300  # seconds: SMART recommends access tokens of five minutes for backend services


class SandboxClientCredentialsGrant(ClientCredentialsGrant):
    """Client credentials for ``private_key_jwt`` clients; every requested scope must be a ``system/`` scope that
    the client's registered scope covers, else ``invalid_scope`` (nothing is granted silently narrower). The token
    has no launch (``SandboxToken.launch`` null), so the FHIR API reads it without a compartment."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_requested_scope(self) -> None:
        """Raise ``InvalidScopeError`` unless the scope is one or more ``system/`` scopes within the client's."""
        requested = list(dict.fromkeys((self.request.payload.scope or "").split()))
        if not requested:
            raise InvalidScopeError("SMART Backend Services need at least one system/ scope.")
        if not all(is_system_scope(item) for item in requested):
            raise InvalidScopeError("Only system/ scopes may be asked for with client_credentials.")
        if grantable(" ".join(requested), self.request.client.scope).split() != requested:
            raise InvalidScopeError("A requested scope is beyond the client's registration.")
