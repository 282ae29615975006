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


class FHIRError(HealthcommerceError):
    """A FHIR read failed; ``code`` tells which way (unauthorized, forbidden, not_found, server, timeout, malformed)."""

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
