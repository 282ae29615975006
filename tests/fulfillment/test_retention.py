"""Retention (issue 9, docs/reliability.md "Retention"): beat deletes old done outbox rows and blanks the PHI of
closed orders, then of their local commerce payloads and purchase links; each purge writes one audit row with its
counts, and nothing open or recent is touched."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.tasks import purge as local_purge_task
from healthcommerce.orders.models import Order
from healthcommerce.orders.services import orders_phi_purge
from healthcommerce.orders.tasks import purge as orders_purge_task
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_purge
from healthcommerce.outbox.tasks import purge as outbox_purge_task
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_links_phi_purge
from healthcommerce.purchaselinks.tasks import purge as links_purge_task
from tests.fulfillment.conftest import PATIENT_NAME
from tests.pipeline import deliver, signed

pytestmark = pytest.mark.django_db
S = Order.Status


def days_ago(days: int) -> object:
    return timezone.now() - timedelta(days=days)


def purges(target: str) -> list[dict]:
    return [e.detail for e in AuditEvent.objects.filter(action="retention.purge", target=target).order_by("created_at")]


def outbox_row(key: str, status: str, age_days: int) -> OutboxMessage:
    row = OutboxMessage.objects.create(
        topic="order.signed", subscriber="fulfillment.submit", idempotency_key=key, subject=key, status=status,
        available_at=timezone.now(),
    )  # fmt: skip
    OutboxMessage.objects.filter(pk=row.pk).update(updated_at=days_ago(age_days))
    return row


def test_done_and_cancelled_outbox_rows_go_after_the_retention_days_dead_and_pending_stay(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OUTBOX_RETENTION_DAYS = 30
    old_done = outbox_row("a", OutboxMessage.Status.DONE, 31)
    old_cancelled = outbox_row("b", OutboxMessage.Status.CANCELLED, 31)
    kept = [
        outbox_row("c", OutboxMessage.Status.DONE, 29),
        outbox_row("d", OutboxMessage.Status.DEAD, 400),
        outbox_row("e", OutboxMessage.Status.PENDING, 400),
    ]

    assert outbox_purge_task() == 2
    assert not OutboxMessage.objects.filter(pk__in=[old_done.pk, old_cancelled.pk]).exists()
    assert set(OutboxMessage.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert outbox_purge() == 0  # idempotent
    assert purges("OutboxMessage") == [
        {"outbox_messages": 2, "retention_days": 30},
        {"outbox_messages": 0, "retention_days": 30},
    ]


def closed(make_order: Callable[..., Order], status: str, age_days: int, **fields: object) -> Order:
    order = make_order(status=status, **fields)
    Order.objects.filter(pk=order.pk).update(updated_at=days_ago(age_days), created_at=days_ago(age_days))
    return order


def test_the_phi_of_closed_orders_is_blanked_and_everything_else_kept(  # type: ignore[no-untyped-def]
    settings, make_order: Callable[..., Order]
) -> None:
    settings.ORDER_PHI_RETENTION_DAYS = 90
    cancelled = closed(make_order, S.CANCELLED, 91, patient_ship_to={"line": ["2 Side St"], "city": "Reston"})
    failed = closed(make_order, S.FAILED, 91)
    delivered = closed(
        make_order, S.FULFILLED, 200, fulfillment_status="delivered", fulfillment_updated_at=days_ago(91)
    )
    abandoned_draft = closed(make_order, S.DRAFT, 91)
    kept = [
        closed(make_order, S.CANCELLED, 89),  # too recent
        closed(make_order, S.SUBMITTED, 400),  # open
        closed(make_order, S.SIGNED, 400),  # open
        closed(make_order, S.FULFILLED, 400, fulfillment_status="shipped", fulfillment_updated_at=days_ago(300)),
        closed(make_order, S.FULFILLED, 400, fulfillment_status="delivered", fulfillment_updated_at=days_ago(10)),
    ]
    before = Order.objects.get(pk=cancelled.pk)

    assert orders_purge_task() == 4
    for order in (cancelled, failed, delivered, abandoned_draft):
        purged = Order.objects.get(pk=order.pk)
        assert purged.phi_purged_at is not None
        assert (purged.patient_name, purged.patient_birth_date, purged.ship_to, purged.patient_ship_to) == (
            "",
            None,
            {},
            {},
        )
        assert (purged.contact_email, purged.contact_phone, purged.payer_member_id) == ("", "", "")
    after = Order.objects.get(pk=cancelled.pk)
    for name in ("id", "reference", "product_id", "status", "content_hash", "created_at", "updated_at", "signed_at"):
        assert getattr(after, name) == getattr(before, name), name
    for order in kept:
        untouched = Order.objects.get(pk=order.pk)
        assert untouched.patient_name == PATIENT_NAME and untouched.phi_purged_at is None
    assert orders_phi_purge() == 0  # idempotent
    assert purges("Order") == [{"orders": 4, "retention_days": 90}, {"orders": 0, "retention_days": 90}]


def test_the_local_payload_and_the_links_of_a_purged_order_lose_their_phi_and_the_links_close(  # type: ignore[no-untyped-def]
    settings, make_order: Callable[..., Order], ful_site
) -> None:
    site_settings_update(ful_site, {"sms_enabled": True})
    gone, open_order = make_order(contact_phone="+1 703 555 0100"), make_order(contact_phone="+1 703 555 0100")
    for order in (gone, open_order):
        deliver(signed(order))
    Order.objects.filter(pk=gone.pk).update(status=S.CANCELLED, updated_at=days_ago(120))
    gone_local = LocalCommerceOrder.objects.get(order_reference=gone.reference)
    LocalCommerceOrder.objects.filter(pk=gone_local.pk).update(
        confirmation={"ship_to": {"line": ["2 Side St"]}, "delivery_preference": "signature"}
    )
    gone_links = list(PurchaseLink.objects.filter(order=gone).values_list("pk", flat=True))
    assert gone_links and PurchaseLink.objects.filter(order=gone, revoked_at__isnull=True).exists()

    assert local_purge_task() == 0 and purchase_links_phi_purge() == 0  # the order's PHI is still there
    assert orders_phi_purge() == 1
    assert local_purge_task() == 1
    assert links_purge_task() == len(gone_links)

    local = LocalCommerceOrder.objects.get(pk=gone_local.pk)
    assert set(local.payload) == {"order_reference", "idempotency_key", "items"}
    assert local.payload["items"] and local.confirmation == {"delivery_preference": "signature"}
    assert local.phi_purged_at is not None
    for link in PurchaseLink.objects.filter(pk__in=gone_links):
        assert (link.sent_to, link.sms_sent_to) == ("", "")
        assert link.revoked_at is not None and link.phi_purged_at is not None
    other_local = LocalCommerceOrder.objects.get(order_reference=open_order.reference)
    assert "ship_to" in other_local.payload and other_local.phi_purged_at is None
    for link in PurchaseLink.objects.filter(order=open_order):
        assert link.phi_purged_at is None and (link.sent_to or link.sms_sent_to)
    assert local_purge_task() == 0 and purchase_links_phi_purge() == 0  # idempotent
    assert purges("LocalCommerceOrder")[1] == {"local_orders": 1}
    revoked = PurchaseLink.objects.filter(pk__in=gone_links, revoked_at__isnull=False).count()
    assert purges("PurchaseLink")[1]["purchase_links"] == len(gone_links)
    assert 1 <= purges("PurchaseLink")[1]["revoked"] <= revoked


def test_retention_runs_daily_from_beat_each_stage_after_the_one_before(settings) -> None:  # type: ignore[no-untyped-def]
    schedule = settings.CELERY_BEAT_SCHEDULE
    tasks = [
        "purge-launches",
        "purge-outbox",
        "purge-order-phi",
        "purge-local-order-phi",
        "purge-purchase-link-phi",
    ]
    minutes = [min(schedule[name]["schedule"].minute) for name in tasks]

    assert minutes == sorted(minutes) and len(set(minutes)) == len(minutes)
    assert all(schedule[name]["schedule"].hour == {3} for name in tasks)
    assert schedule["clear-launch-tokens"]["schedule"] == 600.0
