"""The commerce backend interface and its errors; every error says whether it is temporary (docs/style.md 4, 6)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from healthcommerce.core.errors import HealthcommerceError, OutboundRefused
from healthcommerce.core.http import check_url
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation

_RETRY = Retry()  # only its Retry-After parser is used


@dataclass(frozen=True)
class SubmitResult:
    """What a backend answers for an accepted order: its own id for it."""

    external_id: str


@dataclass(frozen=True)
class BackendStatus:
    """An order's status at the backend, with its shipment when it has one.

    ``status`` is one of ``received``, ``confirmed``, ``shipped``, ``delivered``, ``cancelled``
    (``orders.models.FulfillmentStatus``); ``carrier``, ``tracking_number`` and ``tracking_url`` may be empty.
    """

    status: str
    carrier: str = ""
    tracking_number: str = ""
    tracking_url: str = ""


@dataclass(frozen=True)
class StatusEvent:
    """One verified status event a backend pushed to ``/webhooks/<backend>/``.

    ``event_id`` is the sender's id for the event (deduplicated per backend); ``order_reference`` is our opaque
    reference (``HC-...``) and ``external_id`` the backend's own id for the order (may be empty).
    """

    event_id: str
    order_reference: str
    external_id: str
    update: BackendStatus


class InboundRejected(HealthcommerceError):
    """An inbound status webhook that cannot be accepted: a bad or missing signature, a timestamp outside the
    tolerance (``status`` 401), or a body that is not a status event (400). ``code`` says which; never PHI."""

    code = "webhook_rejected"
    status = 400
    message = "The status webhook was not accepted."

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        if status is not None:
            self.status = status


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (delay in seconds, or an HTTP-date) into seconds from now (>= 0), with
    urllib3's parser (RFC 9110 section 10.2.3). Returns ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return float(_RETRY.parse_retry_after(value))
    except InvalidHeader:
        return None


class BackendError(HealthcommerceError):
    """A commerce backend refused or failed an operation. ``code`` is a stable slug, never PHI."""

    code = "backend_error"
    status = 502
    message = "The commerce platform could not take the order."


class TemporaryBackendError(BackendError):
    """Retrying later may succeed: 5xx, 429, timeouts, connection errors (docs/reliability.md "Retries and
    dead letters").

    ``retry_after`` (seconds) carries the backend's ``Retry-After`` when it sent one.
    """

    code = "backend_unavailable"
    temporary = True

    def __init__(
        self, message: str | None = None, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    """Retrying cannot help: 400/401/403/404/422 and reuse of an idempotency key with another payload."""

    code = "backend_rejected"


def url_check(url: str, *, setting: str) -> list[CheckMessage]:
    """Return ``[Error healthcommerce.E102]`` when ``url`` breaks the outbound rules (``core.http.check_url``:
    https, or http to this machine), else ``[]``: for a backend's ``check()``; ``setting`` names it."""
    try:
        check_url(url)
    except OutboundRefused:
        return [Error(f"{setting} must be https (or http to this machine).", id="healthcommerce.E102")]
    return []


def configured_options(name: str) -> dict[str, Any]:
    """Return the ``OPTIONS`` of backend ``name`` in ``settings.COMMERCE_BACKENDS`` (``{}`` when it has none)."""
    entry = getattr(settings, "COMMERCE_BACKENDS", {}).get(name) or {}
    return dict(entry.get("OPTIONS") or {})


class CommerceBackend:
    """Base class of every commerce backend. Subclasses set ``name`` and implement ``submit`` and ``confirm``;
    ``cancel``, ``status`` and ``status_events`` when the platform has them.

    A backend is configured like Django's ``CACHES``: one entry of ``settings.COMMERCE_BACKENDS`` names its class
    (``BACKEND``) and its ``OPTIONS`` (a dict, upper-case keys), which the registry passes to ``__init__``. The
    backend reads and validates its own options (``check``); ``__init__`` raises ``ImproperlyConfigured`` for
    options it cannot work with.
    """

    name = "base"
    # True when ``submit_many`` stores many orders in one round trip (the local backend); the outbox then hands
    # ``fulfillment.submit`` rows over in batches (ADR 0014). A network backend keeps one call per order.
    bulk_submit = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        """Keep ``options``; ``None`` reads this backend's entry in ``settings.COMMERCE_BACKENDS`` (by ``name``)."""
        self.options: dict[str, Any] = dict(configured_options(self.name) if options is None else options)

    @classmethod
    def check(cls, options: Mapping[str, Any], *, selected: bool) -> list[CheckMessage]:
        """Return the Django check messages for ``options`` (``manage.py check --deploy``,
        ``fulfillment/checks.py``); never a secret in a message.

        ``selected`` is true for the backend ``COMMERCE_BACKEND`` names (it takes new orders, so its options must
        be complete); the other configured backends are checked only for what they do unselected (their status
        webhooks). The default builds the selected backend and reports ``ImproperlyConfigured`` as
        ``healthcommerce.E101``.
        """
        if not selected:
            return []
        try:
            cls(options)
        except ImproperlyConfigured as exc:
            return [Error(f"COMMERCE_BACKEND={cls.name!r}: {exc}", id="healthcommerce.E101")]
        return []

    def submit_many(self, orders: Sequence[CommerceOrder]) -> list[SubmitResult | Exception]:
        """Submit each of ``orders``; return, in the same order, its ``SubmitResult`` or the exception its submit
        raised (``TemporaryBackendError``, ``PermanentBackendError``, or any other), so one order's failure
        costs only that order. The default calls ``submit`` once per order."""
        results: list[SubmitResult | Exception] = []
        for order in orders:
            try:
                results.append(self.submit(order))
            except Exception as exc:
                results.append(exc)
        return results

    def submit(self, order: CommerceOrder) -> SubmitResult:
        """Create ``order`` on the commerce side, idempotently on ``order.idempotency_key``.

        Submitting the same key twice returns the same ``SubmitResult`` (a 409 with a matching key is
        success, docs/reliability.md "None is fulfilled twice"). Raises ``TemporaryBackendError`` or
        ``PermanentBackendError``.
        """
        raise NotImplementedError

    def confirm(self, external_id: str, confirmation: Confirmation | None = None) -> None:
        """Tell the backend the patient confirmed the order ``external_id`` (the id ``submit`` returned), with
        the patient's ``confirmation`` (a corrected ship-to, a delivery preference) when there is one.

        Idempotent. Raises ``TemporaryBackendError`` or ``PermanentBackendError``.
        """
        raise NotImplementedError

    def cancel(self, external_id: str) -> None:
        """Cancel the order ``external_id`` if it has not shipped. Idempotent. Raises ``PermanentBackendError``
        (code ``too_late``) once it has shipped, or ``TemporaryBackendError``."""
        raise NotImplementedError

    def status(self, external_id: str) -> BackendStatus:
        """Return the order's status at the backend (``BackendStatus``: ``received``, ``confirmed``, ``shipped``,
        ``delivered`` or ``cancelled``, with carrier and tracking once shipped), for the daily reconciliation.
        Raises ``TemporaryBackendError`` or ``PermanentBackendError`` (``not_found``). A backend that cannot be
        asked leaves this out (or raises ``PermanentBackendError("status_unsupported")``): the reconciliation then
        skips it (``backend_reports_status``)."""
        raise PermanentBackendError("This backend cannot be asked for status.", code="status_unsupported")

    def status_events(self, body: bytes, headers: Mapping[str, str]) -> list[StatusEvent]:
        """Verify and parse a status webhook the backend sent to ``/webhooks/<name>/``: ``body`` is the raw
        request body, ``headers`` its headers (any case). Returns the events it carries.

        Raises ``InboundRejected`` (signature, timestamp, shape). The base class accepts none: ``status`` 404
        (``webhook_unsupported``), so a backend without inbound status has no endpoint.
        """
        raise InboundRejected("This backend sends no status webhooks.", code="webhook_unsupported", status=404)
