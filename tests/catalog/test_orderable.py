"""What is orderable: catalog mappings first, then the most specific per-site or global rule."""

import pytest

from healthcommerce.catalog.models import OrderableRule
from healthcommerce.catalog.selectors import request_orderability
from healthcommerce.ehr.models import EHRSite

pytestmark = pytest.mark.django_db
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"


@pytest.fixture
def site():
    return EHRSite.objects.create(name="Site", iss="https://ehr.example.org/fhir", client_id="c")


def verdict(site, kind, *codings):
    return request_orderability(site=site, resource_type=kind, codings=list(codings))


def test_a_mapped_code_is_orderable_with_its_product(site):
    found = verdict(site, "DeviceRequest", (HCPCS, "E0601"))
    assert found.orderable and found.mapping.product.sku == "DME-CPAP-STD"


@pytest.mark.parametrize(("kind", "code"), [("ServiceRequest", "G0180"), ("ServiceRequest", "A0426")])
def test_home_health_and_ambulance_are_not_orderable(site, kind, code):
    found = verdict(site, kind, (HCPCS, code))
    assert not found.orderable and found.reason


def test_an_unmapped_device_is_orderable_and_an_unmapped_service_is_not(site):
    assert verdict(site, "DeviceRequest", (HCPCS, "E0999")).orderable
    assert verdict(site, "ServiceRequest", ("http://snomed.info/sct", "1234")).orderable is False
    assert verdict(site, "ServiceRequest", (LOINC, "2335-8")).orderable  # a lab: the clinician picks a kit


def test_a_site_rule_wins_over_the_global_one(site):
    OrderableRule.objects.create(site=site, system=HCPCS, code_prefix="G", orderable=True)
    other = EHRSite.objects.create(name="Other", iss="https://other.example.org/fhir", client_id="c")
    assert verdict(site, "ServiceRequest", (HCPCS, "G0180")).orderable
    assert not verdict(other, "ServiceRequest", (HCPCS, "G0180")).orderable


def test_a_site_can_set_aside_a_local_code(site):
    OrderableRule.objects.create(
        site=site, system="urn:oid:1.2.840.114350", code_prefix="LOC9", reason="Local visit code"
    )
    found = verdict(site, "DeviceRequest", ("urn:oid:1.2.840.114350", "LOC9001"))
    assert not found.orderable and found.reason == "Local visit code"
