"""Fuzz: mutated fixture resources served by the sandbox EHR never give a 500, never hide a readable request,
and never let anything outside the commerce allowlist cross.

Each example mutates copies of the real fixture JSON a launch reads (``tests/orders/fuzz_strategies.py``),
writes them into this module's own sandbox database (stdlib ``sqlite3``; the sandbox reads its file per
request), runs a whole SMART launch with Django's test client, checks, then restores the sandbox rows and rolls
the app rows back (a savepoint per example, left with a sentinel exception). The count of examples run, the
time and every failure seen go to ``var/fuzz-prefill.json`` and stdout (``-s``).

``HC_FUZZ_COLLECT=1`` records failures without stopping at the first (a survey for a report);
``HC_FUZZ_EXAMPLES=<n>`` changes the number of examples.
"""

import json
import os
import re
import sqlite3
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given

from healthcommerce.ehr.discovery import discover
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.fulfillment.commerce import commerce_order_build
from healthcommerce.orders.errors import OrderIncomplete
from healthcommerce.orders.models import Order
from healthcommerce.sandbox.fhirapi import TEST_HOOK
from tests.conftest import SandboxEHR, complete_launch, sandbox_database_copy, sandbox_server
from tests.fulfillment.test_commerce import ALLOWED_KEYS, key_paths
from tests.orders.fuzz_strategies import CANARY, NO_LINK, ORDER_TYPES, FuzzCase, Mutation, fuzz_cases, short

MAX_EXAMPLES = int(os.environ.get("HC_FUZZ_EXAMPLES", "200"))  # about 0.25 s each on 2 cores
COLLECT = bool(os.environ.get("HC_FUZZ_COLLECT"))
CLIENT_ID = "fuzz-app"
PRACTITIONER = "Practitioner/pra1234"
TABLE = "sandbox_fhirresource"  # FhirResource's Django default table name (sandbox migration 0001)
MESSAGE = re.compile(r'role="(?:alert|status)"[^>]*>(.*?)</div>', re.S)  # warnings and errors on the pages


@dataclass
class FuzzEHR:
    """This module's sandbox: the process, its SQLite file, the fixture JSON of every resource a fuzzed launch
    reads (``originals``, ``{Type/id: data}``) and, per patient with requests, the ``Type/id`` it reads."""

    sandbox: SandboxEHR
    db: Path
    originals: dict[str, dict[str, Any]]
    patients: dict[str, list[str]]

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30)

    def _write(self, resources: dict[str, dict[str, Any]], hook: dict[str, Any]) -> None:
        con = self._connect()
        try:
            with con:
                for ref, data in resources.items():
                    resource_type, _, fhir_id = ref.partition("/")
                    status = data.get("status")
                    con.execute(
                        f"UPDATE {TABLE} SET data = ?, status = ? WHERE resource_type = ? AND fhir_id = ?",
                        (json.dumps(data), status[:32] if isinstance(status, str) else "", resource_type, fhir_id),
                    )
                con.execute(f"DELETE FROM {TABLE} WHERE resource_type = ? AND fhir_id = ?", TEST_HOOK)
                if hook:
                    now = timezone.now().isoformat(" ")
                    con.execute(
                        f"INSERT INTO {TABLE} (id, created_at, updated_at, resource_type, fhir_id, patient_id, status,"
                        " data) VALUES (?, ?, ?, ?, ?, NULL, '', ?)",
                        (uuid.uuid4().hex, now, now, *TEST_HOOK, json.dumps(hook)),
                    )
        finally:
            con.close()

    def serve(self, case: FuzzCase) -> dict[str, dict[str, Any]]:
        """Store the case's mutated resources and sandbox behaviour; return ``{Type/id: mutated data}``."""
        changed = case.mutated(self.originals)
        hook: dict[str, Any] = {"ignoreElements": True} if case.ignore_elements else {}
        if case.bundle_link != NO_LINK:
            hook["link"] = case.bundle_link
        self._write(changed, hook)
        return changed

    def restore(self, changed: dict[str, dict[str, Any]]) -> None:
        """Put the fixture JSON back for ``changed`` and drop the test hook row."""
        self._write({ref: self.originals[ref] for ref in changed}, {})


