"""The default backend: store the ``CommerceOrder`` as a ``LocalCommerceOrder``, idempotent on its key."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F

from healthcommerce.fulfillment.backends.base import (
    BackendStatus,
    CommerceBackend,
    PermanentBackendError,
    SubmitResult,
)
from healthcommerce.fulfillment.backends.local.services import (
    LocalOrderNotFound,
    LocalOrderTransitionError,
    local_order_cancel,
    local_order_confirm,
)
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation
from healthcommerce.fulfillment.models import LocalCommerceOrder


class LocalCommerceBackend(CommerceBackend):
    """Keep orders in ``LocalCommerceOrder``; an admin ships and delivers them."""

    name = "local"

    def submit(self, order: CommerceOrder) -> SubmitResult:
        """Insert the order, or return the row already stored under the same idempotency key.

        Counts every call per key in ``submit_count`` (a replay answers like the first call but is counted).
        Raises ``PermanentBackendError("idempotency_key_reused")`` when the key is known with a different
        payload (IETF Idempotency-Key header draft, "Error Scenarios": 422 for a key reused with another payload).
        """
        payload = order.to_dict()
        try:
            with transaction.atomic():
                row, created = LocalCommerceOrder.objects.get_or_create(
                    idempotency_key=order.idempotency_key,
                    defaults={"order_reference": order.order_reference, "payload": payload, "submit_count": 1},
                )
        except IntegrityError:  # a concurrent insert won the unique key; read its row
            row, created = LocalCommerceOrder.objects.get(idempotency_key=order.idempotency_key), False
        if not created:  # a new row is stored already counted: one statement fewer per order
            LocalCommerceOrder.objects.filter(pk=row.pk).update(submit_count=F("submit_count") + 1)
        if row.payload != payload:
            raise PermanentBackendError(
                "The idempotency key was used for another order.", code="idempotency_key_reused"
            )
        return SubmitResult(external_id=str(row.id))

    def confirm(self, external_id: str, confirmation: Confirmation | None = None) -> None:
        """Mark the local order ``confirmed`` with the patient's ``confirmation`` (``local_order_confirm``);
        idempotent. Raises ``PermanentBackendError("not_found")`` for an unknown id."""
        try:
            local_order_confirm(
                local_order_id=external_id, confirmation=confirmation.to_dict() if confirmation else None
            )
        except (LocalOrderNotFound, ValueError, ValidationError) as exc:
            raise PermanentBackendError("The local backend holds no such order.", code="not_found") from exc

    def cancel(self, external_id: str) -> None:
        """Cancel the local order unless it has shipped (``local_order_cancel``); idempotent. Raises
        ``PermanentBackendError`` with ``too_late`` once shipped, or ``not_found``."""
        try:
            local_order_cancel(local_order_id=external_id)
        except (LocalOrderNotFound, ValueError, ValidationError) as exc:
            raise PermanentBackendError("The local backend holds no such order.", code="not_found") from exc
        except LocalOrderTransitionError as exc:
            raise PermanentBackendError("The order has already shipped.", code="too_late") from exc

    def status(self, external_id: str) -> BackendStatus:
        """Return the local order's status (``received``, ``confirmed``, ``shipped``, ``delivered`` or
        ``cancelled``) with its tracking number. Raises ``PermanentBackendError("not_found")``."""
        try:
            row = LocalCommerceOrder.objects.filter(pk=external_id).first()
        except (ValueError, ValidationError):
            row = None
        if row is None:
            raise PermanentBackendError("The local backend holds no such order.", code="not_found")
        return BackendStatus(str(row.status), tracking_number=row.tracking_number)
