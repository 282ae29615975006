"""Errors of the CDS Hooks services; each answers as a short JSON body ``{"error": <code>, "message": ...}``."""

from healthcommerce.core.errors import HealthcommerceError


class CdsUnauthorized(HealthcommerceError):
    """The EHR's JWT was missing or refused (CDS Hooks 2.0 "Trusting CDS Clients").

    ``code`` names the reason for the audit row and the log (``alg_refused``, ``iss_unknown``, ``jku_refused``,
    ``signature_invalid``, ``aud_invalid``, ``expired``, ``jti_replayed``...); the response never shows it: every
    refusal answers the same 401 body, so a caller learns nothing about which check failed.
    """

    code = "unauthorized"
    status = 401
    message = "The request is not authorized."
    site_iss = ""  # the site's iss once the JWT's issuer was found, for the audit row


class CdsBadRequest(HealthcommerceError):
    """The hook request is not JSON, or lacks a field the service needs (CDS Hooks 2.0 "Calling a CDS Service");
    ``message`` names the field."""

    code = "bad_request"
    status = 400
    message = "The hook request is malformed."


class CdsPrefetchMissing(HealthcommerceError):
    """A required prefetch key is missing or null, and this service never fetches from the EHR itself
    (CDS Hooks 2.0 "Prefetch": the service SHALL answer 412 Precondition Failed)."""

    code = "prefetch_missing"
    status = 412
    message = "The required prefetch data is missing."


class CdsUnknownService(HealthcommerceError):
    """No CDS service has that id."""

    code = "unknown_service"
    status = 404
    message = "No such CDS service."


class CdsTooLarge(HealthcommerceError):
    """The request body is over ``CDS_HOOKS_MAX_BODY`` bytes."""

    code = "too_large"
    status = 413
    message = "The hook request is too large."


class CdsJwksUnavailable(HealthcommerceError):
    """The EHR's JWK Set at an allowlisted ``jku`` could not be fetched or is not a JWK Set (unreachable, not 2xx,
    not JSON, no valid key)."""

    code = "jwks_unavailable"
    message = "The EHR's JWK Set could not be read."
