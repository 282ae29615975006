"""Scale-out with real processes on PostgreSQL and Redis: two gunicorn instances on two ports (as behind a load
balancer), two Celery workers and one beat, against the sandbox EHR.

- A launch started on instance A completes its callback and sign-off on instance B: all launch state is
  server-side (database sessions, launch rows, the shared Redis cache).
- 200 orders, each from its own launch, are signed concurrently through both instances; each is handed to the
  commerce backend exactly once (the local backend counts the submits per idempotency key) and none is lost.

Needs PostgreSQL and Redis (``DATABASE_URL``, ``CELERY_BROKER_URL``): skipped without them outside CI, a
failure in CI. Prints the figures (orders, duplicates, lost, time to drain).
"""

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from healthcommerce.ehr.management.commands.demo_setup import sandbox_payers_add
from healthcommerce.ehr.models import EHRSite
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.conftest import IN_CI, SandboxEHR, sandbox_database_copy, sandbox_launch, sandbox_server
from tests.htmlforms import form_fields
from tests.servers import AppCluster, app_cluster, free_port, isolated_broker_url

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ORDERS = 200
PREPARE_THREADS = 12
SIGN_THREADS = 50
DRAIN_SECONDS = 240
CLIENT_ID = "scale-app"
TEMPLATE = Path(settings.FHIR_FIXTURES_DIR) / "davinci" / "o2teddy_05_device-request-cpap-e0601.json"


@dataclass
class Cluster:
    """The sandbox EHR and the app: instance A is ``app.urls[0]``, B is ``app.urls[1]``."""

    ehr: SandboxEHR
    app: AppCluster

    @property
    def a(self) -> str:
        return self.app.urls[0]

    @property
    def b(self) -> str:
        return self.app.urls[1]


def _require_services() -> None:
    ready = connection.vendor == "postgresql" and settings.CELERY_BROKER_URL.startswith("redis")
    if not ready:
        message = "needs PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message + "; CI runs it")


