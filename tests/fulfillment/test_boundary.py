"""The commerce boundary, proven for ``local`` and ``webhook``, and the clearinghouse boundary: arbitrary FHIR input
with clinical content planted (tests/fulfillment/boundary_strategies.py) goes through launch, pre-fill, sign-off,
the eligibility check and fulfillment through the outbox, and every outbound payload holds only allowlisted keys and
none of the clinical values (tests/fulfillment/boundary.py; the 270's allowlist: tests/coverage/boundary270.py).
HL7 v2 input too: an order message with clinical segments (DG1, NTE, OBX ...)
through the orders stage's intake handler (``hl7_exercise``).

``HC_FUZZ_EXAMPLES=<n>`` changes the number of examples (default 100); totals go to ``var/fuzz-boundary.json``
and stdout (``-s``).
"""

import json
import os
from typing import Any

import pytest

from healthcommerce.ehr.models import EHRSite
from healthcommerce.orders.models import Order
from tests.fulfillment.backends.webhook import conftest as webhook_conftest
from tests.fulfillment.backends.webhook.conftest import Receiver
from tests.fulfillment.boundary import Backend, Sent, Tally, check_for, hl7_exercise, run_examples
from tests.fulfillment.conftest import backend_options_set
from tests.orders.test_fuzz_prefill import FuzzEHR

MAX_EXAMPLES = int(os.environ.get("HC_FUZZ_EXAMPLES", "100"))
# The webhook tests' HTTPS receiver with mutual TLS and the settings pointing at it, as fixtures of this module.
receiver = webhook_conftest.receiver
webhook_settings = webhook_conftest.webhook_settings


def _as_sent(hook: Receiver) -> list[Sent]:
    """What the webhook receiver took, as the supplier saw it (its path, its headers, the raw body)."""
    return [Sent("POST", f"{hook.url.split('/hooks')[0]}{r.path}", r.headers, r.body) for r in hook.requests]


@pytest.mark.django_db
def test_no_clinical_value_or_key_outside_the_allowlist_reaches_the_local_or_webhook_backend(
    boundary_ehr: FuzzEHR, boundary_site: EHRSite, webhook_settings: Receiver
) -> None:
    hook = webhook_settings
    backends = [Backend("local"), Backend("webhook", received=lambda: _as_sent(hook), reset=hook.reset)]
    tally = Tally("fuzz-boundary", MAX_EXAMPLES)

    run_examples(boundary_ehr, backends, tally, MAX_EXAMPLES)
    # Not vacuous: most examples reach both backends, and the clearinghouse (a 270 per signed order).
    assert tally.crossed("local") >= MAX_EXAMPLES // 2, tally.results
    assert tally.crossed("webhook") >= MAX_EXAMPLES // 2, tally.results
    assert tally.crossed("clearinghouse") >= MAX_EXAMPLES // 3, tally.results  # patients with a member id


def test_the_checks_catch_clinical_values_and_keys_headers_queries_and_routes_outside_the_allowlists(
    settings: Any,
) -> None:
    backend_options_set(settings, "webhook", URL="https://127.0.0.1:9/hooks/orders")
    backend_options_set(settings, "medusa", URL="http://127.0.0.1:9")
    envelope = {"type": "order.created", "timestamp": "t", "data": {"order_reference": "HC-X", "note": "E11.9"}}
    webhook = Sent(
        "POST",
        settings.COMMERCE_BACKENDS["webhook"]["OPTIONS"]["URL"],
        {"X-Reason": "CLIN-req-0000000a"},
        json.dumps(envelope).encode(),
    )
    search = Sent(
        "GET",
        f"{settings.COMMERCE_BACKENDS['medusa']['OPTIONS']['URL']}/admin/orders?q=HC-X&dx=clin-req-0000000a",
        {},
        b"",
    )
    customer = Sent(
        "POST", f"{settings.COMMERCE_BACKENDS['medusa']['OPTIONS']['URL']}/admin/customers", {}, b'{"note": "x"}'
    )
    clinical = ["E11.9", "CLIN-req-0000000a"]

    assert check_for("webhook")(Order(), [webhook], clinical) == [
        "webhook POST /hooks/orders: headers outside the allowlist: ['x-reason']",
        "webhook POST /hooks/orders: body keys outside the allowlist: ['data.note']",
        "webhook POST /hooks/orders carries 'E11.9'",
        "webhook POST /hooks/orders carries 'CLIN-req-0000000a'",
    ]
    assert check_for("medusa")(Order(), [search, customer], clinical) == [
        "medusa GET /admin/orders: query parameters outside the allowlist: ['dx']",
        "medusa GET /admin/orders carries 'CLIN-req-0000000a'",
        "medusa POST /admin/customers: a route outside the allowlist",
        "medusa POST /admin/customers: body keys outside the allowlist: ['note']",
    ]


@pytest.mark.django_db
def test_hl7_input_with_diagnoses_notes_and_observations_reaches_no_backend_and_is_not_kept(
    webhook_settings: Receiver,
) -> None:
    """HL7 v2 input: a random ORM^O01/OML^O21 with DG1, NTE, OBX, AL1 and Z-segment noise (and clinical fields of
    OBR and ORC) becomes a signed order whose CommerceOrder, as each backend got it, carries no diagnosis, note or
    observation text, and whose own columns keep none of them either."""
    import hypothesis
    from hypothesis import HealthCheck, given

    from tests.fulfillment.boundary_strategies import Hl7BoundaryCase, hl7_boundary_cases

    hook = webhook_settings
    backends = [Backend("local"), Backend("webhook", received=lambda: _as_sent(hook), reset=hook.reset)]
    site = EHRSite.objects.create(name="HL7 boundary", iss="https://ehr.hl7.example/fhir", client_id="hc")
    crossed: dict[str, int] = {}

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(case=hl7_boundary_cases())
    def check(case: Hl7BoundaryCase) -> None:
        outcome = hl7_exercise(case.lines, case.planted, site, backends)
        for result in outcome.results:
            crossed[result] = crossed.get(result, 0) + 1
        assert outcome.signed == 1, outcome
        assert not outcome.problems, "\n".join(outcome.problems)

    check()
    assert crossed.get("local:crossed", 0) >= MAX_EXAMPLES // 2, crossed
    assert crossed.get("webhook:crossed", 0) >= MAX_EXAMPLES // 2, crossed
