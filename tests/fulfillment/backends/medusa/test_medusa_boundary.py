"""The commerce boundary, proven for ``medusa`` against a real Medusa 2 server (conftest.py): arbitrary FHIR input
with clinical content planted goes through launch, pre-fill, sign-off and fulfillment through the outbox, and
every Admin API call the backend makes (route, query, headers, body) holds only allowlisted keys and none of the
clinical values (tests/fulfillment/boundary.py).

``HC_FUZZ_MEDUSA_EXAMPLES=<n>`` changes the number of examples (default 10: each is seven calls to
Medusa); totals go to ``var/fuzz-boundary-medusa.json`` and stdout (``-s``).
"""

import os
from io import StringIO

import pytest
from django.core.management import call_command

from healthcommerce.ehr.models import EHRSite
from tests.fulfillment.backends.medusa.conftest import MedusaServer
from tests.fulfillment.boundary import Backend, Tally, run_examples
from tests.orders.test_fuzz_prefill import FuzzEHR

pytestmark = [pytest.mark.services, pytest.mark.django_db]

MAX_EXAMPLES = int(os.environ.get("HC_FUZZ_MEDUSA_EXAMPLES", "10"))


def test_no_clinical_value_or_key_outside_the_allowlist_reaches_medusa(
    medusa: MedusaServer, boundary_ehr: FuzzEHR, boundary_site: EHRSite
) -> None:
    call_command("medusa_sync_catalog", stdout=StringIO())  # every catalog product, by SKU
    tally = Tally("fuzz-boundary-medusa", MAX_EXAMPLES)

    run_examples(boundary_ehr, [Backend("medusa")], tally, MAX_EXAMPLES)
    assert tally.crossed("medusa") >= MAX_EXAMPLES // 2, tally.results  # not vacuous
