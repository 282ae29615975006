"""OAuth2 client pieces for SMART App Launch 2.2, built on authlib.

Sources: SMART App Launch 2.2 "Client Authentication: Asymmetric" (client_assertion JWT: ``iss = sub =
client_id``, ``aud`` = token URL, ``exp`` at most 5 minutes ahead, unique ``jti``) and "Symmetric"
(HTTP Basic over ``urlencode(client_id):urlencode(secret)``, RFC 6749 section 2.3.1).
"""

import base64
import functools
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_qs
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import sign_jwt_bearer_assertion
from django.conf import settings
from joserfc.jwk import import_key

from healthcommerce.core.http import cap_response_body, metered_send
from healthcommerce.ehr.keys import jwks_url, own_signing_key, private_key, shared_signing_key
from healthcommerce.ehr.models import EHRSite

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds; SMART caps exp at 5 minutes


def encode_client_secret_basic(client: Any, method: str, uri: str, headers: dict[str, str], body: str) -> tuple:
    """Add ``Authorization: Basic`` with the URL-encoded id and secret (RFC 6749 section 2.3.1).

    authlib's built-in ``client_secret_basic`` does not URL-encode; secrets with ``:`` or ``%`` break.
    """
    text = f"{quote(client.client_id, safe='')}:{quote(client.client_secret or '', safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(text.encode()).decode()
    return uri, headers, body


@functools.lru_cache(maxsize=32)
def _private_key(pem: str, key_type: Literal["RSA", "EC"]) -> Any:
    """Import a site's PEM private key once per process: cryptography validates an RSA key on load (~40 ms),
    which would otherwise sit on every token request's critical path."""
    return import_key(pem, key_type)


@dataclass(frozen=True)
class ClientKey:
    """The private key a site's client assertions are signed with: a joserfc key, its ``alg`` (RS384 or ES384),
    the ``kid`` the EHR finds it under, the ``jku`` to send (our JWKS URL, or ``""``) and ``source``: ``site``
    (an ``AppSigningKey`` made for this site), ``site_pem`` (the private key stored on the site: ``ehr_site add
    --private-key``, the site record's ``private_key_pem``) or ``shared`` (an ``AppSigningKey`` of every site)."""

    key: Any
    alg: str
    kid: str
    jku: str = ""
    source: str = "shared"

    def describe(self) -> str:
        """Say which key this is, for a person: ``the site's own RS384 key k1 (stored private key)``."""
        whose = {"site": "the site's own", "site_pem": "the site's own", "shared": "the shared"}[self.source]
        kind = {"site": "published in our JWKS", "site_pem": "stored private key", "shared": "published in our JWKS"}
        return f"{whose} {self.alg} key {self.kid or '(no kid)'} ({kind[self.source]})"


def client_key(site: EHRSite) -> ClientKey | None:
    """Return the key that signs ``site``'s client assertions, the site's own before any shared one:

    1. the site's own active ``AppSigningKey`` (``signing_alg`` first, then the other algorithm);
    2. the private key stored on the site (``private_key_pem``) with ``key_id`` and ``signing_alg``: the EHR
       registered its public key for this client (``ehr_site add --private-key``), so a shared key would be refused;
    3. the shared active ``AppSigningKey`` (``signing_alg`` first);

    None when there is none. ``jku`` is our JWKS URL when ``site.send_jku`` and the key is one we publish (not
    for a stored key, which is not in our JWKS) (SMART App Launch 2.2 "Client Authentication: Asymmetric").
    Raises ``ValueError`` for an unreadable PEM."""
    jku = jwks_url() if site.send_jku else ""
    algs = list(dict.fromkeys((site.signing_alg, "RS384", "ES384")))
    for alg in algs:
        row = own_signing_key(site, alg)
        if row is not None:
            return ClientKey(key=private_key(row), alg=row.alg, kid=row.kid, jku=jku, source="site")
    if site.private_key_pem:
        key_type: Literal["RSA", "EC"] = "EC" if site.signing_alg.startswith("ES") else "RSA"
        key = _private_key(site.private_key_pem, key_type)
        return ClientKey(key=key, alg=site.signing_alg, kid=site.key_id, source="site_pem")
    for alg in algs:
        row = shared_signing_key(alg)
        if row is not None:
            return ClientKey(key=private_key(row), alg=row.alg, kid=row.kid, jku=jku, source="shared")
    return None


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """``private_key_jwt`` with a fresh ``jti`` and a <= 300 s ``exp`` per assertion, ``kid`` and ``typ`` set, and
    ``jku`` when given (SMART App Launch 2.2 "Client Authentication: Asymmetric": it must equal the JWKS URL the
    client registered).

    Signs with ``key`` (a joserfc private key) or, without one, with the PEM passed as the session's
    ``client_secret``. authlib's default reuses the ``claims`` dict (so the ``jti`` repeats) and signs for an hour.
    """

    def __init__(
        self, *, alg: str, kid: str, key: Any = None, jku: str = "", token_endpoint: str | None = None
    ) -> None:
        super().__init__(token_endpoint=token_endpoint, alg=alg)
        self.kid, self.key, self.jku = kid, key, jku

    def sign(self, auth: Any, token_endpoint: str) -> str:
        """Return a signed client assertion JWT for ``token_endpoint``."""
        now = int(time.time())
        header = {"alg": self.alg, "typ": "JWT"} | ({"kid": self.kid} if self.kid else {})
        header |= {"jku": self.jku} if self.jku else {}
        key = self.key
        if key is None:
            key = _private_key(auth.client_secret, "EC" if self.alg.startswith("ES") else "RSA")
        return sign_jwt_bearer_assertion(
            key=key,
            issuer=auth.client_id,
            audience=token_endpoint,
            subject=auth.client_id,
            issued_at=now,
            expires_at=now + ASSERTION_LIFETIME,
            claims={"jti": generate_token(48)},
            header=header,
        )

    def __call__(self, auth: Any, method: str, uri: str, headers: dict[str, str], body: str) -> tuple:
        """Add ``client_assertion_type`` and ``client_assertion`` to the form body."""
        assertion = self.sign(auth, self.token_endpoint or uri)
        body = add_params_to_qs(
            body or "", [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion)]
        )
        return uri, headers, body


