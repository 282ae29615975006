"""Fulfillment throughput and sign-to-acknowledgement latency through the real pipeline: outbox -> Redis ->
Celery worker -> local backend -> order.submitted -> purchase link, on PostgreSQL and Redis (issue 7).

- Throughput: ``BENCH_ORDERS`` signed orders handed over at once; orders per second until every order is
  ``submitted`` and its link row is done.
- Sign-to-ack when idle: ``BENCH_IDLE_ORDERS`` orders one at a time; from the hand-over to the backend's
  acknowledgement (the local backend's row), p50 and p95.
Run with ``make bench`` (PostgreSQL and Redis in the environment: DATABASE_URL, CELERY_BROKER_URL); skipped
without them. Not part of ``make test``.
"""

import os
import statistics
import time
from datetime import date

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healthcommerce.catalog.models import Product
from healthcommerce.ehr.models import EHRSite
from healthcommerce.fulfillment.models import LocalCommerceOrder
from healthcommerce.orders.events import TOPIC_ORDER_SIGNED, order_event_key, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_publish
from tests.servers import app_cluster, free_port

ORDERS = int(os.environ.get("BENCH_ORDERS", "300"))
IDLE_ORDERS = int(os.environ.get("BENCH_IDLE_ORDERS", "20"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _orders(count: int, site: EHRSite, product: Product) -> list[Order]:
    now = timezone.now()
    rows = [
        Order(
            site=site,
            status=Order.Status.SIGNED,
            patient_fhir_id=f"bench-{n}",
            product=product,
            quantity=1,
            order_date=date.today(),
            patient_name="Bench Patient",
            patient_birth_date=date(1980, 1, 1),
            practitioner_reference="Practitioner/pra1234",
            practitioner_name="Dr. Bench",
            ship_to={"line": ["1 Main St"], "city": "McLean", "state": "VA", "postal_code": "22102", "country": "US"},
            contact_email=f"bench{n}@example.org",
            signed_by="Practitioner/pra1234",
            signed_at=now,
            content_hash="b" * 64,
        )
        for n in range(count)
    ]
    return Order.objects.bulk_create(rows)


def _hand_over(orders: list[Order]) -> list[str]:
    """Publish ``order.signed`` for ``orders`` (as ``order_sign`` does); return the rows' ids."""
    with transaction.atomic():
        return [
            str(row.pk)
            for order in orders
            for row in outbox_publish(
                topic=TOPIC_ORDER_SIGNED, key=order_event_key(order), subject=order_subject(order)
            )
        ]


def _acked(order_ids: list[str]) -> int:
    return Order.objects.filter(pk__in=order_ids, status=Order.Status.SUBMITTED).count()


def test_fulfillment_throughput_and_sign_to_ack(tmp_path):
    redis_broker = settings.CELERY_BROKER_URL.startswith("redis://")
    if not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and redis_broker):
        pytest.skip("needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL)")
    # The workers share this process's broker, so the hand-over's own on-commit publish reaches them, as a
    # sign-off in a web process does.
    broker = settings.CELERY_BROKER_URL
    site = EHRSite.objects.create(name="Bench", iss="https://ehr.bench.example/fhir", client_id="bench")
    product = Product.objects.get(sku="DME-CPAP-STD")

    with app_cluster(tmp_path, ports=[free_port()], workers=WORKERS, broker_url=broker):
        time.sleep(3)  # workers connected
        # Idle: one order at a time, sign-to-ack.
        latencies = []
        for order in _orders(IDLE_ORDERS, site, product):
            started = time.monotonic()
            _hand_over([order])
            while not LocalCommerceOrder.objects.filter(order_reference=order.reference).exists():
                time.sleep(0.005)
            latencies.append(time.monotonic() - started)

        # Throughput: many at once.
        batch = _orders(ORDERS, site, product)
        ids = [str(o.pk) for o in batch]
        started = time.monotonic()
        _hand_over(batch)
        published = time.monotonic() - started
        deadline = started + 300
        while _acked(ids) < ORDERS and time.monotonic() < deadline:
            time.sleep(0.1)
        acked_in = time.monotonic() - started
        links = OutboxMessage.objects.filter(subscriber="purchaselinks.deliver", status="done")
        while links.count() < ORDERS + IDLE_ORDERS and time.monotonic() < deadline:
            time.sleep(0.1)
        linked_in = time.monotonic() - started

    acked = _acked(ids)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\nfulfillment on PostgreSQL + Redis, {WORKERS} worker(s) x 2 processes, local backend:"
        f"\n  sign-to-ack when idle ({IDLE_ORDERS} orders one at a time): p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms"
        f"\n  throughput: {ORDERS} orders handed over (one transaction) in {published:.2f} s, "
        f"all acknowledged in {acked_in:.1f} s "
        f"= {ORDERS / acked_in:.0f} orders/s; with their purchase links in {linked_in:.1f} s "
        f"= {ORDERS / linked_in:.0f} orders/s"
    )
    assert acked == ORDERS
    assert LocalCommerceOrder.objects.filter(submit_count__gt=1).count() == 0  # nothing submitted twice
