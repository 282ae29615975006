"""Errors of the sandbox EHR; FHIR API errors carry the OperationOutcome issue code (FHIR R4 "issue-type")."""

from healthcommerce.core.errors import HealthcommerceError


class SandboxError(HealthcommerceError):
    """Base of the sandbox's own errors."""

    code = "sandbox_error"


class LaunchError(SandboxError):
    """The EHR launch names a patient, practitioner or request that does not exist or does not fit."""

    code = "sandbox_launch_invalid"
    message = "That launch context is not valid."


class ClientRegistrationError(SandboxError):
    """A client registration is incomplete for its authentication method."""

    code = "sandbox_client_invalid"
    message = "That client registration is not valid."


class FhirError(SandboxError):
    """An error the FHIR API answers with an OperationOutcome; ``issue_code`` is the R4 issue type."""

    code = "fhir_error"
    issue_code = "processing"


class FhirUnauthorized(FhirError):
    """No valid, unexpired Bearer token (SMART 2.2 "Access the FHIR API")."""

    status = 401
    issue_code = "login"
    message = "A valid access token is required."


class FhirForbidden(FhirError):
    """The token's scopes or patient compartment do not cover the resource."""

    status = 403
    issue_code = "forbidden"
    message = "The access token does not allow this."


class FhirNotFound(FhirError):
    """Unknown resource type or id."""

    status = 404
    issue_code = "not-found"
    message = "Resource not found."


class FhirBadRequest(FhirError):
    """A search parameter that the sandbox does not support, or an invalid value."""

    status = 400
    issue_code = "not-supported"
    message = "Unsupported search."


class FhirFault(FhirError):
    """An injected fault (``SandboxFault``) with the status it answers."""

    issue_code = "transient"
    message = "Injected fault."

    def __init__(self, status: int) -> None:
        self.status = status
        self.issue_code = {401: "login", 403: "forbidden", 404: "not-found"}.get(status, "transient")
        super().__init__(f"Injected fault: HTTP {status}.")
