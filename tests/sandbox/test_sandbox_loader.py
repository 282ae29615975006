"""The fixture loader and the ``sandbox_load`` command."""

import io
import json
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from healthcommerce.sandbox.loader import default_fixture_dirs, sandbox_resources_load
from healthcommerce.sandbox.models import FhirResource, SandboxClient

FIXTURES = Path(settings.FHIR_FIXTURES_DIR)
SYNTHEA = FIXTURES / "synthea-r4"
DAVINCI = FIXTURES / "davinci"
AUTHORED = FIXTURES / "authored"
REPO = Path(__file__).resolve().parents[2]


def test_the_default_fixtures_live_inside_the_repository() -> None:
    assert default_fixture_dirs() == [FIXTURES]
    assert FIXTURES.resolve().is_relative_to(REPO)
    assert (DAVINCI / "LICENSE.txt").is_file() and (SYNTHEA / "LICENSE.txt").is_file()
    assert (FIXTURES / "README.md").is_file()


def test_it_counts_every_resource_of_the_repository_fixtures(sandbox_data: dict[str, int]) -> None:
    counts = sandbox_resources_load(dirs=[FIXTURES])

    assert counts["Patient"] == 12
    assert counts["DeviceRequest"] == 12
    assert counts["ServiceRequest"] == 7
    assert counts["Practitioner"] == 107
    assert counts["Observation"] == 614


def test_it_loads_every_da_vinci_patient_and_the_authored_kits(sandbox_data: dict[str, int]) -> None:
    for patient in ("pat013", "pat014", "pat015", "pat1234"):
        assert FhirResource.objects.filter(resource_type="Patient", fhir_id=patient).exists()
    authored = sandbox_resources_load(dirs=[AUTHORED])

    assert authored == {"ServiceRequest": 4}


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
