""" "Re-read from the EHR" as the clinician uses it: while the access token lives it reads at once; with a refresh
token it renews an expired one, also when the EHR shares the app's own database and server (the demo: the sandbox
mounted in the app's gunicorn); when it cannot, it says why and keeps the draft.

Against the real sandbox EHR over HTTP (SMART App Launch 2.2 "Refresh access token").
"""

import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from healthcommerce.audit.models import AuditEvent
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.scopes import default_scopes
from healthcommerce.orders.models import Order
from tests.conftest import SandboxEHR, complete_launch, sandbox_server

REQUEST = "DeviceRequest/devreq021"


def open_draft(client: Any, sandbox: SandboxEHR) -> tuple[Launch, str]:
    """Launch pat014's CPAP request and open its draft; return the launch and the draft's path."""
    result = complete_launch(client, sandbox, patient="pat014", request=REQUEST)
    assert result.launch_id, getattr(result.response, "content", b"")[:500]
    page = client.get(f"/o/{result.launch_id}/", follow=True)
    assert page.status_code == 200 and b'id="reread"' in page.content
    return Launch.objects.select_related("site").get(pk=result.launch_id), str(page.request["PATH_INFO"])


@pytest.mark.django_db
def test_re_read_works_seconds_after_the_launch_without_a_refresh_token(client, ehr_site, sandbox_ehr):
    launch, path = open_draft(client, sandbox_ehr)
    assert launch.refresh_token == ""  # the site asks for no online_access: the EHR grants no refresh token
    Order.objects.filter(launch=launch).update(request_display="edited")
    time.sleep(2)

    page = client.post(path, {"action": "reread"}, follow=True)

    html = page.content.decode()
    assert page.status_code == 200 and "Read again from the EHR." in html, html[:3000]
    assert "session has ended" not in html
    assert Order.objects.get(launch=launch).request_display != "edited"  # what the EHR holds now
    assert not AuditEvent.objects.filter(action="smart.refresh").exists()  # the stored token did it


@pytest.mark.django_db
def test_re_read_after_the_token_expired_without_a_refresh_token_says_the_session_ended(client, ehr_site, sandbox_ehr):
    launch, path = open_draft(client, sandbox_ehr)
    Launch.objects.filter(pk=launch.pk).update(token_expires_at=timezone.now())
    drafts = list(Order.objects.filter(launch=launch).values_list("pk", "request_code"))

    page = client.post(path, {"action": "reread"}, follow=True)

    assert b"Your EHR session has ended. Please launch the app again from the EHR; your draft is kept." in page.content
    assert list(Order.objects.filter(launch=launch).values_list("pk", "request_code")) == drafts


def _apps_database() -> dict:
    """``sandbox_server`` arguments that put the sandbox EHR on the test's own database: the SQLite file (the
    demo's layout, where the lock was held), or the same PostgreSQL database (CI)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"database": Path(db["NAME"])}
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}{port}/{db['NAME']}"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_re_read_renews_the_token_at_once_when_the_ehr_shares_the_apps_database(client, settings):
    """The demo's layout: the sandbox EHR writes its tokens into the app's own database. A refresh that held a
    database lock across the token request made the EHR wait for it until the request timed out
    (``refresh_unreachable``, "Your EHR session has ended")."""
    settings.APP_BASE_URL = "http://testserver"
    call_command("sandbox_load", "--no-client", stdout=StringIO())  # into the app's database, as `make demo` does
    with sandbox_server(**_apps_database(), SANDBOX_TOKEN_TTL="2") as ehr:
        ehr.manage(
            "sandbox_client",
            "add",
            "--client-id",
            "demo-app",
            "--redirect-uri",
            f"{settings.APP_BASE_URL}/smart/callback",
        )
        EHRSite.objects.create(
            name="Sandbox", iss=ehr.fhir_base, client_id="demo-app", scopes=f"{default_scopes()} online_access"
        )
        launch, path = open_draft(client, ehr)
        assert launch.refresh_token
        time.sleep(2.5)  # the access token has expired: Re-read must renew it
        renewed = AuditEvent.objects.filter(action="smart.refresh", outcome="success").count()

        started = time.monotonic()
        page = client.post(path, {"action": "reread"}, follow=True)
        seconds = time.monotonic() - started

    html = page.content.decode()
    assert "Read again from the EHR." in html, html[:3000]
    assert seconds < settings.HTTP_TIMEOUT[1], f"Re-read took {seconds:.1f} s"
    assert AuditEvent.objects.filter(action="smart.refresh", outcome="success").count() == renewed + 1
    assert not AuditEvent.objects.filter(action="smart.refresh").exclude(outcome="success").exists()
    assert Launch.objects.get(pk=launch.pk).token_refreshing_until is None  # the lease ended with the refresh
