"""Go-live readiness of a site's eligibility checks (``golive.readiness``, registered in ``apps.py``): the settings
are complete, the site's payer records carry clearinghouse payer ids, and the clearinghouse answers a test 270
with a readable 271. The test inquiry names a made-up member (no PHI): a "subscriber not found" answer is a pass,
it proves the channel, the credentials and the payer id."""

import datetime
from collections.abc import Iterator

from healthcommerce.catalog.models import Payer
from healthcommerce.catalog.selectors import site_payers
from healthcommerce.coverage import types
from healthcommerce.coverage.clearinghouse import ClearinghouseError, clearinghouse_for
from healthcommerce.coverage.models import CoverageSite
from healthcommerce.coverage.services import clearinghouse_config
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import Check

TEST_MEMBER = "HCREADINESS0"


def coverage_readiness(site: EHRSite) -> Iterator[Check]:
    """Yield the eligibility checks of ``site``'s readiness report (nothing when eligibility is off)."""
    settings = CoverageSite.of(site)
    if not settings.eligibility_enabled:
        return
    needs = settings.needs()
    if needs:
        yield Check("eligibility settings", "fail", f"Missing: {', '.join(needs)}.", "Fill them in the site's page.")
        return
    payers = [payer for payer in site_payers(site) if payer.payer_id]
    if not payers:
        yield Check(
            "eligibility payers",
            "fail",
            "No payer record of this site has a clearinghouse payer id.",
            "Add the payer id your clearinghouse lists to each payer record (Catalog > Payers).",
        )
        return
    yield Check("eligibility payers", "pass", f"{len(payers)} payer record(s) with a payer id.")
    yield _probe(site, settings, payers[0])


def _probe(site: EHRSite, settings: CoverageSite, payer: Payer) -> Check:
    config = clearinghouse_config(settings)
    inquiry = types.EligibilityInquiry(
        control_number=1,
        trace="READINESS",
        submitter_id=settings.submitter_id or "HEALTHCOMMERCE",
        receiver_id=settings.receiver_id or "CLEARINGHOUSE",
        payer_id=payer.payer_id,
        payer_name=payer.name,
        provider_npi=settings.provider_npi or "1234567893",
        provider_name=settings.provider_name or site.name,
        member_id=TEST_MEMBER,
        first_name="TEST",
        last_name="READINESS",
        birth_date=datetime.date(1970, 1, 1),
        service_type=types.SERVICE_TYPE_DME,
        service_date=datetime.date.today(),
        usage="T",
    )
    name = f"eligibility via {config.name}"
    try:
        exchange = clearinghouse_for(config).eligibility(inquiry)
    except ClearinghouseError as exc:
        return Check(name, "fail", f"No answer: {exc.outcome}.", "Check the clearinghouse URL, API key and firewall.")
    outcome = exchange.answer.outcome
    if outcome in (types.UNREADABLE, types.PROVIDER_REJECTED):
        return Check(
            name,
            "fail",
            f"The test 270 for payer {payer.payer_id} was answered {outcome}"
            f" (AAA {exchange.answer.reason_code or '-'}).",
            "Check the submitter, receiver and provider ids with the clearinghouse.",
        )
    return Check(name, "pass", f"A test 270 for payer {payer.payer_id} was answered ({outcome}).")
