"""A PractitionerRole ``fhirUser``: the practitioner comes with the role through ``_include`` (one request);
servers that refuse or ignore ``_include`` cost a second read, never a lost signer."""

import pytest

from healthcommerce.ehr.errors import FHIRError
from healthcommerce.ehr.fhir import FHIRReader, SearchResult
from healthcommerce.ehr.models import Launch
from healthcommerce.orders import prefill
from tests.conftest import complete_launch

ROLE = {"resourceType": "PractitionerRole", "id": "prarol1234", "practitioner": {"reference": "Practitioner/pra1"}}
DOCTOR = {
    "resourceType": "Practitioner",
    "id": "pra1",
    "name": [{"given": ["Jane"], "family": "Doe"}],
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1122334455"}],
}


class Reader:
    """Answers like a FHIR server that supports ``_include`` (``mode="include"``), ignores it, or refuses it."""

    def __init__(self, mode: str) -> None:
        self.mode, self.calls = mode, []

    def search(self, model, params, *, elements=""):
        self.calls.append(("search", dict(params)))
        if "_include" in params and self.mode == "refuse":
            raise FHIRError("400", code="server_error")
        included = [DOCTOR] if "_include" in params and self.mode == "include" else []
        return SearchResult(matches=[ROLE], included=included)

    def read(self, model, resource_id, *, elements=""):
        self.calls.append(("read", resource_id))
        return DOCTOR


def test_the_practitioner_comes_with_the_role_in_one_request():
    reader = Reader("include")
    info, warnings = prefill._practitioner_role(reader, "prarol1234")
    assert (info["practitioner_name"], info["practitioner_npi"], warnings) == ("Jane Doe", "1122334455", [])
    assert reader.calls == [("search", {"_id": "prarol1234", "_include": "PractitionerRole:practitioner"})]


def test_a_server_that_ignores_include_costs_one_more_read():
    reader = Reader("ignore")
    info, _ = prefill._practitioner_role(reader, "prarol1234")
    assert info["practitioner_name"] == "Jane Doe" and reader.calls[-1] == ("read", "pra1")


def test_a_server_that_refuses_include_is_asked_without_it():
    reader = Reader("refuse")
    info, _ = prefill._practitioner_role(reader, "prarol1234")
    assert info["practitioner_npi"] == "1122334455"
    assert [c[0] for c in reader.calls] == ["search", "search", "read"]


def test_a_patient_or_related_person_cannot_sign_a_practitioner_role_can():
    assert prefill.can_sign("https://ehr.example.org/fhir/PractitionerRole/prarol1234")
    assert prefill.can_sign("Practitioner/pra1")
    assert not prefill.can_sign("Patient/pat014")
    assert not prefill.can_sign("RelatedPerson/r1")
    assert not prefill.can_sign("")


@pytest.mark.django_db
def test_against_the_sandbox_the_practitioner_comes_in_the_same_request(client, ehr_site, sandbox_ehr):
    ehr_site.scopes += " user/PractitionerRole.rs"
    ehr_site.save()
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    launch = Launch.objects.get(pk=result.launch_id)
    reader = FHIRReader(iss=ehr_site.iss, access_token=launch.access_token)
    calls = []
    original = reader.request_json
    reader.request_json = lambda path: calls.append(path) or original(path)

    info, warnings = prefill._practitioner_role(reader, "prarol1234")
    assert (info["practitioner_name"], info["practitioner_npi"], warnings) == ("Dr. Jane Betty Doe", "1122334455", [])
    assert len(calls) == 1 and "_include=PractitionerRole%3Apractitioner" in calls[0]
