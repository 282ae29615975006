"""The audit trail: columns, the hash chain and its verification, aggregated refusals, FHIR AuditEvent export."""

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import RequestFactory
from fhirclient.models.auditevent import AuditEvent as FHIRAuditEvent
from fhirclient.models.bundle import Bundle

from healthcommerce.audit.context import AuditContextMiddleware
from healthcommerce.audit.fhir import audit_bundle, audit_event_resource
from healthcommerce.audit.models import GENESIS_HASH, AuditEvent
from healthcommerce.audit.services import (
    REFUSAL_MAX_NETWORKS,
    audit_record,
    audit_record_many,
    audit_refusal,
    audit_seal,
    audit_verify,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


@contextmanager
def _as_the_table_owner() -> Iterator[None]:
    """Tamper as someone who can switch the PostgreSQL trigger off would (SQLite has none)."""
    trigger = "audit_auditevent_append_only"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_auditevent DISABLE TRIGGER {trigger}")
    yield
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_auditevent ENABLE TRIGGER {trigger}")


def _rows(n: int) -> list[AuditEvent]:
    return [audit_record(actor=f"admin:a{i}", action="admin.view", target=f"Order/{i}") for i in range(n)]


def test_the_old_call_shape_still_works_and_new_columns_default_empty() -> None:
    event = audit_record(actor="system:x", action="order.cancel", target="Order/1", where="admin")
    event.refresh_from_db()
    assert (event.site, event.ip, event.user_agent, event.launch_id) == ("", "", "", "")
    assert event.seq is None and event.hash is None  # sealed only after commit


def test_rows_written_during_a_request_carry_its_client_address_and_user_agent() -> None:
    request = RequestFactory().get("/x", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Mozilla/5.0 (Epic Hyperspace)")
    written = []

    def view(_request):  # type: ignore[no-untyped-def]
        written.append(audit_record(actor="a", action="phi.view", site="https://ehr.example/fhir", launch_id="L1"))
        return None

    AuditContextMiddleware(view)(request)
    event = written[0]
    assert (event.ip, event.user_agent, event.site, event.launch_id) == (
        "203.0.113.9",
        "Mozilla/5.0 (Epic Hyperspace)",
        "https://ehr.example/fhir",
        "L1",
    )
    assert audit_record(actor="a", action="x").ip == ""  # outside the request again


def test_sealing_chains_every_row_and_verify_accepts_the_chain() -> None:
    _rows(3)
    batch = [{"actor": "system:f", "action": "fulfillment.submit", "target": f"Order/b{i}"} for i in range(20)]
    audit_record_many(records=batch)
    assert audit_seal() == 23
    assert audit_seal() == 0  # idempotent
    chain = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in chain] == list(range(1, 24))
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    report = audit_verify()
    assert report.ok and report.sealed == 23 and report.unsealed == 0 and report.head_hash == chain[-1].hash


def test_rows_written_after_a_seal_continue_the_chain() -> None:
    _rows(2)
    audit_seal()
    _rows(2)
    assert audit_verify().unsealed == 2
    audit_seal()
    assert audit_verify().ok and audit_verify().head_seq == 4


def test_verify_names_the_first_changed_row() -> None:
    _rows(5)
    audit_seal()
    third = AuditEvent.objects.get(seq=3)
    with _as_the_table_owner():
        AuditEvent.objects.filter(pk=third.pk).update(outcome="tampered")
    report = audit_verify()
    assert (report.ok, report.broken_seq, report.problem, report.head_seq) == (False, 3, "hash_mismatch", 2)
    with pytest.raises(CommandError, match="BROKEN at seq 3"):
        call_command("audit_verify")


def test_verify_notices_a_deleted_row_in_the_middle() -> None:
    _rows(4)
    audit_seal()
    with _as_the_table_owner():
        AuditEvent.objects.filter(seq=2).delete()
    report = audit_verify()
    assert (report.broken_seq, report.problem) == (3, "seq_gap")


def test_the_verify_command_reports_the_head() -> None:
    _rows(2)
    out = StringIO()
    call_command("audit_verify", "--seal", stdout=out)
    assert "sealed 2 row(s)" in out.getvalue()
    assert "audit chain ok: 2 row(s) sealed, seq 1..2" in out.getvalue()


def test_a_flood_of_refusals_from_one_network_writes_a_row_per_power_of_ten() -> None:
    for i in range(1000):
        audit_refusal(action="purchase_link.open", reason="unknown", ip=f"198.51.100.{i % 250}")
    rows = AuditEvent.objects.filter(action="purchase_link.open").order_by("created_at")
    assert [r.detail["count"] for r in rows] == [1, 10, 100, 1000]
    assert {r.ip for r in rows} == {"198.51.100.0/24"}
    assert all(r.outcome == "unknown" and r.detail["aggregated"] and r.detail["window_seconds"] == 600 for r in rows)


def test_refusals_are_counted_per_reason_and_network() -> None:
    audit_refusal(action="smart.launch", reason="unknown_iss", ip="203.0.113.5")
    audit_refusal(action="smart.launch", reason="state_unknown", ip="203.0.113.5")
    audit_refusal(action="smart.launch", reason="unknown_iss", ip="2001:db8::1")
    assert sorted(AuditEvent.objects.values_list("outcome", "ip")) == [
        ("state_unknown", "203.0.113.0/24"),
        ("unknown_iss", "2001:db8::/64"),
        ("unknown_iss", "203.0.113.0/24"),
    ]


def test_many_networks_are_capped_and_counted_together() -> None:
    for i in range(REFUSAL_MAX_NETWORKS + 50):
        audit_refusal(action="purchase_link.open", reason="unknown", ip=f"10.{i // 256}.{i % 256}.1")
    rows = AuditEvent.objects.filter(action="purchase_link.open")
    assert rows.exclude(ip="*").count() == REFUSAL_MAX_NETWORKS
    assert [r.detail["count"] for r in rows.filter(ip="*").order_by("created_at")] == [1, 10]


def test_each_row_is_a_valid_fhir_r4_audit_event() -> None:
    audit_record(
        actor="https://ehr.example/fhir/Practitioner/p1",
        action="fhir.read",
        target="Patient/abc",
        site="https://ehr.example/fhir",
        ip="203.0.113.9",
        user_agent="UA",
        launch_id="L1",
    )
    audit_record(actor="patient-link:1", action="purchase_link.verify", target="Order/9", outcome="wrong_birth_date")
    audit_refusal(action="smart.launch", reason="unknown_iss", ip="203.0.113.9")
    audit_seal()
    for event in AuditEvent.objects.all():
        resource = audit_event_resource(event)
        parsed = FHIRAuditEvent(resource, strict=True)
        assert parsed.recorded is not None and parsed.agent[0].requestor is True
    fhir_read = audit_event_resource(AuditEvent.objects.get(action="fhir.read"))
    assert fhir_read["type"]["code"] == "rest" and fhir_read["action"] == "R" and fhir_read["outcome"] == "0"
    assert fhir_read["entity"][0]["what"] == {"reference": "Patient/abc"}
    assert fhir_read["agent"][0]["network"] == {"address": "203.0.113.9", "type": "2"}
    assert fhir_read["source"]["site"] == "https://ehr.example/fhir"
    refused = audit_event_resource(AuditEvent.objects.get(action="purchase_link.verify"))
    assert (refused["outcome"], refused["outcomeDesc"]) == ("4", "wrong_birth_date")
    bundle = audit_bundle(AuditEvent.objects.all())
    assert len(Bundle(bundle, strict=True).entry) == 3


def test_the_export_command_writes_a_bundle_of_a_period_and_audits_itself() -> None:
    _rows(2)
    out = StringIO()
    call_command("audit_export", "--since", "2000-01-01", "--until", "2999-01-01", stdout=out)
    bundle = json.loads(out.getvalue())
    Bundle(bundle, strict=True)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["AuditEvent", "AuditEvent"]
    assert AuditEvent.objects.filter(action="audit.export", detail__rows=2).exists()
    empty = StringIO()
    call_command("audit_export", "--until", "2000-01-01", stdout=empty)
    assert json.loads(empty.getvalue())["entry"] == []


def test_the_export_command_refuses_a_bad_date() -> None:
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("audit_export", "--since", "yesterday")


def test_beat_seals_every_minute(settings) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.audit import tasks
    from healthcommerce.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["seal-audit"]
    assert (entry["task"], entry["schedule"]) == ("healthcommerce.audit.tasks.seal", 60.0)
    assert "healthcommerce.audit.tasks.seal" in app.tasks
    _rows(2)
    assert tasks.seal() == 2 and audit_verify().ok
