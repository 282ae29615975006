"""The outbound client checks every redirect hop and caps every response body (issue 9 "Outbound and supply
chain"; docs/reliability.md "Outbound HTTP"). Real HTTP servers on loopback, one per origin."""

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fhirclient.models.patient import Patient

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import ResponseTooLarge, check_url, outbound_session
from healthcommerce.ehr.fhir import FHIRError, FHIRReader
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.oauth import oauth_session
from healthcommerce.ehr.style import smart_style_properties

FHIR_JSON = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}


class Server:
    """A loopback HTTP server answering ``routes[path] = (status, headers, body)``; ``hits`` lists the paths asked."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.hits.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, headers, body = server.routes.get(self.path.split("?")[0], (404, {}, b"{}"))
                self.send_response(status)
                for name, value in ({"Content-Length": str(len(body))} | headers).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """Two servers: two origins on loopback (another port is another origin)."""
    first, second = Server(), Server()
    yield first, second
    first.close()
    second.close()


def redirect(to: str, status: int = 302) -> tuple[int, dict[str, str], bytes]:
    return status, {"Location": to}, b""


def test_a_pinned_session_refuses_a_redirect_to_another_origin_before_sending_it(servers) -> None:  # type: ignore[no-untyped-def]
    ehr, elsewhere = servers
    ehr.routes["/fhir/Patient/p1"] = redirect(f"{elsewhere.url}/fhir/Patient/p1")
    elsewhere.routes["/fhir/Patient/p1"] = (200, {}, json.dumps(PATIENT).encode())

    with pytest.raises(OutboundRefused):
        outbound_session(only_origin=ehr.url).get(f"{ehr.url}/fhir/Patient/p1")
    assert elsewhere.hits == []


def test_a_redirect_within_the_origin_is_followed(servers) -> None:  # type: ignore[no-untyped-def]
    ehr, _ = servers
    ehr.routes["/old"] = redirect("/new", 301)
    ehr.routes["/new"] = (200, {}, b'{"ok": true}')

    response = outbound_session(only_origin=ehr.url).get(f"{ehr.url}/old")

    assert response.json() == {"ok": True} and ehr.hits == ["/old", "/new"]


def test_an_unpinned_session_refuses_a_redirect_to_plain_http_off_this_machine(servers) -> None:  # type: ignore[no-untyped-def]
    ehr, _ = servers
    ehr.routes["/.well-known/smart-configuration"] = redirect("http://smart.example-health.org/config")

    with pytest.raises(OutboundRefused):
        outbound_session().get(f"{ehr.url}/.well-known/smart-configuration")


def test_the_fhir_reader_does_not_read_a_patient_from_where_a_redirect_points(servers) -> None:  # type: ignore[no-untyped-def]
    """The probe of the security review: a redirect to another loopback port was read as the Patient."""
    ehr, elsewhere = servers
    ehr.routes["/fhir/Patient/p1"] = redirect(f"{elsewhere.url}/fhir/Patient/p1", 307)
    elsewhere.routes["/fhir/Patient/p1"] = (200, {"Content-Type": FHIR_JSON}, json.dumps(PATIENT).encode())

    with pytest.raises(FHIRError) as refused:
        FHIRReader(iss=f"{ehr.url}/fhir", access_token="t0k3n").read(Patient, "p1")

    assert refused.value.code == "unreachable" and elsewhere.hits == []


def test_a_body_over_the_cap_fails_unread_and_so_does_a_compressed_one(servers, settings) -> None:  # type: ignore[no-untyped-def]
    ehr, _ = servers
    settings.HTTP_MAX_RESPONSE_BYTES = 1000
    ehr.routes["/big"] = (200, {}, b"x" * 1001)
    ehr.routes["/bomb"] = (200, {"Content-Encoding": "gzip"}, gzip.compress(b"0" * 100_000))  # 100 KB from 150 bytes
    ehr.routes["/fits"] = (200, {}, b"y" * 1000)
    session = outbound_session()

    for path in ("/big", "/bomb"):
        with pytest.raises(ResponseTooLarge):
            session.get(f"{ehr.url}{path}")
    assert session.get(f"{ehr.url}/fits").content == b"y" * 1000
    assert issubclass(ResponseTooLarge, requests.RequestException)  # callers that handle failures handle it


def test_a_caller_that_streams_reads_the_body_itself(servers, settings) -> None:  # type: ignore[no-untyped-def]
    ehr, _ = servers
    settings.HTTP_MAX_RESPONSE_BYTES = 10
    ehr.routes["/style"] = (200, {}, b'{"color_background": "#fff"}')

    with outbound_session().get(f"{ehr.url}/style", stream=True) as response:
        assert response.raw.read(100) == b'{"color_background": "#fff"}'


@pytest.mark.django_db
def test_the_token_exchange_follows_no_redirect(servers) -> None:  # type: ignore[no-untyped-def]
    ehr, elsewhere = servers
    ehr.routes["/token"] = redirect(f"{elsewhere.url}/token", 307)  # 307 keeps the POST body: code and verifier
    site = EHRSite.objects.create(name="Redirecting", iss=f"{ehr.url}/fhir", client_id="hc")
    session = oauth_session(site, redirect_uri="https://app.example-health.org/smart/callback")

    with pytest.raises(requests.TooManyRedirects):
        session.fetch_token(f"{ehr.url}/token", code="c0de", code_verifier="v" * 43)

    assert ehr.hits == ["/token"] and elsewhere.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://localhost:8443/x",  # a name: resolved, and every address checked
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://169.254.169.254/latest/meta-data/",  # link-local: the cloud metadata service
        "https://[fe80::1]/x",
        "https://10.0.0.5/x",
        "https://192.168.1.10/x",
        "https://172.16.0.1/x",
        "https://100.64.0.1/x",  # shared address space
        "https://0.0.0.0/x",
        "https://224.0.0.1/x",
    ],
)
def test_production_refuses_https_to_loopback_link_local_and_private_addresses(settings, url: str) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    with pytest.raises(OutboundRefused, match=r"Refusing to contact .*: it resolves to a"):
        check_url(url)


def test_production_refuses_plain_http_even_to_this_machine_before_sending(servers, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    first, _ = servers
    first.routes["/style"] = (200, {"Content-Type": "application/json"}, b'{"color_background": "#ffffff"}')

    with pytest.raises(OutboundRefused):
        outbound_session().get(f"{first.url}/style")
    assert smart_style_properties(f"{first.url}/style") == {}  # an EHR-supplied smart_style_url on loopback

    assert first.hits == []


def test_production_allows_a_public_address_and_a_listed_intranet_ehr_but_never_link_local(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    check_url("https://93.184.215.14/fhir")  # public
    settings.OUTBOUND_PRIVATE_HOSTS = ["10.0.0.5", "169.254.169.254"]
    check_url("https://10.0.0.5/fhir")  # the hospital's own EHR, listed
    with pytest.raises(OutboundRefused, match="link-local"):
        check_url("https://169.254.169.254/latest/meta-data/")
    with pytest.raises(OutboundRefused, match="OUTBOUND_PRIVATE_HOSTS"):
        check_url("https://10.0.0.6/fhir")


def test_embedded_mode_keeps_http_to_loopback_and_https_anywhere(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = False
    for url in ("http://127.0.0.1:8000/sandbox/fhir", "http://localhost:1/x", "https://10.0.0.5/x"):
        check_url(url)
    with pytest.raises(OutboundRefused):
        check_url("http://10.0.0.5/x")
