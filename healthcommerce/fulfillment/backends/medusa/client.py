"""A small client for Medusa 2's Admin API: one origin, a secret API key, and errors that say whether a retry
can help (docs/style.md 4).

Source: Medusa V2 Admin API Reference, "Authentication" (a secret API key ``sk_...`` sent as HTTP Basic, the key
as the user name and an empty password) and "Errors" (``{"type", "message"}`` bodies, never copied here).
"""

from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.core.http import outbound_session
from healthcommerce.fulfillment.backends.base import (
    BackendError,
    PermanentBackendError,
    TemporaryBackendError,
    configured_options,
    retry_after_seconds,
)

# Metadata keys on a Medusa order. DISPLAY_ID_KEY must match commerce/medusa/medusa-config.ts, which copies it
# into the order's unique ``custom_display_id``.
REFERENCE_KEY = "healthcommerce_reference"
IDEMPOTENCY_KEY = "healthcommerce_idempotency_key"
DISPLAY_ID_KEY = "healthcommerce_display_id"
CONFIRMED_KEY = "healthcommerce_confirmed_at"
# On a Medusa product: the catalog SKU it was synced from.
SKU_KEY = "healthcommerce_sku"


def error_for_response(response: requests.Response) -> BackendError | None:
    """Return the backend error for a Medusa answer, or ``None`` for a 2xx.

    429 and 5xx are ``TemporaryBackendError`` (``code="http_<status>"``, ``retry_after`` from ``Retry-After``);
    any other status (400 ``invalid_data``, 401, 403, 404 ``not_found``, 409, 422) is ``PermanentBackendError``
    (``code="http_<status>"``). The response body is never copied into the error: it may echo an address.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status == 429 or status >= 500:
        return TemporaryBackendError(
            "The commerce platform is unavailable; the order will be retried.",
            code=f"http_{status}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return PermanentBackendError(code=f"http_{status}")


class MedusaClient:
    """JSON over HTTP to one Medusa server's ``/admin`` routes through ``outbound_session(only_origin=base)``.

    ``base_url`` is the server's origin (``https://shop.example`` or ``http://127.0.0.1:<port>``); ``api_key`` a
    secret API key (``sk_...``). Timeouts are ``settings.HTTP_TIMEOUT`` (seconds, connect and read).
    """

    def __init__(self, *, base_url: str, api_key: str) -> None:
        if not base_url or not api_key:
            raise ImproperlyConfigured("MEDUSA_URL and MEDUSA_API_KEY must be set for the medusa backend.")
        self.base_url = base_url.rstrip("/")
        self.session = outbound_session(only_origin=self.base_url, site="commerce:medusa", kind="commerce_status")
        self.session.auth = (api_key, "")
        self.session.headers["Accept"] = "application/json"

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send ``method path`` (``path`` starts with ``/admin/``) and return the decoded JSON object.

        Raises ``TemporaryBackendError`` on a timeout (``medusa_timeout``), a refused or broken connection
        (``medusa_unreachable``), a 429 or 5xx, or a body that is not a JSON object (``medusa_malformed``);
        ``PermanentBackendError`` for other non-2xx answers (``error_for_response``); ``OutboundRefused`` when the
        URL is neither https nor loopback.
        """
        try:
            response = self.session.request(method, f"{self.base_url}{path}", params=params, json=json)
        except requests.Timeout as exc:
            raise TemporaryBackendError("The commerce platform timed out.", code="medusa_timeout") from exc
        except requests.RequestException as exc:
            raise TemporaryBackendError("The commerce platform is unreachable.", code="medusa_unreachable") from exc
        error = error_for_response(response)
        if error is not None:
            raise error
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TemporaryBackendError("The commerce platform answered garbage.", code="medusa_malformed")
        return data

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """``GET path`` with query ``params``; see ``request`` for errors."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST path`` with the JSON ``body``; see ``request`` for errors."""
        return self.request("POST", path, json=body or {})


def medusa_options() -> dict[str, Any]:
    """Return the ``medusa`` backend's options (``settings.COMMERCE_BACKENDS["medusa"]["OPTIONS"]``: ``URL``,
    ``API_KEY``, ``REGION_ID``, ``SALES_CHANNEL_ID``, ``SHIPPING_OPTION_ID``, ``SHIPPING_PROFILE_ID``,
    ``STATUS_SECRET``; environment ``MEDUSA_<option>``), ``{}`` when it is not configured."""
    return configured_options("medusa")


def medusa_client(options: dict[str, Any] | None = None) -> MedusaClient:
    """Return a client for ``options["URL"]`` with ``options["API_KEY"]`` (default: ``medusa_options()``).

    Raises ``ImproperlyConfigured`` when either is empty.
    """
    options = medusa_options() if options is None else options
    return MedusaClient(base_url=str(options.get("URL") or ""), api_key=str(options.get("API_KEY") or ""))
