"""The ``webhook`` backend: each signed order is POSTed to one supplier URL as a Standard Webhooks message
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``), optionally over mutual TLS
(docs/adr/0009).

Only the ``CommerceOrder`` crosses (docs/architecture.md "The commerce boundary"): the body is
``{"type": "order.created", "timestamp": <ISO 8601 UTC>, "data": order.to_dict()}``. ``order.confirmed`` and
``order.cancelled`` carry ``{"id": <external id>}`` and nothing else. The supplier can only be told, never asked:
the backend has no ``status`` (the daily reconciliation skips it); the supplier pushes status webhooks instead.
Source: the Standard Webhooks specification (standardwebhooks.com), signing done by its reference library
``standardwebhooks``.
"""

import hashlib
import json
import logging
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from standardwebhooks import Webhook

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import check_url, outbound_session
from healthcommerce.fulfillment.backends.base import (
    BackendError,
    CommerceBackend,
    PermanentBackendError,
    StatusEvent,
    SubmitResult,
    TemporaryBackendError,
    retry_after_seconds,
)
from healthcommerce.fulfillment.backends.inbound import secret_check, secret_errors, standard_status_events
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation

logger = logging.getLogger(__name__)

ORDER_CREATED = "order.created"
ORDER_CONFIRMED = "order.confirmed"
ORDER_CANCELLED = "order.cancelled"
# Statuses a retry may cure (RFC 9110: 408 Request Timeout, 429 Too Many Requests; RFC 8470: 425 Too Early).
_TEMPORARY_STATUSES = {408, 425, 429}
# The longest receiver id kept as ``external_id`` (the outbox stores 200 characters of the result).
_EXTERNAL_ID_MAX = 200