def fixture_reads(db: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Return the fixture JSON a fuzzed launch reads (``{Type/id: data}``) and, per patient with requests, the
    ``Type/id`` it reads (Patient, requests, Coverage, ``PRACTITIONER``), from the sandbox database ``db``."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            f"SELECT resource_type, fhir_id, patient_id, data FROM {TABLE} WHERE resource_type IN "
            "('Patient', 'DeviceRequest', 'ServiceRequest', 'Coverage', 'Practitioner') ORDER BY resource_type, fhir_id"
        ).fetchall()
    finally:
        con.close()
    by_patient: dict[str, list[str]] = {}
    originals: dict[str, dict[str, Any]] = {}
    for resource_type, fhir_id, patient_id, data in rows:
        originals[f"{resource_type}/{fhir_id}"] = json.loads(data)
        if resource_type in ORDER_TYPES or resource_type == "Coverage":
            by_patient.setdefault(patient_id, []).append(f"{resource_type}/{fhir_id}")
    patients = {
        pid: [f"Patient/{pid}", *refs, PRACTITIONER]
        for pid, refs in by_patient.items()
        if any(ref.partition("/")[0] in ORDER_TYPES for ref in refs)
    }
    originals = {ref: data for ref, data in originals.items() if any(ref in reads for reads in patients.values())}
    return originals, patients


@pytest.fixture(scope="module")
def fuzz_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEHR]:
    """A sandbox EHR of this module's own, over its own copy of the loaded database (fails if it cannot start)."""
    db = sandbox_database_copy(tmp_path_factory.mktemp("fuzz-sandbox") / "sandbox.sqlite3")
    originals, patients = fixture_reads(db)
    with sandbox_server(database=db) as sandbox:
        sandbox.manage(
            "sandbox_client", "add", "--client-id", CLIENT_ID, "--redirect-uri", "http://testserver/smart/callback"
        )
        yield FuzzEHR(sandbox=sandbox, db=db, originals=originals, patients=patients)


@pytest.fixture
def fuzz_site(db: None, fuzz_ehr: FuzzEHR, settings: Any) -> EHRSite:
    """The app's site for the fuzz sandbox, discovered once so each example skips discovery."""
    settings.APP_BASE_URL = "http://testserver"
    site = EHRSite.objects.create(name="Fuzz sandbox", iss=fuzz_ehr.sandbox.fhir_base, client_id=CLIENT_ID)
    discover(site)
    return site


# --- what must hold ------------------------------------------------------------------------------------------


def readable_requests(case: FuzzCase, fuzz_ehr: FuzzEHR, changed: dict[str, dict[str, Any]]) -> list[str]:
    """The requests the launch reads whose code is readable: a Coding with string ``system`` and non-empty string
    ``code``, status ``draft``/``active``, and a subject ``Patient/<launch patient>``."""
    reads = [case.request] if case.request else fuzz_ehr.patients[case.patient]
    readable = []
    for ref in reads:
        resource_type = ref.partition("/")[0]
        if resource_type not in ORDER_TYPES:
            continue
        data = changed.get(ref, fuzz_ehr.originals[ref])
        concept = data.get("codeCodeableConcept" if resource_type == "DeviceRequest" else "code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        coded = isinstance(codings, list) and any(
            isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str) and c["code"]
            for c in codings
        )
        subject = data.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        ours = isinstance(reference, str) and reference.rstrip("/").endswith(f"Patient/{case.patient}")
        if coded and ours and data.get("status") in ("draft", "active"):
            readable.append(ref)
    return readable


class _Rollback(Exception):
    """Leaves an example's savepoint, carrying what the example found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__()
        self.problems = problems


class _Broken(Exception):
    """A request raised inside the app: the example's transaction may be unusable, so checking stops."""


