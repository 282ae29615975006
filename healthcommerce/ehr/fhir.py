"""FHIR R4 for the app: one client for a launch's user token and for a SMART Backend Services token.

Sources: FHIR R4 RESTful API (read, search, create; ``_elements``; ``Location`` on create; HTTP status codes),
SMART App Launch 2.2 "Best practices" (send the access token only to the FHIR server it was issued for) and
"Backend Services" (a fresh token after a 401).

``FHIRClient`` sends every request through the project's outbound session (``core.http``: timeouts, URL checks,
only the ``iss`` origin), maps every failure to one ``FHIRError`` code, and retries once after a 401 with the token
its ``Bearer`` renews. The token kind decides only where the token comes from: a fixed one (``AccessToken``, a
launch's; its caller refreshes it through ``ehr.tokens``) or a backend-services one (``ehr.backend.BackendBearer``).
Reads return JSON (dicts), never models: callers read the elements they need leniently (``orders.extract``).
The client writes no database row, so several reads can run at once; its callers write the audit rows.
"""

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests
from fhirclient.models.fhirabstractresource import FHIRAbstractResource

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session
from healthcommerce.ehr.errors import FHIRError

logger = logging.getLogger(__name__)
MAX_PAGES = 5
FHIR_JSON = "application/fhir+json"
# Codes of a failure that may pass on its own: 5xx or 429, a timeout, no connection.
TRANSIENT = frozenset({"server_error", "timeout", "unreachable"})
TYPE_PATTERN = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 id datatype

MESSAGES = {
    "unauthorized": "The EHR session has expired or was refused. Please launch the app again.",
    "forbidden": "The EHR did not allow access to this information.",
    "not_found": "The EHR has no such record.",
    "server_error": "The EHR had an error answering. Please try again in a moment.",
    "timeout": "The EHR took too long to answer.",
    "unreachable": "The EHR could not be reached.",
    "malformed": "The EHR sent a record this app cannot read.",
    "rejected": "The EHR did not accept the record.",
    "invalid_id": "That is not a valid FHIR resource type or id.",
}


def fhir_error(code: str, kind: type[FHIRError] = FHIRError) -> FHIRError:
    """Return a ``kind`` (``FHIRError`` or a subclass) with ``code`` (a key of ``MESSAGES``), its user-safe
    message, and ``temporary`` true for the ``TRANSIENT`` codes."""
    error = kind(MESSAGES[code], code=code)
    error.temporary = code in TRANSIENT
    return error


class Bearer(Protocol):
    """Where a client's bearer token comes from. ``token()`` returns the token to send; ``renewed()`` is called
    once after a 401 and returns another token, or ``""`` when none can be had (then the 401 stands).
    ``errors`` is the ``FHIRError`` class the client raises."""

    @property
    def errors(self) -> type[FHIRError]: ...  # pragma: no cover - protocol

    def token(self) -> str: ...  # pragma: no cover - protocol

    def renewed(self) -> str: ...  # pragma: no cover - protocol


@dataclass(frozen=True)
class AccessToken:
    """A fixed bearer token (a launch's access token). It is not renewed here: pre-fill's reads run at once on a
    thread pool, so ``orders.services`` refreshes the launch's token (``ehr.tokens.launch_token_refresh``) once
    for the whole round and reads again."""

    access_token: str
    errors: type[FHIRError] = FHIRError

    def token(self) -> str:
        """Return the token."""
        return self.access_token

    def renewed(self) -> str:
        """Return ``""``: a fixed token has no renewal."""
        return ""

    def __repr__(self) -> str:
        return "AccessToken(...)"


def _status_code(status: int, refused: str) -> str:
    """Return the ``FHIRError`` code of an HTTP ``status`` that is not 2xx; ``refused`` for other 4xx."""
    if status in (401, 403):
        return "unauthorized" if status == 401 else "forbidden"
    if status in (404, 410):
        return "not_found"
    if status == 429 or status >= 500:
        return "server_error"
    return refused if status >= 400 else "malformed"


