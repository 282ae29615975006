"""The demo's console email and SMS backends print the patient's message intact on the worker's console, while
every log line stays scrubbed (issue 18: the purchase link printed as ``/p/<token>/`` and could not be opened).

A real Celery worker and beat (the Procfile's lines) on the test database, as ``make demo`` runs them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.orders.events import TOPIC_ORDER_SUBMITTED, order_event_key, order_subject
from healthcommerce.outbox import services as outbox_services
from healthcommerce.outbox.services import outbox_publish
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.e2e.conftest import wait_for
from tests.purchaselinks.conftest import PATIENT_MOBILE_E164, order_factory
from tests.servers import ROOT, base_env, current_database_url, procfile_command, running

APP = "http://127.0.0.1:8000"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_demo_worker_prints_the_patients_link_email_and_number_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's own relay (run by beat) publishes the rows; the test process's broker is not the worker's.
    monkeypatch.setattr(outbox_services, "_publish_fast_path", lambda message_id: None)
    order = order_factory()()
    site_settings_update(order.site, {"sms_enabled": True})
    with transaction.atomic():
        outbox_publish(topic=TOPIC_ORDER_SUBMITTED, key=order_event_key(order), subject=order_subject(order))
    env = base_env(
        SANDBOX_ENABLED="true",
        DATABASE_URL=current_database_url(),
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
        HC_VAR_DIR=str(tmp_path / "var"),
        APP_BASE_URL=APP,
        EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
        SMS_BACKEND="sms.backends.console.SmsBackend",
        CELERY_LOG_LEVEL="WARNING",  # as scripts/demo.sh runs them
    )
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    with (
        running(procfile_command("worker"), env | {"PORT": "1"}, log=worker_log),
        running(procfile_command("beat"), env, log=beat_log),
    ):
        printed = wait_for(lambda: PurchaseLink.objects.exists() and _texted(worker_log), seconds=90)

    links = re.findall(re.escape(APP) + r"/p/[A-Za-z0-9_-]{32,128}/", printed)
    assert len(links) >= 2, printed[-3000:]  # the email and the text, each with the real link
    assert "/p/<token>" not in printed and "<email>" not in printed and "<phone>" not in printed, printed[-3000:]
    assert f"To: {order.contact_email}" in printed and f"to: {PATIENT_MOBILE_E164}" in printed


def _texted(log: Path) -> str:
    text = log.read_text() if log.exists() else ""
    return text if "to: +" in text.lower() or "to: <phone>" in text else ""


def test_in_production_whatever_a_worker_prints_still_goes_through_the_scrubbed_logs() -> None:
    show = "import django; django.setup(); from django.conf import settings as s; "
    show += "print(s.CELERY_WORKER_REDIRECT_STDOUTS)"
    env = base_env(SANDBOX_ENABLED="true")
    embedded = subprocess.run([sys.executable, "-c", show], cwd=ROOT, env=env, capture_output=True, text=True)
    from tests.core.test_deploy import PRODUCTION_ENV

    production = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env=base_env(**PRODUCTION_ENV), capture_output=True, text=True
    )

    assert production.stdout.strip().splitlines()[-1] == "True", production.stderr
    assert embedded.stdout.strip().splitlines()[-1] == "False", embedded.stderr