def assertion_auth(key: ClientKey) -> SmartPrivateKeyJWT:
    """Return the ``private_key_jwt`` client authentication signing with ``key`` (and its ``jku``)."""
    return SmartPrivateKeyJWT(alg=key.alg, kid=key.kid, key=key.key, jku=key.jku)


def site_label(site: EHRSite) -> str:
    """Return the label a site's calls are counted under (``core.metrics``): its name, at most 100 characters."""
    return site.name[:100]


class MeteredOAuth2Session(OAuth2Session):
    """authlib's session with each request counted as the site's ``token`` endpoint (``core.http.metered_send``):
    the token exchange and refresh do not go through ``OutboundSession``."""

    metric_site = ""

    def send(self, request: Any, **kwargs: Any) -> Any:
        """Send ``request`` through requests and count it."""
        return metered_send(super().send, request, site=self.metric_site, kind="token", base=None, **kwargs)


def oauth_session(site: EHRSite, *, redirect_uri: str, scope: str | None = None) -> OAuth2Session:
    """Return an authlib ``OAuth2Session`` set up with the site's client authentication and PKCE S256.

    Public clients send ``client_id`` in the body; confidential ones authenticate per ``site.auth_method``
    (``private_key_jwt`` signs with ``client_key``; the legacy PEM when that gives none). It follows no
    redirect and caps the response body (``core.http.cap_response_body``).
    """
    method = site.auth_method
    secret: str | None = None
    auth_method: Any = "none"
    if method == EHRSite.AuthMethod.CLIENT_SECRET_BASIC:
        secret, auth_method = site.client_secret, encode_client_secret_basic
    elif method == EHRSite.AuthMethod.PRIVATE_KEY_JWT:
        try:
            key = client_key(site)
        except ValueError:  # an unreadable legacy PEM: signing fails in the token request, as the caller expects
            key = None
        if key is not None:
            auth_method = assertion_auth(key)
        else:
            secret, auth_method = site.private_key_pem, SmartPrivateKeyJWT(alg=site.signing_alg, kid=site.key_id)
    return token_session(
        site,
        client_id=site.client_id,
        client_secret=secret,
        auth_method=auth_method,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )


def token_session(site: EHRSite, *, client_id: str, auth_method: Any, **kwargs: Any) -> OAuth2Session:
    """Return a ``MeteredOAuth2Session`` for ``site``'s token endpoint: the project's timeout and User-Agent, no
    redirect followed, the body capped; ``kwargs`` go to ``OAuth2Session`` (scope, redirect_uri...)."""
    session = MeteredOAuth2Session(
        client_id=client_id,
        token_endpoint_auth_method=auth_method,
        default_timeout=settings.HTTP_TIMEOUT,
        **kwargs,
    )
    session.headers["User-Agent"] = "healthcommerce/1.0"
    session.metric_site = site_label(site)
    # A token endpoint answers; it never redirects: following none keeps the code, the verifier and the client's
    # credentials from being sent anywhere else (requests raises TooManyRedirects). The body is capped too.
    session.max_redirects = 0
    session.hooks["response"].append(cap_response_body)
    return session
