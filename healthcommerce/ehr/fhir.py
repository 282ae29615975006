"""FHIR R4 reads for a launch, through fhirclient's models and server over the project's outbound session.

Sources: FHIR R4 RESTful API (read, search, ``_elements``; HTTP status codes), SMART App Launch 2.2
"Best practices" (send the access token only to the FHIR server it was issued for).
Reads run without touching the database so several can run concurrently; callers write the audit rows.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.fhirabstractresource import FHIRAbstractResource
from fhirclient.server import (
    FHIRNotFoundException,
    FHIRPermissionDeniedException,
    FHIRServer,
    FHIRUnauthorizedException,
)

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session
from healthcommerce.ehr.errors import FHIRError

logger = logging.getLogger(__name__)
MAX_PAGES = 5

MESSAGES = {
    "unauthorized": "The EHR session has expired or was refused. Please launch the app again.",
    "forbidden": "The EHR did not allow access to this information.",
    "not_found": "The EHR has no such record.",
    "server_error": "The EHR had an error answering. Please try again in a moment.",
    "timeout": "The EHR took too long to answer.",
    "unreachable": "The EHR could not be reached.",
    "malformed": "The EHR sent a record this app cannot read.",
}


def fhir_error(code: str) -> FHIRError:
    """Return a ``FHIRError`` with ``code`` (a key of ``MESSAGES``) and its user-safe message."""
    return FHIRError(MESSAGES[code], code=code)


class FHIRReader:
    """Read-only FHIR access with one bearer token against one FHIR base (``iss``).

    ``read`` and ``search`` return JSON (dicts) and raise ``FHIRError`` whose ``code`` is one of
    ``unauthorized`` (401), ``forbidden`` (403), ``not_found`` (404), ``server_error`` (5xx and other
    statuses), ``timeout``, ``unreachable`` or ``malformed`` (not JSON, wrong type, fails the model).
    """

    def __init__(self, *, iss: str, access_token: str, site: str = "") -> None:
        self.server = FHIRServer(None, base_uri=iss)
        # Counted as ``fhir:<ResourceType>`` of ``site`` (core.metrics); the reads run on a thread pool.
        self.server.session = outbound_session(only_origin=iss, site=site, kind="fhir", base=iss.rstrip("/") + "/")
        auth = FHIROAuth2Auth()
        auth.access_token = access_token
        self.server.auth = auth

    def read(self, model: type[FHIRAbstractResource], resource_id: str, *, elements: str = "") -> dict[str, Any]:
        """Return ``GET [base]/{type}/{id}[?_elements=...]`` as JSON (a dict whose ``resourceType`` is the model's).

        The body is not parsed into the model: callers read the elements they need leniently
        (``orders.extract``), so one bad element elsewhere in the resource does not cost the whole resource.
        """
        path = f"{model.resource_type}/{resource_id}" + (f"?_elements={elements}" if elements else "")
        data = self._call(self.server.request_json, path)
        if not isinstance(data, dict) or data.get("resourceType") != model.resource_type:
            raise fhir_error("malformed")
        return data

    def search(
        self, model: type[FHIRAbstractResource], params: dict[str, str], *, elements: str = ""
    ) -> "SearchResult":
        """Run a search, following ``next`` links (same origin only) up to ``MAX_PAGES`` pages.

        A Bundle entry that is not an object with a ``resource`` object is skipped and counted; entries of
        other types (``_include``d resources, OperationOutcomes) are returned apart. A failing page after the
        first (a ``next`` link to another server, a 404) ends the search with what was read and sets
        ``incomplete``. Raises ``FHIRError`` when the first page fails (``malformed`` when it is not a Bundle).
        """
        struct = dict(params) | ({"_elements": elements} if elements else {})
        result = SearchResult()
        path: str | None = model.where(struct).construct()
        for page in range(MAX_PAGES):
            if not path:
                break
            try:
                bundle = self._call(self.server.request_json, path)
                if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                    raise fhir_error("malformed")
            except FHIRError:
                if page == 0:
                    raise
                result.incomplete = True  # a later page failed: keep what the earlier pages gave
                break
            entries = bundle.get("entry")
            for entry in entries if isinstance(entries, list) else []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict):
                    result.skipped += 1
                elif resource.get("resourceType") == model.resource_type:
                    result.matches.append(resource)
                else:
                    result.included.append(resource)
            path = _next_link(bundle.get("link"))
        return result

    def _call(self, fn: Any, path: str) -> Any:
        try:
            return fn(path)
        except FHIRUnauthorizedException as exc:
            raise fhir_error("unauthorized") from exc
        except FHIRPermissionDeniedException as exc:
            raise fhir_error("forbidden") from exc
        except FHIRNotFoundException as exc:
            raise fhir_error("not_found") from exc
        except requests.Timeout as exc:
            raise fhir_error("timeout") from exc
        except (requests.ConnectionError, OutboundRefused) as exc:
            raise fhir_error("unreachable") from exc
        except requests.HTTPError as exc:
            raise fhir_error("server_error") from exc
        except (ValueError, requests.RequestException) as exc:
            raise fhir_error("malformed") from exc


@dataclass
class SearchResult:
    """A search's resources as JSON: ``matches`` of the searched type, ``included`` others, ``skipped`` entries."""

    matches: list[dict[str, Any]] = field(default_factory=list)
    included: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    incomplete: bool = False  # a page after the first could not be read


def _next_link(links: Any) -> str | None:
    """Return the ``next`` link's URL (FHIR R4 Bundle.link), ignoring links that are not objects with a string url."""
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None
