"""Every log line of a whole order, captured at DEBUG from every logger through the production handler's filters
and JSON formatter, holds none of the fixture's PHI and none of the tokens or secrets (docs/reliability.md
"No PHI in logs", "Integration health").

The journey runs in-process: a SMART launch against the sandbox EHR (its own process: it plays the EHR, whose
logs are not ours), pre-fill, the clinician's corrections and signature, the outbox (submit to the local backend,
the purchase-link email), the patient's link, date of birth and confirmation, the confirmation to the backend,
then the integration-health side (flush, alert rules, /metrics, the dashboard).
"""

import io
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils.module_loading import import_string

from healthcommerce.catalog.models import Payer
from healthcommerce.core import metrics
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.monitoring.services import alerts_evaluate
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from tests.conftest import complete_launch
from tests.orders.test_sign import FORM
from tests.pipeline import deliver, downstream
from tests.staff import staff_login

pytestmark = pytest.mark.django_db

PHONE = "(703) 555-0143"
# The fixture patient pat014 (sandbox/fixtures/davinci/o2teddy_01__patient.json) and the clinician's form.
PHI = [
    "Roosevelt",
    "Theodor",
    "1946-07-04",
    "07/04/1946",
    "July 4, 1946",
    "7525 Colshire",
    "McLean",
    "teddy@example.org",
    PHONE,
    "555-0143",
    "7035550143",
    "10A3D58WH1600",
    "0M846129001NF",
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, through the console handler's filters and the JSON formatter of
    ``settings.LOGGING``, into one buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for spec in django_settings.LOGGING["filters"].values():
        handler.addFilter(import_string(spec["()"])())
    json_spec = django_settings.LOGGING["formatters"]["json"]
    handler.setFormatter(import_string(json_spec["()"])(json_spec["fmt"], rename_fields=json_spec["rename_fields"]))
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(log, log.level, log.disabled) for log in loggers]
    for log in loggers:
        log.setLevel(logging.DEBUG)
        log.disabled = False
        if log is logging.getLogger() or not log.propagate:
            log.addHandler(handler)
    try:
        yield stream
    finally:
        for log, level, disabled in saved:
            log.setLevel(level)
            log.disabled = disabled
            log.removeHandler(handler)


def secrets_of(launch: Launch, link_token: str, client: Client) -> list[str]:
    values = [
        launch.access_token,
        launch.refresh_token,
        launch.state,
        launch.code_verifier,
        launch.nonce,
        launch.launch_token,
        link_token,
        *(morsel.value for morsel in client.cookies.values()),
    ]
    return [v for v in values if v and len(v) >= 8]


def test_a_whole_order_logs_no_phi_and_no_token(client, ehr_site: EHRSite, sandbox_ehr, captured, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALERT_RULES = list(settings.ALERT_RULES)
    # The clinician's side: launch, pre-fill, corrections, signature.
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert result.launch_id, getattr(result.response, "content", b"")[:300]
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    url = f"/o/{result.launch_id}/orders/{order.pk}/"
    # The clinician picks the Medicaid record, which covers it (the seeded plan-type rule, catalog migrations 0006 and
    # 0011), so the patient confirms without paying (payments are off).
    medicaid = Payer.objects.get(site=ehr_site, name="Medicaid")
    form = FORM | {"contact_phone": PHONE, "payer": str(medicaid.pk)}
    signed = client.post(url, form | {"product": str(order.product_id), "action": "sign"})
    assert signed.status_code == 302
    # The workers' side: submit, then the link by email.
    deliver(OutboxMessage.objects.get(subject=f"Order/{order.pk}", subscriber="fulfillment.submit"))
    (email,) = mail.outbox
    link = re.search(r"http://testserver(/p/([A-Za-z0-9_-]+)/)", email.body)
    assert link
    # The patient's side: a mistyped link, a wrong date, the right one, the confirmation.
    patient = Client()
    patient.get(f"/p/{link.group(2)[:-2]}zz/")
    assert patient.get(link.group(1)).status_code == 302
    patient.post("/p/verify/", {"birth_date": "1950-01-01"})
    assert patient.post("/p/verify/", {"birth_date": "1946-07-04"})["Location"] == "/p/confirm/"
    assert patient.post("/p/confirm/", {"delivery_preference": "standard", "accept_terms": "on"}).status_code == 200
    downstream()
    # Integration health: the buckets, the rules, the scrape and the dashboard.
    metrics.flush(force=True)
    alerts_evaluate()
    assert client.get("/metrics").status_code == 200
    staff = staff_login(Client(), User.objects.create_user("ops", password="pw-0123456789", is_staff=True))
    assert staff.get("/admin/monitoring/dashboard/", {"site": ehr_site.name}).status_code == 200

    text = captured.getvalue()
    lines = text.splitlines()
    launch = Launch.objects.get(pk=result.launch_id)
    assert len(lines) > 10 and f"fulfillment submitted order={order.reference}" in text
    assert re.search(r'"request_id": "[0-9a-f]{32}"', text)
    leaks = [value for value in PHI + secrets_of(launch, link.group(2), client) if value.lower() in text.lower()]
    print(f"\nlog scan: {len(lines)} lines, {len(PHI)} PHI values and {len(secrets_of(launch, link.group(2), client))} "
          f"tokens checked, {len(leaks)} found")  # fmt: skip
    assert leaks == []
