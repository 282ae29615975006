"""Errors of the SMART launch and FHIR access; messages are safe to show a clinician."""

from healthcommerce.core.errors import HealthcommerceError


class UnknownIssuer(HealthcommerceError):
    """``iss`` is not a registered, active EHR site (SMART App Launch 2.2 "EHR Launch": validate ``iss``)."""

    code = "unknown_iss"
    status = 400
    message = "This EHR is not registered with healthcommerce. Ask your IT team to register it."


class LaunchInvalid(HealthcommerceError):
    """The launch request or callback is malformed, replayed, expired or belongs to another browser."""

    code = "launch_invalid"
    status = 400
    message = "This launch is no longer valid. Please launch the app again from the EHR."


class LaunchThrottled(HealthcommerceError):
    """Too many launches from one client address within the minute (``LAUNCH_RATE_LIMIT``)."""

    code = "launch_throttled"
    status = 429
    temporary = True
    message = "Too many launches from your network just now. Please wait a minute and launch the app again."


class DiscoveryFailed(HealthcommerceError):
    """Neither ``.well-known/smart-configuration`` nor ``metadata`` gave usable endpoints."""

    code = "discovery_failed"
    status = 502
    temporary = True
    message = "The EHR's authorization server could not be reached. Please try again in a moment."


class AuthorizationFailed(HealthcommerceError):
    """The EHR refused authorization or the token exchange failed (RFC 6749 section 4.1.2.1 / 5.2)."""

    code = "authorization_failed"
    status = 400
    message = "The EHR did not authorize this launch. Please launch the app again."


class EHRSetupError(AuthorizationFailed):
    """The EHR refused this app's registration or configuration (RFC 6749 section 4.1.2.1 / 5.2:
    ``invalid_client``, ``unauthorized_client``, ``invalid_scope``, ``unsupported_grant_type``,
    ``unsupported_response_type``): launching again will not help; the hospital's IT must fix the registration.
    The message names it as a set-up problem and carries ``reference`` (the request id) to quote."""

    code = "ehr_setup"

    def __init__(self, *, code: str, reference: str) -> None:
        self.reference = reference
        super().__init__(
            "The EHR refused this app's set-up, so it cannot start. This is not something launching again will "
            "fix: please contact your hospital's IT or EHR support team and give them this reference: "
            f"{reference} ({code}).",
            code=code,
        )


class FHIRError(HealthcommerceError):
    """A FHIR request failed (``ehr.fhir.FHIRClient``); ``code`` tells which way (a key of ``ehr.fhir.MESSAGES``:
    unauthorized, forbidden, not_found, server_error, timeout, unreachable, malformed, rejected, invalid_id) and
    ``temporary`` whether it may pass on its own (server_error, timeout, unreachable)."""

    status = 502
    code = "fhir_error"
    message = "The EHR could not provide this information."


class ReauthorizationNeeded(HealthcommerceError):
    """The access token expired and cannot be refreshed: no refresh token, or the EHR refused or did not answer
    the refresh (SMART App Launch 2.2 "Refresh access token"). ``code`` says which (``no_refresh_token``,
    ``refresh_invalid_grant``, ``refresh_unreachable``...). The clinician must launch again; drafts are kept."""

    code = "reauthorization_needed"
    status = 403
    message = "Your EHR session has ended. Please launch the app again from the EHR; your draft is kept."


class RefreshUnavailable(HealthcommerceError):
    """The EHR's token service did not answer a refresh (``refresh_unreachable``) or another refresh of the same
    launch is still running (``refresh_busy``): temporary, the refresh token is kept and the same action may work
    in a moment."""

    code = "refresh_unreachable"
    status = 503
    temporary = True
    message = "The EHR did not answer in time. Please try again in a moment; your draft is kept."


class BackendServicesError(HealthcommerceError):
    """SMART Backend Services failed (SMART App Launch 2.2 "Backend Services"); ``code`` says how, ``transient``
    whether the same call may succeed later (network, timeout, 5xx) or never will without a fix (configuration,
    a refusal, a 4xx)."""

    code = "backend_services_error"
    status = 502
    message = "The EHR's backend services could not be used."

    def __init__(self, message: str | None = None, *, code: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message, code=code)
        if transient is not None:
            self.temporary = transient

    @property
    def transient(self) -> bool:
        """Return whether retrying later may succeed (the same as ``temporary``)."""
        return self.temporary


class BackendNotEnabled(BackendServicesError):
    """The site has no backend-services registration (``EHRSite.backend_services`` off or no ``system/`` scope)."""

    code = "backend_not_enabled"
    status = 400
    message = "Backend services are not enabled for this EHR site."


class BackendNoSigningKey(BackendServicesError):
    """No key to sign the client assertion with: no active ``AppSigningKey`` for the site or shared, and no
    legacy ``private_key_pem`` (SMART App Launch 2.2 "Backend Services" requires asymmetric authentication)."""

    code = "backend_no_signing_key"
    status = 400
    message = "There is no signing key for this EHR site's backend services."


class BackendTokenRefused(BackendServicesError):
    """The token endpoint refused the client credentials request (RFC 6749 section 5.2): ``oauth_error`` is
    its error code (``invalid_client``, ``invalid_scope``, ``unauthorized_client``...) or ``http_<status>`` for a
    4xx without an OAuth error body; ``description`` the EHR's ``error_description`` fit to show (sanitised,
    at most 200 characters), also in the message. Permanent until the registration or the configuration is fixed."""

    code = "backend_token_refused"
    status = 502
    message = "The EHR refused our backend services credentials."

    def __init__(self, oauth_error: str, message: str | None = None, *, description: str = "") -> None:
        super().__init__(message, transient=False)
        self.oauth_error = oauth_error
        self.description = description  # the EHR's error_description, sanitised (ehr.backend.ehr_said)


class BackendTokenUnavailable(BackendServicesError):
    """The token endpoint (or discovery) could not be reached, timed out, answered 5xx or sent no usable token.
    ``code``: ``backend_token_unreachable`` (transient) or ``backend_token_malformed`` (not)."""

    code = "backend_token_unreachable"
    status = 502
    temporary = True
    message = "The EHR's token service could not be reached."


class BackendFHIRError(BackendServicesError, FHIRError):
    """A backend-services FHIR read or create failed. ``code`` as ``FHIRError``'s (``unauthorized``,
    ``forbidden``, ``not_found``, ``server_error``, ``timeout``, ``unreachable``, ``malformed``) plus ``rejected``
    (any other 4xx of a create, e.g. 400, 405, 422) and ``invalid_id``; ``transient`` is true for ``server_error``
    (5xx, 429), ``timeout`` and ``unreachable``."""

    code = "fhir_error"
    status = 502
    message = "The EHR could not provide this information."


class SigningKeyRefused(HealthcommerceError):
    """A signing key change was refused (``ehr.keys``): ``key_unknown``, ``key_alg``, ``key_not_next``,
    ``key_too_new`` (published too recently for EHRs that cache our JWKS), ``key_active`` or ``key_removed``."""

    code = "key_refused"
    status = 400
    message = "That signing key change is not allowed."