def _device_requests(folder: Path) -> Path:
    """Write a collection Bundle of ``ORDERS`` copies of pat014's CPAP DeviceRequest, ids ``scale-001``..."""
    template = json.loads(TEMPLATE.read_text())
    entries = [{"resource": template | {"id": f"scale-{n:03d}"}} for n in range(1, ORDERS + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scale-device-requests.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    )
    return folder


@pytest.fixture(scope="module")
def scale_ehr_database(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The sandbox EHR's database with ``ORDERS`` extra DeviceRequests loaded (once per module)."""
    _require_services()
    tmp = tmp_path_factory.mktemp("scale-ehr")
    return sandbox_database_copy(tmp / "sandbox.sqlite3", _device_requests(tmp / "fhir"))


@pytest.fixture
def cluster(transactional_db, scale_ehr_database: Path, tmp_path: Path) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """Start the sandbox EHR, two gunicorn instances, two workers and beat; stop them all before the test's
    database is flushed (this fixture depends on ``transactional_db``, so it is torn down first)."""
    ports = [free_port(), free_port()]
    app_a = f"http://127.0.0.1:{ports[0]}"
    with (
        sandbox_server(database=scale_ehr_database, SANDBOX_APP_LAUNCH_URL=f"{app_a}/smart/launch") as ehr,
        app_cluster(tmp_path, ports=ports, workers=2, broker_url=isolated_broker_url(4), threads=8) as app,
    ):
        ehr.manage("sandbox_client", "add", "--client-id", CLIENT_ID, "--redirect-uri", f"{app_a}/smart/callback")
        yield Cluster(ehr=ehr, app=app)


@pytest.fixture
def site(cluster: Cluster) -> EHRSite:
    site = EHRSite.objects.create(name="Sandbox EHR", iss=cluster.ehr.fhir_base, client_id=CLIENT_ID)
    sandbox_payers_add(site.name, stdout=io.StringIO())  # as demo_setup
    return site


@dataclass
class Draft:
    """A launch that reached its pre-filled order: the browser session, the order URL path and the form."""

    session: requests.Session
    path: str
    fields: dict[str, str]


def _launch_on_a_callback_on_b(cluster: Cluster, request_id: str) -> Draft:
    """Run one EHR launch: ``/smart/launch`` on A, the EHR's authorize, the callback on B, pre-fill on A,
    the order form on B. Returns the draft ready to sign."""
    browser = _browser()
    params = sandbox_launch(cluster.ehr, patient="pat014", request=f"DeviceRequest/{request_id}")
    started = browser.get(f"{cluster.a}/smart/launch", params=params, allow_redirects=False, timeout=30)
    assert started.status_code == 302, started.text[:300]
    authorize = requests.get(started.headers["Location"], allow_redirects=False, timeout=30)
    assert authorize.status_code == 302, authorize.text[:300]
    callback = urlsplit(authorize.headers["Location"])
    assert callback.path == "/smart/callback"
    done = browser.get(f"{cluster.b}/smart/callback?{callback.query}", allow_redirects=False, timeout=30)
    assert done.status_code == 302, done.text[:300]
    home = browser.get(f"{cluster.a}{done.headers['Location']}", timeout=60)
    assert home.status_code == 200, home.text[:300]
    path = urlsplit(home.url).path
    if "/orders/" not in path:
        path = re.findall(r'href="(/o/[0-9a-f-]+/orders/[0-9a-f-]+/)"', home.text)[0]
    form = browser.get(f"{cluster.b}{path}", timeout=30)
    fields = form_fields(form.text)
    fields["contact_email"] = fields.get("contact_email") or "theodor@example.org"
    return Draft(session=browser, path=path, fields=fields)


def _browser() -> requests.Session:
    """A client that, like a browser, retries an idempotent request whose reused keep-alive connection the
    server had just closed (gunicorn issue #1698); a POST is never retried."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=Retry(total=3, connect=3, read=3, status=0)))
    return session


def _sign(draft: Draft, base: str) -> int:
    draft.session.close()  # the POST goes on a new connection: no idle keep-alive socket to race with
    response = draft.session.post(
        f"{base}{draft.path}", data=draft.fields | {"action": "sign"}, allow_redirects=False, timeout=60
    )
    return response.status_code


def test_a_launch_started_on_a_completes_its_callback_and_sign_off_on_b(cluster: Cluster, site: EHRSite) -> None:
    draft = _launch_on_a_callback_on_b(cluster, "scale-001")

    assert _sign(draft, cluster.b) == 302
    page = draft.session.get(f"{cluster.b}{draft.path}", timeout=30)

    assert "Sign order" not in page.text and 'id="order-status"' in page.text
    order = Order.objects.get(request_reference="DeviceRequest/scale-001")
    assert order.signed_by.endswith("Practitioner/pra1234") and len(order.content_hash) == 64
    assert OutboxMessage.objects.filter(subject=f"Order/{order.pk}", topic="order.signed").count() == 1
    deadline = time.monotonic() + 60
    while Order.objects.get(pk=order.pk).status != Order.Status.SUBMITTED and time.monotonic() < deadline:
        time.sleep(0.25)
    assert LocalCommerceOrder.objects.get().submit_count == 1, cluster.app.log_tail()


def test_200_orders_signed_through_both_instances_are_each_fulfilled_exactly_once(
    cluster: Cluster, site: EHRSite, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"scale-{n:03d}" for n in range(1, ORDERS + 1)]
    with ThreadPoolExecutor(PREPARE_THREADS) as pool:
        drafts = list(pool.map(lambda request_id: _launch_on_a_callback_on_b(cluster, request_id), ids))
    assert all(d.fields.get("product") for d in drafts)

    gate = threading.Barrier(SIGN_THREADS)

    def sign(numbered: tuple[int, Draft]) -> int:
        number, draft = numbered
        if number < SIGN_THREADS:
            gate.wait(30)  # the first wave leaves together
        return _sign(draft, cluster.app.urls[number % 2])

    started = time.monotonic()
    with ThreadPoolExecutor(SIGN_THREADS) as pool:
        statuses = list(pool.map(sign, enumerate(drafts)))
    signed_in = time.monotonic() - started
    assert statuses == [302] * ORDERS

    deadline = started + DRAIN_SECONDS
    while Order.objects.filter(status=Order.Status.SUBMITTED).count() < ORDERS and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_in = time.monotonic() - started

    submitted = Order.objects.filter(status=Order.Status.SUBMITTED).count()
    keys_seen = LocalCommerceOrder.objects.count()
    calls = LocalCommerceOrder.objects.aggregate(total=Sum("submit_count"))["total"] or 0
    lost = ORDERS - submitted
    with capsys.disabled():  # the figures belong in the CI log
        print(
            f"\nscale-out: {ORDERS} orders signed through 2 gunicorn instances in {signed_in:.1f} s; "
            f"2 workers + beat drained them in {drained_in:.1f} s; backend saw {keys_seen} idempotency keys "
            f"in {calls} submit calls; duplicates {calls - keys_seen}; lost {lost}"
        )
    assert submitted == ORDERS, cluster.app.log_tail()
    assert keys_seen == ORDERS and calls == ORDERS
    assert set(LocalCommerceOrder.objects.values_list("idempotency_key", flat=True)) == {
        f"{pk}:v1" for pk in Order.objects.values_list("pk", flat=True)
    }
    # Every order went through both hand-overs: order.signed -> fulfillment, order.submitted -> purchase links.
    # A link exists before its row is marked done (the handler sends it first): wait for both.
    links_deadline = time.monotonic() + 60
    done = OutboxMessage.objects.filter(status=OutboxMessage.Status.DONE)
    while (
        PurchaseLink.objects.count() < ORDERS or done.filter(subscriber="purchaselinks.deliver").count() < ORDERS
    ) and time.monotonic() < links_deadline:
        time.sleep(0.5)
    assert done.filter(subscriber="fulfillment.submit").count() == ORDERS
    assert done.filter(subscriber="purchaselinks.deliver").count() == ORDERS
    assert PurchaseLink.objects.count() == ORDERS
    # Beat and the workers are alive and the outbox is drained: both instances report the pipeline ready.
    for base in cluster.app.urls:
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["metrics"]["outbox_pending"] == 0
