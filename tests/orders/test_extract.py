"""Lenient reading: a bad element costs only that element, with a warning naming it; values fit their columns."""

import datetime
import math

import pytest

from healthcommerce.orders import extract
from healthcommerce.orders.extract import Notes


def patient(**fields):
    return {"resourceType": "Patient", "id": "p1"} | fields


def read_patient(**fields):
    notes = Notes("Patient")
    return extract.patient_info(patient(**fields), notes), notes.warnings


def read_request(kind="DeviceRequest", **fields):
    notes = Notes(f"{kind}/r1")
    data = {"resourceType": kind, "id": "r1", "status": "draft", "subject": {"reference": "Patient/p1"}} | fields
    return extract.request_info(data, notes), notes.warnings


HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


def test_a_bad_name_drops_only_that_name():
    info, warnings = read_patient(name=[{"given": "Ann"}, {"use": "official", "given": ["Ann", "B"], "family": "Lee"}])
    assert info.name == "Ann B Lee"
    assert warnings == ["Patient: name 1 could not be read"]


def test_unknown_elements_extensions_and_unused_parts_are_ignored():
    info, warnings = read_patient(
        name=[{"family": "Lee", "given": ["Ann"], "period": {"start": 17}, "extension": [{"url": 3}], "x-local": 1}],
        address=[{"line": ["1 Main St"], "city": "McLean", "state": "VA", "postalCode": "22102", "period": "bad"}],
        text={"status": "generated"},  # narrative without its required div: never read
        modifierExtension=[{"url": "http://example.org/x"}],
    )
    assert info.name == "Ann Lee" and info.address["city"] == "McLean"
    assert warnings == []


@pytest.mark.parametrize(
    ("fields", "warning"),
    [
        ({"name": [{"text": "A" * 400}]}, "Patient: name is longer than 300 characters and was not used"),
        ({"telecom": [{"system": "phone", "value": "5" * 60}]}, "Patient: phone is longer than 40 characters"),
        ({"telecom": [{"system": "email", "value": "not-an-email"}]}, "Patient: email is not a valid address"),
        ({"birthDate": "1950"}, "Patient: birth date is incomplete"),
        ({"birthDate": "2999-01-01"}, "Patient: birth date is out of range"),
        ({"birthDate": 1950}, "Patient: birth date could not be read"),
        ({"address": [{"city": "C" * 150}]}, "Patient: address city is longer than 100 characters"),
        ({"address": "Main St"}, "Patient: address could not be read"),
    ],
)
def test_out_of_column_values_are_dropped_with_a_warning(fields, warning):
    _, warnings = read_patient(**fields)
    assert any(w.startswith(warning) for w in warnings), warnings


def test_a_good_patient_reads_whole():
    info, warnings = read_patient(
        name=[{"use": "official", "given": ["Theodor", "Alan"], "family": "Roosevelt"}],
        birthDate="1946-07-04",
        telecom=[
            {"system": "phone", "value": "555-0100", "use": "home"},
            {"system": "phone", "value": "555-0199", "use": "mobile"},
            {"system": "email", "value": "t@example.org"},
        ],
        address=[{"use": "home", "line": ["7525 Colshire Dr"], "city": "McLean", "state": "VA", "postalCode": "22102"}],
    )
    assert warnings == []
    assert info.name == "Theodor Alan Roosevelt" and info.birth_date == datetime.date(1946, 7, 4)
    assert info.phone == "555-0199" and info.email == "t@example.org"
    assert info.address == {
        "line": ["7525 Colshire Dr"],
        "city": "McLean",
        "state": "VA",
        "postal_code": "22102",
        "country": "US",
    }


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e12, -1, 0, 1.5, 100, "3", True])
def test_a_quantity_outside_1_to_99_or_not_a_whole_number_falls_back_to_the_default(value):
    info, warnings = read_request("ServiceRequest", quantityQuantity={"value": value})
    assert info.quantity is None
    assert warnings and "quantity" in warnings[0]


def test_a_whole_quantity_is_kept():
    info, warnings = read_request("ServiceRequest", quantityQuantity={"value": 3})
    assert info.quantity == 3 and warnings == []


def test_a_long_code_drops_that_coding_only():
    info, warnings = read_request(
        codeCodeableConcept={"coding": [{"system": HCPCS, "code": "E" * 100}, {"system": HCPCS, "code": "E0601"}]}
    )
    assert info.codings == [(HCPCS, "E0601", "")]
    assert warnings == ["DeviceRequest/r1: code is longer than 64 characters and was not used"]