def _where(exc: BaseException) -> str:
    """Return ``path:line`` of the innermost frame of the app's own code in ``exc``'s traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/healthcommerce/" in f.filename]
    return f"{frames[-1].filename.rpartition('/healthcommerce/')[2]}:{frames[-1].lineno}" if frames else "?"


@dataclass
class Visit:
    """The Django test client as the clinician's browser, and what was wrong with the pages it got."""

    client: Client = field(default_factory=Client)
    problems: list[str] = field(default_factory=list)

    def get(self, step: str, url: str, **extra: Any) -> Any:
        try:
            response = self.client.get(url, follow=True, **extra)
        except Exception as exc:  # an exception the view let out is the 500 a user would get
            self.problems.append(f"500 at {step}: {type(exc).__name__}: {str(exc)[:200]} ({_where(exc)})")
            raise _Broken() from exc
        self.look(step, response)
        return response

    def look(self, step: str, response: Any) -> None:
        statuses = [status for _, status in getattr(response, "redirect_chain", [])] + [response.status_code]
        if any(status >= 500 for status in statuses):
            self.problems.append(f"500 at {step}: status {statuses}")
        html = response.content.decode(errors="replace")
        if "Traceback" in html:
            self.problems.append(f"Traceback on the page at {step}")
        if response.status_code >= 400 and CANARY in html:
            self.problems.append(f"canary in the error page at {step}")
        if any(CANARY in message for message in MESSAGE.findall(html)):
            self.problems.append(f"canary in a warning or error message at {step}")


def _order_problems(order: Order) -> list[str]:
    problems = []
    for model_field in Order._meta.concrete_fields:
        limit = getattr(model_field, "max_length", None)
        value = getattr(order, model_field.attname)
        if limit and isinstance(value, str) and len(value) > limit:
            problems.append(f"Order.{model_field.name} is {len(value)} chars, over its max_length {limit}")
    if not 1 <= order.quantity <= 99:
        problems.append(f"Order.quantity is {short(order.quantity)}, outside 1..99")
    if order.product_id is None:
        return problems
    try:
        payload = commerce_order_build(order=order, idempotency_key="fuzz").to_dict()
    except OrderIncomplete:
        return problems  # refused, so nothing crosses
    extra = key_paths(payload) - ALLOWED_KEYS
    if extra:
        problems.append(f"commerce payload has keys outside the allowlist: {sorted(extra)}")
    if CANARY in json.dumps(payload):
        problems.append("canary in the commerce payload")
    return problems


def exercise(case: FuzzCase, fuzz_ehr: FuzzEHR, changed: dict[str, dict[str, Any]]) -> list[str]:
    """Launch, open every page, and return what is wrong (empty when all holds)."""
    visit = Visit()
    try:
        result = complete_launch(visit.client, fuzz_ehr.sandbox, patient=case.patient, request=case.request)
    except AssertionError as exc:
        return [f"the sandbox refused the launch: {str(exc)[:200]}"]
    except Exception as exc:
        return [f"500 at launch/callback: {type(exc).__name__}: {str(exc)[:200]} ({_where(exc)})"]
    visit.look("launch/callback", result.response)
    if not result.launch_id:
        return [*visit.problems, f"the launch did not complete: status {result.response.status_code}"]
    home = f"/o/{result.launch_id}/"
    try:
        pages = [visit.get("/o/<launch>/", home), visit.get("/o/<launch>/?all=1", home, data={"all": "1"})]
        launch = Launch.objects.get(pk=result.launch_id)
        outcomes = launch.prefill_outcomes
        if CANARY in json.dumps([outcomes, getattr(launch, "prefill_warnings", [])], default=str):
            visit.problems.append("canary in the launch's pre-fill outcomes or warnings")
        orders = list(Order.objects.filter(launch_id=result.launch_id).select_related("product"))
        for order in orders:
            if order.status == Order.Status.DRAFT:
                pages.append(visit.get("/o/<launch>/orders/<order>/", f"{home}orders/{order.pk}/"))
    except _Broken:
        return visit.problems
    html = "".join(page.content.decode(errors="replace") for page in pages[:2])
    for ref in readable_requests(case, fuzz_ehr, changed):
        if f'data-request-ref="{ref}"' not in html:
            visit.problems.append(f"readable request {ref} not listed (no data-request-ref); pre-fill read {outcomes}")
    for order in orders:
        visit.problems.extend(_order_problems(order))
    return visit.problems


