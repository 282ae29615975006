"""Go-live readiness of eligibility (coverage.readiness, in the site's readiness report): settings complete, payer ids
on the site's payer records, and the clearinghouse answering a test 270 for a made-up member."""

import pytest

from healthcommerce.catalog.models import Payer
from healthcommerce.coverage.readiness import coverage_readiness
from healthcommerce.ehr.models import EHRSite
from tests.peers.clearinghouse import StandIn, eligibility_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def site() -> EHRSite:
    return EHRSite.objects.create(name="Casco clinic", iss="https://ehr.casco.example/fhir", client_id="hc")


def _on(site: EHRSite, clearinghouse: StandIn, **changes: object) -> None:
    eligibility_on(site, clearinghouse.x12_url, provider_npi="", timeout_seconds=2, **changes)


def _report(site: EHRSite) -> list[tuple[str, str, str]]:
    return [(check.name, check.status, check.detail) for check in coverage_readiness(site)]


def test_off_says_nothing(site: EHRSite) -> None:
    assert _report(site) == []


def test_missing_settings_fail_naming_them(site: EHRSite, clearinghouse: StandIn) -> None:
    _on(site, clearinghouse, clearinghouse_api_key="", receiver_id="")
    assert _report(site) == [("eligibility settings", "fail", "Missing: clearinghouse API key, receiver ID (ISA08).")]


def test_payers_without_a_payer_id_fail(site: EHRSite, clearinghouse: StandIn) -> None:
    _on(site, clearinghouse)
    Payer.objects.create(site=site, name="Medicare", payer_id="", plan_type="medicare")
    ((name, status, _detail),) = _report(site)
    assert (name, status) == ("eligibility payers", "fail")


def test_a_clearinghouse_that_answers_passes_and_one_that_does_not_fails(site: EHRSite, clearinghouse: StandIn) -> None:
    _on(site, clearinghouse)
    Payer.objects.create(site=site, name="Medicare", payer_id="CMS", plan_type="medicare")
    assert _report(site) == [
        ("eligibility payers", "pass", "1 payer record(s) with a payer id."),
        ("eligibility via x12_https:127.0.0.1", "pass", "A test 270 for payer CMS was answered (not_found)."),
    ]
    (sent,) = clearinghouse.requests_seen
    assert "HCREADINESS0" in sent and "ISA*" in sent
    clearinghouse.status = 503
    assert _report(site)[1] == ("eligibility via x12_https:127.0.0.1", "fail", "No answer: 5xx.")
