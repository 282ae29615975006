"""The daily reconciliation: ask each backend where our open orders are (docs/reliability.md "Status back").

Status webhooks can be lost, late or never configured; once a day (beat, ``FULFILLMENT_RECONCILE_HOUR``) and on
demand (``manage.py fulfillment_reconcile``) every open order, one handed to a backend and not yet delivered or
cancelled, is checked with ``CommerceBackend.status`` and the answer applied like any other report
(``fulfillment_status_apply``, source ``reconciliation``). One order's failure costs only that order; a backend
that cannot be asked (no ``status`` method, e.g. a push-only supplier, or one raising ``status_unsupported``) is
skipped with one log line naming the backend, and the run goes on with the other backends' orders.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from healthcommerce.fulfillment.backends.base import BackendError, CommerceBackend
from healthcommerce.fulfillment.backends.registry import backend_reports_status, get_backend
from healthcommerce.fulfillment.status import APPLIED, REFUSED, UnknownFulfillmentStatus, fulfillment_status_apply
from healthcommerce.orders.models import FulfillmentStatus, Order

logger = logging.getLogger(__name__)

ACTOR = "system:reconciliation"
OPEN = (Order.Status.SUBMITTED, Order.Status.FULFILLED)
DONE = (FulfillmentStatus.DELIVERED, FulfillmentStatus.CANCELLED)


@dataclass
class ReconcileReport:
    """What one reconciliation run did: orders ``checked``, ``changed`` (a status or tracking moved),
    ``conflicts`` (refused, e.g. the platform cancelled a shipped order), ``skipped`` backends that cannot be
    asked, and ``errors`` by code (``<backend>:<code>``)."""

    checked: int = 0
    changed: int = 0
    conflicts: int = 0
    skipped: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"checked", "changed", "conflicts", "skipped": [...], "errors": {code: count}}``."""
        return {
            "checked": self.checked,
            "changed": self.changed,
            "conflicts": self.conflicts,
            "skipped": sorted(self.skipped),
            "errors": dict(self.errors),
        }


def open_orders(*, max_age_days: int) -> "list[Order]":
    """Orders a backend took (``commerce_id`` set), ``submitted`` or ``fulfilled`` and not yet delivered or
    cancelled there, signed within ``max_age_days``; oldest first."""
    since = timezone.now() - timedelta(days=max_age_days)
    rows = (
        Order.objects.filter(status__in=OPEN, signed_at__gte=since)
        .exclude(commerce_id="")
        .exclude(fulfillment_status__in=DONE)
        .order_by("signed_at")
    )
    return list(rows)


def _skip(report: ReconcileReport, name: str) -> None:
    """Skip backend ``name`` for the rest of the run, with one log line (the backend's name only)."""
    report.skipped.add(name)
    logger.info("reconcile backend=%s skipped: it cannot be asked for status", name)


def _reconcile_one(order: Order, name: str, backends: dict[str, CommerceBackend], report: ReconcileReport) -> None:
    """Ask backend ``name`` (built once per run, kept in ``backends``) about ``order`` and apply the answer,
    counting it in ``report``; a backend without ``status`` is skipped (``_skip``). Never raises for a backend
    error, a misconfigured backend or an unknown status: each is counted and logged with the reference and code."""
    try:
        backend = backends.get(name) or backends.setdefault(name, get_backend(name))
        if not backend_reports_status(backend):
            _skip(report, name)
            return
        update = backend.status(order.commerce_id)
        outcome = fulfillment_status_apply(
            order_id=order.pk, update=update, source="reconciliation", backend=name, actor=ACTOR
        )
    except NotImplementedError:  # a backend written before the base class answered ``status_unsupported``
        _skip(report, name)
        return
    except BackendError as exc:
        if exc.code == "status_unsupported":
            _skip(report, name)
            return
        _failed(report, order, name, exc.code)
        return
    except (ImproperlyConfigured, UnknownFulfillmentStatus) as exc:
        _failed(report, order, name, getattr(exc, "code", "backend_misconfigured"))
        return
    report.checked += 1
    report.changed += outcome == APPLIED
    report.conflicts += outcome == REFUSED


def _failed(report: ReconcileReport, order: Order, name: str, code: str) -> None:
    """Count and log (reference, backend, code; no PHI) an order that could not be checked."""
    report.checked += 1
    report.errors[f"{name}:{code}"] += 1
    logger.warning("reconcile order=%s backend=%s failed: %s", order.reference, name, code)


def fulfillment_reconcile(*, limit: int = 1000, max_age_days: int | None = None) -> ReconcileReport:
    """Check up to ``limit`` open orders (``open_orders``) against their backends and apply what they say.

    ``max_age_days`` defaults to ``settings.FULFILLMENT_RECONCILE_MAX_AGE_DAYS``. Never raises for one order:
    backend errors (``BackendError``, a misconfigured backend, an unknown status) are counted in the report and
    logged with the order reference and code; an ERROR line alerts when any order could not be checked.
    """
    days = max_age_days if max_age_days is not None else int(settings.FULFILLMENT_RECONCILE_MAX_AGE_DAYS)
    report = ReconcileReport()
    backends: dict[str, CommerceBackend] = {}
    for order in open_orders(max_age_days=days)[:limit]:
        name = order.commerce_backend
        if name not in report.skipped:
            _reconcile_one(order, name, backends, report)
    if report.errors:
        logger.error("ALERT fulfillment reconciliation could not check orders: %s", dict(report.errors))
    logger.info("fulfillment reconciliation %s", report.as_dict())
    return report