class FHIRClient:
    """FHIR access with one ``Bearer`` against one FHIR base (``iss``).

    ``read``, ``search`` and ``create`` raise ``bearer.errors`` (``FHIRError``, or ``BackendFHIRError`` for a
    backend-services token) with ``code`` ``unauthorized`` (401, after the one retry), ``forbidden`` (403),
    ``not_found`` (404, 410), ``server_error`` (5xx, 429), ``timeout``, ``unreachable`` (no connection, or a URL
    ``core.http`` refuses), ``malformed`` (not JSON, the wrong type, a 2xx without what was asked, a 3xx),
    ``invalid_id`` (a type or id that is not FHIR's; nothing is sent) or ``refused`` (any other 4xx:
    ``server_error`` by default, ``rejected`` for backend services); ``temporary`` is true for ``TRANSIENT``
    codes. The cause of an error the EHR answered is a ``requests.HTTPError`` with the response. A bearer's own
    errors (``BackendServicesError`` when no backend token can be had) pass through.
    """

    def __init__(
        self,
        *,
        iss: str,
        access_token: str = "",
        bearer: Bearer | None = None,
        site: str = "",
        refused: str = "server_error",
    ) -> None:
        self.base = iss.rstrip("/") + "/"
        self.bearer: Bearer = bearer if bearer is not None else AccessToken(access_token)
        self.refused = refused
        # Counted as ``fhir:<ResourceType>`` of ``site`` (core.metrics); reads may run on a thread pool.
        self.session = outbound_session(only_origin=iss, site=site, kind="fhir", base=self.base)

    def error(self, code: str) -> FHIRError:
        """Return this client's error for ``code`` (``fhir_error`` of ``bearer.errors``)."""
        return fhir_error(code, self.bearer.errors)

    def read(self, model: type[FHIRAbstractResource] | str, resource_id: str, *, elements: str = "") -> dict[str, Any]:
        """Return ``GET [base]/{type}/{id}[?_elements=...]`` as JSON (a dict whose ``resourceType`` is the type).

        ``model`` is a fhirclient model or a resource type name; ``elements`` a comma-separated list. The body is
        not parsed into the model, so one bad element elsewhere in the resource does not cost the whole resource.
        """
        kind = model if isinstance(model, str) else str(model.resource_type)
        if not TYPE_PATTERN.match(kind) or not ID_PATTERN.match(resource_id):
            raise self.error("invalid_id")
        path = f"{kind}/{quote(resource_id, safe='')}" + (f"?_elements={elements}" if elements else "")
        data = self.request_json(path)
        if not isinstance(data, dict) or data.get("resourceType") != kind:
            raise self.error("malformed")
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
                bundle = self.request_json(path)
                if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                    raise self.error("malformed")
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

    def create(self, resource: dict[str, Any], *, if_none_exist: str = "") -> str:
        """``POST [base]/{resourceType}`` ``resource`` (``Prefer: return=minimal``) and return the new resource's
        id, from ``Location`` (``[base]/Type/id[/_history/vid]``, FHIR R4 "create") or else the body's ``id``.

        ``if_none_exist`` (a search query such as ``identifier=urn:x|123``) makes it a FHIR conditional create:
        a retry after a lost answer finds the first record where the EHR supports it. Raises ``ValueError`` when
        ``resource`` has no valid ``resourceType``; the client's errors (``malformed``: a 2xx without a usable id).
        """
        kind = str(resource.get("resourceType") or "")
        if not TYPE_PATTERN.match(kind):
            raise ValueError("resource needs a resourceType")
        headers = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}
        headers |= {"If-None-Exist": if_none_exist} if if_none_exist else {}
        response = self._send("POST", kind, json=resource, headers=headers)
        return _created_id(response, kind, self.error("malformed"))

    def request_json(self, path: str) -> Any:
        """Return the JSON of ``GET [base]/path`` (``path`` relative to the base, or a same-origin URL)."""
        response = self._send("GET", path)
        try:
            return response.json()
        except ValueError as exc:
            raise self.error("malformed") from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send ``method`` to ``path`` with the bearer's token; once more with ``bearer.renewed()`` after a 401.
        Returns a 2xx response."""
        url = urljoin(self.base, path)
        headers = {"Accept": FHIR_JSON, "Accept-Charset": "UTF-8"} | kwargs.pop("headers", {})
        response = self._attempt(method, url, headers | {"Authorization": f"Bearer {self.bearer.token()}"}, **kwargs)
        if response.status_code == 401:
            renewed = self.bearer.renewed()
            if renewed:
                logger.info("FHIR %s answered 401: retrying once with a renewed token", method)
                response = self._attempt(method, url, headers | {"Authorization": f"Bearer {renewed}"}, **kwargs)
        if 200 <= response.status_code < 300:
            return response
        cause = requests.HTTPError(f"HTTP {response.status_code}", response=response)
        raise self.error(_status_code(response.status_code, self.refused)) from cause

    def _attempt(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, headers=headers, **kwargs)
        except requests.Timeout as exc:
            raise self.error("timeout") from exc
        except (requests.ConnectionError, OutboundRefused) as exc:
            raise self.error("unreachable") from exc
        except requests.RequestException as exc:
            raise self.error("malformed") from exc


FHIRReader = FHIRClient  # the name pre-fill and the tests use for reading


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


def _created_id(response: requests.Response, resource_type: str, malformed: FHIRError) -> str:
    """Return the new id from ``Location`` (``[base]/Type/id[/_history/vid]``, FHIR R4 "create") or the body;
    raise ``malformed`` when neither has one."""
    location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
    parts = [p for p in urlsplit(location).path.split("/") if p]
    if resource_type in parts:
        index = len(parts) - 1 - parts[::-1].index(resource_type)
        if index + 1 < len(parts) and ID_PATTERN.match(parts[index + 1]):
            return parts[index + 1]
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("id"), str) and ID_PATTERN.match(body["id"]):
        return str(body["id"])
    raise malformed
