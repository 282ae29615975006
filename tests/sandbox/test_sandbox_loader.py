"""The fixture loader and the ``sandbox_load`` command."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from healthcommerce.sandbox.loader import sandbox_resources_load
from healthcommerce.sandbox.models import FhirResource, SandboxClient

SYNTHEA = Path(settings.FHIR_FIXTURES_DIR) / "synthea-r4"
DAVINCI = Path(settings.FHIR_FIXTURES_DIR) / "davinci"


def test_it_counts_every_resource_of_the_shared_fixtures(sandbox_data: dict[str, int]) -> None:
    counts = sandbox_resources_load(dirs=[Path(settings.FHIR_FIXTURES_DIR)])

    assert counts["Patient"] == 24
    assert counts["DeviceRequest"] == 12
    assert counts["ServiceRequest"] == 3
    assert counts["Practitioner"] == 107
    assert counts["Observation"] == 1960


def test_it_loads_the_project_authored_fixtures_too(sandbox_data: dict[str, int]) -> None:
    authored = Path(settings.BASE_DIR) / "tests" / "fixtures" / "fhir"
    if not authored.is_dir():
        pytest.skip("no project-authored fixtures yet")
    shared = sandbox_resources_load(dirs=[Path(settings.FHIR_FIXTURES_DIR)])

    assert sum(sandbox_data.values()) > sum(shared.values())


def test_it_is_idempotent(sandbox_data: dict[str, int]) -> None:
    before = FhirResource.objects.count()

    sandbox_resources_load(dirs=[DAVINCI, SYNTHEA])

    assert FhirResource.objects.count() == before


def test_it_resolves_synthea_urn_uuid_references(sandbox_data: dict[str, int]) -> None:
    bundle = json.loads((SYNTHEA / "Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json").read_text())
    patient_id = bundle["entry"][0]["resource"]["id"]
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")

    stored = FhirResource.objects.get(resource_type="Encounter", fhir_id=encounter["id"])

    assert stored.data["subject"]["reference"] == f"Patient/{patient_id}"
    assert stored.patient_id == patient_id
    assert not [str(r) for r in FhirResource.objects.all() if '"urn:uuid:' in json.dumps(r.data)]


def test_it_derives_the_compartment_patient(sandbox_data: dict[str, int]) -> None:
    def patient_of(resource_type: str, fhir_id: str) -> str | None:
        return FhirResource.objects.get(resource_type=resource_type, fhir_id=fhir_id).patient_id

    assert patient_of("Patient", "pat013") == "pat013"
    assert patient_of("DeviceRequest", "devreq013") == "pat013"
    assert patient_of("Coverage", "cov1234") == "pat1234"
    assert patient_of("AllergyIntolerance", "allergy-pat014-cashew") == "pat014"
    assert patient_of("Practitioner", "pra1234") is None
    assert FhirResource.objects.filter(resource_type="Claim", patient_id__isnull=True).count() == 0


def test_it_keeps_the_status_for_search(sandbox_data: dict[str, int]) -> None:
    assert FhirResource.objects.get(resource_type="DeviceRequest", fhir_id="devreq014").status == "draft"


def test_the_command_prints_a_count_per_type_and_registers_the_default_client(sandbox_data: dict[str, int]) -> None:
    out = io.StringIO()

    call_command("sandbox_load", "--dir", str(DAVINCI), stdout=out)

    lines = out.getvalue().splitlines()
    assert "Patient: 4" in lines
    assert "DeviceRequest: 12" in lines
    assert SandboxClient.objects.filter(client_id="healthcommerce", token_endpoint_auth_method="none").exists()