def test_odd_codings_are_skipped_and_named():
    info, warnings = read_request(
        codeCodeableConcept={"coding": [{"code": "E0601"}, "E0601", {"system": HCPCS, "code": 601}], "text": "CPAP"}
    )
    assert info.codings == [] and info.display == "CPAP"
    assert len(warnings) == 3


def test_a_subject_that_is_not_a_reference_is_dropped():
    info, warnings = read_request(subject="Patient/p1")
    assert info.subject == "" and not info.patient_matches("p1")
    assert warnings == ["DeviceRequest/r1: subject could not be read"]


def test_patient_matches_only_the_exact_id():
    info, _ = read_request(subject={"reference": "https://ehr.example.org/fhir/Patient/p1"})
    assert info.patient_matches("p1") and not info.patient_matches("1")


@pytest.mark.parametrize("data", [[], {"resourceType": "Patient"}, {"resourceType": "Patient", "id": "a b"}, "x"])
def test_a_resource_without_type_or_valid_id_is_malformed(data):
    with pytest.raises(extract.MalformedResource):
        extract.resource_check(data, "Patient")


def test_coverage_without_payer_name_warns_and_keeps_the_member_id():
    notes = Notes("Coverage")
    found = extract.coverage_info([{"id": "c1", "status": "active", "subscriberId": "M1", "payor": [{}]}], notes)
    assert found == extract.CoverageInfo(payer_name="Coverage on file", member_id="M1")
    assert notes.warnings == ["Coverage: payer name missing"]


def test_an_npi_that_is_not_ten_digits_is_dropped():
    notes = Notes("Practitioner")
    data = {"name": [{"family": "Doe"}], "identifier": [{"system": extract.NPI_SYSTEM, "value": "12345"}]}
    assert extract.practitioner_info(data, notes) == extract.PractitionerInfo(name="Doe", npi="")
    assert notes.warnings == ["Practitioner: NPI is not ten digits and was not used"]


BCP47 = "urn:ietf:bcp:47"


def speaks(*codes, preferred=None):
    """A Patient.communication entry for ``codes`` (urn:ietf:bcp:47 codings)."""
    entry = {"language": {"coding": [{"system": BCP47, "code": code} for code in codes]}}
    return entry | ({"preferred": preferred} if preferred is not None else {})


@pytest.mark.parametrize(
    ("code", "language"), [("es", "es"), ("es-MX", "es"), ("ES-us", "es"), ("en-US", "en"), ("en", "en")]
)
def test_the_patients_language_maps_onto_a_language_the_app_speaks(code, language):
    info, warnings = read_patient(communication=[speaks(code)])
    assert info.language == language and warnings == []


def test_the_preferred_language_wins_over_the_first():
    info, warnings = read_patient(communication=[speaks("en-US"), speaks("es-MX", preferred=True)])
    assert info.language == "es" and warnings == []


def test_without_a_preferred_entry_the_first_language_is_used():
    info, _ = read_patient(communication=[speaks("es"), speaks("en-US"), speaks("en", preferred=False)])
    assert info.language == "es"


def test_the_first_coding_the_app_speaks_is_used():
    info, warnings = read_patient(communication=[speaks("x-klingon", "es-PR")])
    assert info.language == "es" and warnings == []


def test_a_language_the_app_does_not_speak_is_ignored_with_a_warning_naming_it():
    info, warnings = read_patient(communication=[speaks("fr-CA", preferred=True), speaks("es")])
    assert info.language == ""  # English: the preferred language is the patient's, not the next best one
    assert warnings == ["Patient: language 'fr-CA' is not offered to patients; English is used"]


def test_a_malformed_communication_entry_costs_only_itself():
    info, warnings = read_patient(
        name=[{"family": "Lee", "given": ["Ana"]}],
        communication=[{"language": "es", "preferred": True}, {"preferred": True}, speaks("es-MX")],
    )
    assert info.language == "es" and info.name == "Ana Lee"
    assert warnings == ["Patient: communication 1 could not be read", "Patient: communication 2 could not be read"]


@pytest.mark.parametrize(
    "communication",
    [None, [], "es", [{"language": {"text": "Spanish"}}], [{"language": {"coding": [{"code": 7}]}}]],
)
def test_no_usable_language_leaves_it_blank(communication):
    info, _ = read_patient(communication=communication)
    assert info.language == ""
