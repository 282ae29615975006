"""The default backend: store the ``CommerceOrder`` as a ``LocalCommerceOrder``, idempotent on its key."""

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F

from healthcommerce.fulfillment.backends.base import (
    BackendStatus,
    CommerceBackend,
    PermanentBackendError,
    SubmitResult,
)
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.backends.local.services import (
    LocalOrderNotFound,
    LocalOrderTransitionError,
    local_order_cancel,
    local_order_confirm,
)
from healthcommerce.fulfillment.commerce import CommerceOrder, Confirmation


class LocalCommerceBackend(CommerceBackend):
    """Keep orders in ``LocalCommerceOrder``; an admin ships and delivers them."""

    name = "local"
    bulk_submit = True

    def submit_many(self, orders: Sequence[CommerceOrder]) -> list[SubmitResult | Exception]:
        """Store many orders in two statements: ``INSERT ... ON CONFLICT DO NOTHING`` on the unique
        ``idempotency_key`` and one ``SELECT`` of the stored rows (plus one ``UPDATE`` per replayed order).

        Answers exactly as ``submit`` would for each order, in order: its ``SubmitResult`` (a key stored
        before returns that row, counted in ``submit_count``), or ``PermanentBackendError("idempotency_key_
        reused")`` when the key is stored with another payload. A new row is recognised by the primary key this
        call chose for it (UUID), so concurrent batches with the same keys still store each order once.
        """
        candidates = [
            LocalCommerceOrder(
                idempotency_key=order.idempotency_key,
                order_reference=order.order_reference,
                payload=order.to_dict(),
                submit_count=1,
            )
            for order in orders
        ]
        LocalCommerceOrder.objects.bulk_create(candidates, ignore_conflicts=True)
        keys = [order.idempotency_key for order in orders]
        stored = {row.idempotency_key: row for row in LocalCommerceOrder.objects.filter(idempotency_key__in=keys)}
        replays = [stored[c.idempotency_key].pk for c in candidates if stored[c.idempotency_key].pk != c.pk]
        for pk in replays:  # a key twice in one batch counts twice
            LocalCommerceOrder.objects.filter(pk=pk).update(submit_count=F("submit_count") + 1)
        results: list[SubmitResult | Exception] = []
        for candidate in candidates:
            row = stored[candidate.idempotency_key]
            if row.payload != candidate.payload:
                results.append(
                    PermanentBackendError(
                        "The idempotency key was used for another order.", code="idempotency_key_reused"
                    )
                )
            else:
                results.append(SubmitResult(external_id=str(row.id)))
        return results

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
        ``cancelled``) with its carrier, tracking number and URL. Raises ``PermanentBackendError("not_found")``."""
        try:
            row = LocalCommerceOrder.objects.filter(pk=external_id).first()
        except (ValueError, ValidationError):
            row = None
        if row is None:
            raise PermanentBackendError("The local backend holds no such order.", code="not_found")
        return BackendStatus(
            str(row.status), carrier=row.carrier, tracking_number=row.tracking_number, tracking_url=row.tracking_url
        )