def webhook_id(event_type: str, subject: str) -> str:
    """Return the Standard Webhooks ``webhook-id`` for ``event_type`` about ``subject``: ``msg_<32 hex>``.

    ``subject`` is the order's idempotency key for ``order.created`` and the external id for the other events.
    The id is a hash of both, so every retry of one message carries the same id (the receiver deduplicates on
    it), two events about one order have different ids, and the id itself reveals nothing.
    """
    digest = hashlib.sha256(f"{event_type}\n{subject}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def _is_tls_failure(exc: BaseException) -> bool:
    """Whether ``exc`` or anything in its cause chain is a TLS failure (handshake refused, certificate not
    trusted, a client certificate the server wanted and did not get)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | requests.exceptions.SSLError):
            return True
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError and ProtocolError
        if isinstance(reason, BaseException):
            todo.append(reason)
    return False


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object body, or ``{}`` when it has none."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str:
    """``value`` when it is a non-empty string short enough to keep as an id, else ``""``."""
    return value if isinstance(value, str) and 0 < len(value) <= _EXTERNAL_ID_MAX else ""


def _file_option(options: Mapping[str, Any], key: str) -> str:
    """The path in ``options[key]`` (empty when unset); raise ``ImproperlyConfigured`` naming ``WEBHOOK_<key>`` if
    it names no file."""
    value = str(options.get(key) or "")
    if value and not Path(value).is_file():
        raise ImproperlyConfigured(f"WEBHOOK_{key} names no readable file.")
    return value


class WebhookCommerceBackend(CommerceBackend):
    """POST signed Standard Webhooks events about orders to one supplier endpoint.

    Options (``settings.COMMERCE_BACKENDS["webhook"]["OPTIONS"]``, environment ``WEBHOOK_<option>``): ``URL``
    (required; https, or http to loopback) and ``SECRET`` (required; ``whsec_<base64>``); ``CLIENT_CERT`` and
    ``CLIENT_KEY`` (PEM file paths, both or neither: the client certificate for mutual TLS); ``CA_BUNDLE`` (a PEM
    file of CAs to trust instead of the system's, for a supplier with a private CA); ``STATUS_SECRET`` (``whsec_``:
    what the supplier signs its status webhooks with). Raises ``ImproperlyConfigured`` when they are missing or
    wrong.
    """

    name = "webhook"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        url = str(self.options.get("URL") or "")
        secret = str(self.options.get("SECRET") or "")
        if not url or not secret:
            raise ImproperlyConfigured("WEBHOOK_URL and WEBHOOK_SECRET must be set for the webhook backend.")
        try:
            check_url(url)
        except OutboundRefused as exc:
            raise ImproperlyConfigured("WEBHOOK_URL must be https (or http to this machine).") from exc
        self.url = url
        self.signer = Webhook(secret_check(secret))
        cert, key = _file_option(self.options, "CLIENT_CERT"), _file_option(self.options, "CLIENT_KEY")
        if bool(cert) != bool(key):
            raise ImproperlyConfigured("WEBHOOK_CLIENT_CERT and WEBHOOK_CLIENT_KEY must be set together.")
        ca_bundle = _file_option(self.options, "CA_BUNDLE")
        self.session = outbound_session(only_origin=url, site="commerce:webhook", kind="commerce_submit")
        self.session.headers["Accept"] = "application/json"
        # Passed on every request: a session-level ``verify`` loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = ca_bundle or True
        self.cert: tuple[str, str] | None = (cert, key) if cert else None

    def submit(self, order: CommerceOrder) -> SubmitResult:
        """POST ``order.created`` with ``data = order.to_dict()``; the ``webhook-id`` is derived from
        ``order.idempotency_key``, so a retry or a second submit of the same order sends the same id.

        Returns ``SubmitResult(external_id=<the receiver's "id" from a JSON answer, else the webhook-id>)``. A 409
        whose JSON body names this message (``webhook_id`` or ``id`` equal to the webhook-id, or the same
        ``idempotency_key``) is success: the supplier already has it. Raises as ``_post``.
        """
        message_id = webhook_id(ORDER_CREATED, order.idempotency_key)
        answer = self._post(ORDER_CREATED, message_id, order.to_dict(), idempotency_key=order.idempotency_key)
        return SubmitResult(external_id=_text(answer.get("id")) or message_id)

    def confirm(self, external_id: str, confirmation: Confirmation | None = None) -> None:
        """POST ``order.confirmed`` with ``{"id": external_id}`` plus, when the patient gave them, ``ship_to`` (a
        corrected address, same shape as in ``order.created``) and ``delivery_preference``; idempotent (a stable
        webhook-id, a 409 naming it is success). Raises as ``_post``."""
        data: dict[str, Any] = {"id": external_id}
        if confirmation is not None:
            if confirmation.ship_to is not None:
                data["ship_to"] = confirmation.to_dict()["ship_to"]
            if confirmation.delivery_preference:
                data["delivery_preference"] = confirmation.delivery_preference
        self._post(ORDER_CONFIRMED, webhook_id(ORDER_CONFIRMED, external_id), data)

    def cancel(self, external_id: str) -> None:
        """POST ``order.cancelled`` with ``{"id": external_id}``; idempotent as ``confirm``. Raises as ``_post``
        (a supplier that has shipped answers with a 4xx: ``PermanentBackendError``)."""
        self._post(ORDER_CANCELLED, webhook_id(ORDER_CANCELLED, external_id), {"id": external_id})

    @classmethod
    def check(cls, options: Mapping[str, Any], *, selected: bool) -> list[CheckMessage]:
        """The base checks when ``selected`` (``__init__`` validates every option: ``E101``, naming the
        environment variable), and, selected or not, ``STATUS_SECRET`` when set (``E103``)."""
        errors = super().check(options, selected=selected)
        return errors + secret_errors(str(options.get("STATUS_SECRET") or ""), setting="WEBHOOK_STATUS_SECRET")

    def status_events(self, body: bytes, headers: Any) -> list[StatusEvent]:
        """Verify a Standard Webhooks status event from the supplier, signed with ``WEBHOOK_STATUS_SECRET`` (the
        secret we gave it, option ``STATUS_SECRET``; not the one we sign with), and return it
        (``standard_status_events``). Raises ``InboundRejected``."""
        secret = str(self.options.get("STATUS_SECRET") or "")
        return standard_status_events(body, headers, secret=secret, setting="WEBHOOK_STATUS_SECRET")

    def _post(
        self, event_type: str, message_id: str, data: dict[str, Any], *, idempotency_key: str = ""
    ) -> dict[str, Any]:
        """Sign and POST one event; return the receiver's JSON object answer (``{}`` when it sent none).

        Raises ``TemporaryBackendError`` for a timeout (``webhook_timeout``), a TLS failure (``webhook_tls``), any
        other connection failure (``webhook_unreachable``), and 408/425/429/5xx (``http_<status>``, with
        ``retry_after`` from ``Retry-After``); ``PermanentBackendError`` (``http_<status>``) for any other non-2xx
        answer except a 409 naming this message. Redirects are not followed. Logs the event type, webhook-id and
        status only.
        """
        sent_at = int(time.time())
        when = datetime.fromtimestamp(sent_at, tz=UTC)
        body = json.dumps(
            {"type": event_type, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "data": data},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(sent_at),
            "webhook-signature": self.signer.sign(msg_id=message_id, timestamp=when, data=body),
        }
        try:
            response = self.session.post(
                self.url,
                data=body.encode(),
                headers=headers,
                allow_redirects=False,
                verify=self.verify,
                cert=self.cert,
            )
        except requests.Timeout as exc:
            logger.warning("webhook %s %s timed out", event_type, message_id)
            raise TemporaryBackendError("The supplier's webhook timed out.", code="webhook_timeout") from exc
        except requests.RequestException as exc:
            tls = _is_tls_failure(exc)
            logger.warning("webhook %s %s failed: %s", event_type, message_id, "tls" if tls else "unreachable")
            if tls:
                raise TemporaryBackendError("The TLS handshake with the supplier failed.", code="webhook_tls") from exc
            raise TemporaryBackendError("The supplier's webhook is unreachable.", code="webhook_unreachable") from exc
        logger.info("webhook %s %s answered %s", event_type, message_id, response.status_code)
        answer = _json_object(response)
        error = self._error(response, answer, message_id, idempotency_key)
        if error is not None:
            raise error
        return answer

    @staticmethod
    def _error(
        response: requests.Response, answer: dict[str, Any], message_id: str, idempotency_key: str
    ) -> BackendError | None:
        """The error for ``response``, or ``None`` for a 2xx or a 409 that names this message (already received).

        The body is never copied into the error: it may echo an address."""
        status = response.status_code
        if 200 <= status < 300:
            return None
        if status == 409 and (
            message_id in (answer.get("webhook_id"), answer.get("id"))
            or (idempotency_key and answer.get("idempotency_key") == idempotency_key)
        ):
            return None
        if status in _TEMPORARY_STATUSES or status >= 500:
            return TemporaryBackendError(
                "The supplier's webhook is unavailable; the order will be retried.",
                code=f"http_{status}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        return PermanentBackendError("The supplier refused the order.", code=f"http_{status}")
