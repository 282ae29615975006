"""Every view and every FHIR read path is audited, or exempt for a stated reason (HIPAA 164.312(b); issue 9).

A new URL pattern, admin or module that reads FHIR fails here until it is audited (and driven below) or added to
an exempt list with its reason.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.audit.models import AuditEvent
from healthcommerce.orders.models import Order
from healthcommerce.outbox import tasks
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.conftest import complete_launch
from tests.purchaselinks.conftest import BIRTH_DATE, order_factory
from tests.purchaselinks.test_pages import CONFIRM, dob, opened

pytestmark = pytest.mark.django_db

# URL name -> the audit action its view writes (each is driven by a test below).
AUDITED = {
    "ehr:launch": "smart.launch",  # refusals only (aggregated); the launch itself is audited at the callback
    "ehr:callback": "smart.launch",
    "orders:launch": "phi.view",
    "orders:order": "phi.view",
    "purchaselinks:start": "purchase_link.open",
    "purchaselinks:verify": "purchase_link.open",
    "purchaselinks:confirm": "purchase_link.view",
    "purchaselinks:address": "purchase_link.view",
    "purchaselinks:pay": "purchase_link.pay",
    "purchaselinks:track": "purchase_link.track",
    "purchaselinks:language": "purchase_link.language",
    "golive:readiness": "readiness.run",  # and a readiness.read row per FHIR read of the test patient
    "cdshooks:service": "cds.call",  # driven in tests/cdshooks (every call and every refusal)
    "intake:fhir-notify": "intake.fhir_notification",  # driven in tests/intake/test_notify.py
}
# URL name (or namespace followed by ":*") -> why it writes no audit row.
EXEMPT = {
    "ehr:style": "CSS custom properties from the EHR's style document, no PHI; checked with launch_access",
    "purchaselinks:terms": "the terms of sale, the same public page for everyone, no PHI",
    "stripe_webhook": "Stripe to us, signature-checked; kept as StripeEvent rows, payment changes audited",
    "fulfillment:status_webhook": "backend to us, authenticated; the status change it makes is audited",
    "readyz": "pipeline health: counts only",
    "metrics": "Prometheus exposition: counts by site, endpoint kind and outcome; no PHI (network or token gated)",
    "monitoring:dashboard": "staff-only integration health per site: counts, latencies and alert texts; no PHI",
    "healthz": "liveness: no data",
    "jwks": "public keys, no PHI",
    "cdshooks:discovery": "CDS Hooks discovery: the same static list of services for everyone, no PHI",
    "home": "the landing page: no data",
    "local_admin_moved": "a 301 from the local orders' admin address before issue 19 to the new one; shows nothing",
    "sandbox:*": "the sandbox EHR plays the EHR (mounted only with SANDBOX_ENABLED); not the app",
}
# Admins without AuditedAdminMixin -> why. Their adds, changes and deletions are audited all the same (LogEntry).
ADMIN_EXEMPT = {
    "catalog.product": "catalog configuration, no PHI",
    "ehr.appsigningkey": "our keys' public metadata, read-only (private key never shown); ehr_keys audits changes",
    "catalog.codemapping": "catalog configuration, no PHI",
    "catalog.orderablerule": "catalog configuration, no PHI",
    "catalog.payer": "payer records (plan names and ids), no PHI",
    "catalog.payerrule": "pricing configuration, no PHI",
    "auth.user": "Django's own; logins, lockouts and changes are audited by signal receivers",
    "auth.group": "Django's own; changes are audited through LogEntry",
    "axes.accessattempt": "django-axes' login attempts (usernames, addresses); no PHI",
    "axes.accesslog": "django-axes' login log; no PHI",
    "axes.accessfailurelog": "django-axes' failure log; no PHI",
    "otp_totp.totpdevice": "django-otp's staff TOTP devices (secrets hidden), no PHI; changes audited via LogEntry",
    "monitoring.alert": "integration alerts: rule, site, counts and text; no PHI; changes audited via LogEntry",
    "sandbox.*": "the sandbox EHR's own data, not the app's",
}
# Modules that construct a FHIR client (ehr.fhir) -> how their reads are audited (driven in the clinician test below).
FHIR_READERS = {
    "healthcommerce/orders/prefill.py": "prefill_gather writes one fhir.read row per read",
    "healthcommerce/golive/readiness.py": "site_readiness writes one readiness.read row per read (test_readiness)",
    "healthcommerce/ehr/backend.py": "backend_read and backend_create write one fhir.read / fhir.create row each",
    "healthcommerce/orders/notified.py": "notified_intake_order writes one fhir.read row per read (test_notified)",
}
ROOT = Path(__file__).resolve().parents[2]


def _names(resolver: URLResolver, namespace: str = "") -> Iterator[str]:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                continue
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from _names(pattern, inner)
        elif isinstance(pattern, URLPattern):
            yield ":".join(part for part in (namespace, pattern.name or f"<unnamed {pattern.pattern}>") if part)


def _exempt(name: str, exempt: dict[str, str], sep: str) -> bool:
    return name in exempt or f"{name.split(sep)[0]}{sep}*" in exempt


def test_every_url_is_audited_or_exempt_with_a_reason() -> None:
    names = set(_names(get_resolver()))
    unaccounted = sorted(n for n in names if n not in AUDITED and not _exempt(n, EXEMPT, ":"))
    assert unaccounted == [], "add an audit row to these views (and to AUDITED), or exempt them with a reason"
    assert sorted(set(AUDITED) - names) == []


def test_every_admin_audits_its_views_or_is_exempt_with_a_reason() -> None:
    labels = {model._meta.label_lower: model_admin for model, model_admin in admin.site._registry.items()}
    unaudited = sorted(
        label
        for label, model_admin in labels.items()
        if not isinstance(model_admin, AuditedAdminMixin) and not _exempt(label, ADMIN_EXEMPT, ".")
    )
    assert unaudited == []


def test_every_module_that_reads_fhir_is_known() -> None:
    readers = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "healthcommerce").rglob("*.py")
        if re.search(r"\b(FHIRReader|FHIRClient|backend_client)\(", path.read_text()) and path.name != "fhir.py"
    }
    assert readers == set(FHIR_READERS)


def _actions() -> set[str]:
    return set(AuditEvent.objects.values_list("action", flat=True))


def test_the_clinician_pages_and_every_fhir_read_are_audited(client, ehr_site, sandbox_ehr) -> None:
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert result.launch_id
    callback = AuditEvent.objects.get(action="smart.launch")
    assert (callback.launch_id, callback.site, callback.ip) == (result.launch_id, ehr_site.iss, "127.0.0.1")
    client.get(f"/o/{result.launch_id}/?all=1")
    reads = AuditEvent.objects.filter(action="fhir.read")
    assert reads.count() >= 3 and {r.launch_id for r in reads} == {result.launch_id}
    view = AuditEvent.objects.get(action="phi.view", target__startswith="Patient/")
    assert (view.ip, view.site, view.launch_id, view.where) == ("127.0.0.1", ehr_site.iss, result.launch_id, "")
    order = Order.objects.get(launch_id=result.launch_id)
    client.get(f"/o/{result.launch_id}/orders/{order.pk}/", HTTP_USER_AGENT="Epic Hyperspace")
    page = AuditEvent.objects.get(action="phi.view", target=f"Order/{order.pk}")
    assert page.user_agent == "Epic Hyperspace" and page.ip == "127.0.0.1"


def test_the_launch_refusals_are_audited(client, ehr_site) -> None:
    cache.clear()
    client.get("/smart/launch", {"iss": "https://evil.example/fhir", "launch": "abc"})
    client.get("/smart/callback", {"code": "x", "state": "no-such-state"})
    client.get("/smart/callback", {"code": "x"})
    rows = AuditEvent.objects.filter(action="smart.launch").order_by("outcome")
    assert list(rows.values_list("outcome", "ip")) == [
        ("state_missing", "127.0.0.0/24"),
        ("state_unknown", "127.0.0.0/24"),
        ("unknown_iss", "127.0.0.0/24"),
    ]
    assert all(r.detail["count"] == 1 for r in rows)


@pytest.fixture
def patient_link(db, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda *args, **kwargs: None)
    cache.clear()
    order = order_factory()()
    _link, token = purchase_link_issue(order=order)
    return order, token


def test_every_patient_page_is_audited(patient_link) -> None:
    order, token = patient_link
    browser = opened(token)
    assert {"purchase_link.open"} <= _actions()
    browser.get("/p/verify/")
    browser.post("/p/verify/", dob(BIRTH_DATE))
    browser.get("/p/confirm/")
    browser.get("/p/address/")
    browser.get("/p/pay/")
    browser.post("/p/language/", {"language": "es", "next": "/p/confirm/"})
    browser.post("/p/confirm/", CONFIRM)
    browser.get("/p/track/")
    expected = {AUDITED[name] for name in AUDITED if name.startswith("purchaselinks:")}
    assert expected <= _actions(), expected - _actions()
    rows = AuditEvent.objects.filter(target=f"Order/{order.pk}", action__startswith="purchase_link.").exclude(
        action="purchase_link.issue"  # by the pipeline, not a request
    )
    assert {r.ip for r in rows} == {"127.0.0.1"}


def test_unknown_tokens_are_aggregated_not_one_row_each(patient_link) -> None:
    for i in range(30):
        Client().get(f"/p/{'x' * 40}{i:02d}/")
    rows = AuditEvent.objects.filter(action="purchase_link.open", outcome="unknown")
    assert [r.detail["count"] for r in rows.order_by("created_at")] == [1, 10]


def test_the_admin_views_of_phi_are_audited(admin_client, patient_link, ehr_site) -> None:
    order, _token = patient_link
    for path, action, target in [
        ("/admin/orders/order/", "admin.phi.view", "Order"),
        (f"/admin/orders/order/{order.pk}/change/", "admin.phi.view", f"Order/{order.pk}"),
        ("/admin/ehr/launch/", "admin.phi.view", "Launch"),
        ("/admin/ehr/ehrsite/", "admin.view", "EHRSite"),
        (f"/admin/ehr/ehrsite/{ehr_site.pk}/change/", "admin.view", f"EHRSite/{ehr_site.pk}"),
        ("/admin/purchaselinks/purchaselink/", "admin.phi.view", "PurchaseLink"),
        ("/admin/audit/auditevent/", "admin.view", "AuditEvent"),
    ]:
        assert admin_client.get(path).status_code == 200, path
        assert AuditEvent.objects.filter(action=action, target=target, actor="admin:admin").exists(), path