def run_case(case: FuzzCase, fuzz_ehr: FuzzEHR) -> list[str]:
    """Serve the case, exercise it inside a savepoint that is always rolled back, restore the sandbox."""
    changed = fuzz_ehr.serve(case)
    try:
        with transaction.atomic():
            raise _Rollback(exercise(case, fuzz_ehr, changed))
    except _Rollback as done:
        return done.problems
    finally:
        fuzz_ehr.restore(changed)


@dataclass
class Tally:
    """Examples run (hypothesis' shrinking included) and, per distinct problem, its count and smallest cases."""

    examples: int = 0
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, case: FuzzCase, problems: list[str]) -> None:
        self.examples += 1
        for problem in problems:
            key = re.sub(r"(DeviceRequest|ServiceRequest)/[\w.-]+", r"\1/<id>", problem)
            seen = self.problems.setdefault(key, {"count": 0, "cases": []})
            seen["count"] += 1
            seen["cases"] = sorted({*seen["cases"], repr(case)}, key=len)[:20]  # the 20 smallest

    def write(self, seconds: float) -> None:
        from django.db import connection

        record = {
            "examples": self.examples,
            "max_examples": MAX_EXAMPLES,
            "seconds": round(seconds, 1),
            "database": connection.vendor,
            "problems": self.problems,
        }
        path = Path(django_settings.VAR_DIR) / "fuzz-prefill.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        print(f"\nfuzz pre-fill: {self.examples} examples in {seconds:.1f} s on {connection.vendor}; {path}")
        for key, seen in sorted(self.problems.items(), key=lambda item: -item[1]["count"]):
            print(f"  {seen['count']:4d} x {key}\n         e.g. {seen['cases'][0][:600]}")


@pytest.mark.django_db
def test_mutated_ehr_resources_never_give_a_500_hide_a_readable_request_or_cross_the_allowlist(
    fuzz_ehr: FuzzEHR, fuzz_site: EHRSite
) -> None:
    tally = Tally()

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=fuzz_cases(fuzz_ehr.patients, fuzz_ehr.originals))
    def check(case: FuzzCase) -> None:
        problems = run_case(case, fuzz_ehr)
        tally.add(case, problems)
        assert COLLECT or not problems, "\n".join(problems)

    started = time.monotonic()
    try:
        check()
    finally:
        tally.write(time.monotonic() - started)


@pytest.mark.django_db
def test_the_fuzz_sandbox_serves_a_mutation_to_the_app_and_restores_the_fixture_after(
    fuzz_ehr: FuzzEHR, fuzz_site: EHRSite
) -> None:
    case = FuzzCase(
        patient="pat014",
        request="DeviceRequest/devreq021",
        mutations=(Mutation("DeviceRequest/devreq021", "canary", ("codeCodeableConcept", "text"), CANARY),),
    )
    changed = fuzz_ehr.serve(case)
    try:
        client = Client()
        result = complete_launch(client, fuzz_ehr.sandbox, patient=case.patient, request=case.request)
        page = client.get(f"/o/{result.launch_id}/", follow=True)
        assert CANARY in page.content.decode()  # the clinician sees the mutated request text
        assert Order.objects.get(launch_id=result.launch_id).request_display == CANARY
    finally:
        fuzz_ehr.restore(changed)
    con = sqlite3.connect(fuzz_ehr.db)
    try:
        (data,) = con.execute(
            f"SELECT data FROM {TABLE} WHERE resource_type = 'DeviceRequest' AND fhir_id = 'devreq021'"
        ).fetchone()
        hooks = con.execute(f"SELECT count(*) FROM {TABLE} WHERE resource_type = ?", TEST_HOOK[:1]).fetchone()
    finally:
        con.close()
    assert json.loads(data) == fuzz_ehr.originals["DeviceRequest/devreq021"]
    assert hooks == (0,)
