"""Load FHIR R4 fixture files (single resources or collection/transaction Bundles) into ``FhirResource``.

Synthea transaction Bundles reference each other with ``urn:uuid:`` fullUrls; those are resolved to
``Type/id`` across all loaded files before storing (FHIR R4 Bundle, "Resolving references in Bundles").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.sandbox.models import FhirResource
from healthcommerce.sandbox.r4 import PATIENT_REFERENCE_ELEMENTS

Resource = dict[str, Any]
_BUNDLE_TYPES = {"collection", "transaction", "batch", "searchset", "transaction-response", "batch-response"}
_BATCH_SIZE = 500


class FixtureError(HealthcommerceError):
    """A fixture file is not JSON or not a FHIR resource."""

    code = "sandbox_fixture_invalid"
    message = "A FHIR fixture file could not be read."


def default_fixture_dirs() -> list[Path]:
    """Return ``[settings.FHIR_FIXTURES_DIR]``: by default the repository's ``healthcommerce/sandbox/fixtures``
    (Da Vinci, Synthea and project-authored data; see its README for sources and licences)."""
    return [Path(settings.FHIR_FIXTURES_DIR)]


def fixture_files(dirs: Iterable[Path]) -> list[Path]:
    """Return every ``*.json`` file under ``dirs`` (recursively, sorted); LICENSE and README files are skipped."""
    files: list[Path] = []
    for folder in dirs:
        found = sorted(p for p in Path(folder).rglob("*.json") if p.is_file())
        files.extend(p for p in found if not p.name.upper().startswith(("LICENSE", "README")))
    return files


def _read(path: Path) -> Resource:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path.name} is not readable JSON.") from exc
    if not isinstance(data, dict) or "resourceType" not in data:
        raise FixtureError(f"{path.name} is not a FHIR resource.")
    return data


def _entries(data: Resource) -> Iterator[tuple[str | None, Resource]]:
    """Yield ``(fullUrl, resource)`` for a Bundle's entries, or ``(None, data)`` for a single resource."""
    if data["resourceType"] == "Bundle" and data.get("type") in _BUNDLE_TYPES:
        for entry in data.get("entry") or []:
            resource = entry.get("resource")
            if isinstance(resource, dict) and "resourceType" in resource:
                yield entry.get("fullUrl"), resource
    else:
        yield None, data


def _ensure_id(full_url: str | None, resource: Resource) -> bool:
    """Give a Bundle entry without ``id`` the uuid of its ``urn:uuid:`` fullUrl; return whether it has an id."""
    if not resource.get("id") and full_url and full_url.startswith("urn:uuid:"):
        resource["id"] = full_url.removeprefix("urn:uuid:")
    return bool(resource.get("id"))


def _resolve(node: Any, urns: dict[str, str]) -> Any:
    """Replace every ``reference`` that is a known ``urn:uuid:`` with its ``Type/id``, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in urns:
                node[key] = urns[value]
            elif isinstance(value, dict | list):
                _resolve(value, urns)
    elif isinstance(node, list):
        for item in node:
            _resolve(item, urns)
    return node


def compartment_patient_id(resource: Resource) -> str | None:
    """Return the compartment patient: the Patient's own id, else its ``subject``/``patient``/``beneficiary``."""
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for element in PATIENT_REFERENCE_ELEMENTS:
        ref = resource.get(element)
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(reference, str):
            parts = reference.split("?")[0].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                return parts[-1]
    return None


def collect_resources(files: Sequence[Path]) -> dict[tuple[str, str], Resource]:
    """Read ``files`` and return resources keyed by ``(resourceType, id)`` with urn references resolved.

    A later file wins over an earlier one for the same key. Raises ``FixtureError`` for unreadable files.
    """
    resources: dict[tuple[str, str], Resource] = {}
    urns: dict[str, str] = {}
    for path in files:
        for full_url, resource in _entries(_read(path)):
            if not _ensure_id(full_url, resource):
                continue
            key = (str(resource["resourceType"]), str(resource["id"]))
            resources[key] = resource
            if full_url and full_url.startswith("urn:uuid:"):
                urns[full_url] = f"{key[0]}/{key[1]}"
    for resource in resources.values():
        _resolve(resource, urns)
    return resources


def _row(resource: Resource) -> FhirResource:
    status = resource.get("status")
    return FhirResource(
        resource_type=resource["resourceType"],
        fhir_id=str(resource["id"]),
        patient_id=compartment_patient_id(resource),
        status=status[:32] if isinstance(status, str) else "",
        data=resource,
    )


@transaction.atomic
def sandbox_resources_load(*, dirs: Sequence[Path]) -> dict[str, int]:
    """Upsert every resource found under ``dirs``; return the number loaded per resource type, sorted by type.

    Idempotent: a second run updates the same rows. Raises ``FixtureError`` for an unreadable file.
    """
    resources = collect_resources(fixture_files(dirs))
    rows = [_row(resource) for resource in resources.values()]
    FhirResource.objects.bulk_create(
        rows,
        batch_size=_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["resource_type", "fhir_id"],
        update_fields=["patient_id", "status", "data", "updated_at"],
    )
    counts = Counter(row.resource_type for row in rows)
    return dict(sorted(counts.items()))
