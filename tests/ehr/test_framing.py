"""Framing inside the EHR (ADR 0005): CSP ``frame-ancestors`` per path and site, cookies' SameSite on https and
http, and the EHR style sheet (``/smart/style/<launch>.css``). No browser: Django's test client as the browser,
the sandbox EHR process as the EHR."""

import re
import secrets
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from healthcommerce.ehr import framing, style
from healthcommerce.ehr.models import EHRSite, Launch
from tests.conftest import complete_launch, sandbox_launch
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
EPIC = "https://epic.example.org"


def _csp(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def _launch(site: EHRSite) -> Launch:
    return Launch.objects.create(
        site=site,
        browser_key="0" * 64,
        state=secrets.token_urlsafe(32),
        code_verifier="v" * 64,
        nonce="n",
        launch_token="t",
        expires_at=timezone.now() + timedelta(hours=1),
    )


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def framed_site(db) -> EHRSite:  # type: ignore[no-untyped-def]
    # Port 9 on loopback: nothing listens, so discovery fails at once and the launch shows an error page.
    return EHRSite.objects.create(
        name="Framed", iss=f"http://127.0.0.1:{free_port()}/fhir", client_id="c", frame_origins=[EPIC]
    )


# --- CSP and X-Frame-Options per path and per site ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/healthz", "/admin/login/", "/o/not-a-launch/", "/sandbox/"])
def test_pages_outside_the_clinician_pages_cannot_be_framed(client, path):
    response = client.get(path)
    policy = _csp(response)
    assert policy["frame-ancestors"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]


def test_an_order_page_of_a_framed_site_may_be_framed_by_the_site_origins_only(client, framed_site):
    launch = _launch(framed_site)
    # Not this browser's launch: the page is a 404, but framed like the EHR shows it.
    response = client.get(f"/o/{launch.pk}/")
    assert response.status_code == 404
    assert _csp(response)["frame-ancestors"] == [EPIC]
    assert "X-Frame-Options" not in response


def test_the_launch_page_is_framed_by_the_site_of_its_iss(client, framed_site):
    response = client.get("/smart/launch", {"iss": framed_site.iss + "/", "launch": "x"})
    assert response.status_code == 502  # discovery failed: the error page still shows inside the EHR
    assert _csp(response)["frame-ancestors"] == [EPIC]
    assert "X-Frame-Options" not in response


def test_the_callback_is_framed_by_the_site_of_its_state(client, framed_site):
    launch = _launch(framed_site)
    response = client.get("/smart/callback", {"state": launch.state, "code": "c"})
    assert response.status_code == 400
    assert _csp(response)["frame-ancestors"] == [EPIC]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [{"iss": "https://unknown.example.org/fhir", "launch": "x"}, {}],
)
def test_an_unknown_or_missing_site_cannot_frame_the_launch(client, query):
    response = client.get("/smart/launch", query)
    assert _csp(response)["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY"


def test_a_site_without_frame_origins_or_an_unknown_launch_cannot_frame(client, framed_site):
    plain = EHRSite.objects.create(name="Plain", iss="https://plain.example.org/fhir", client_id="c")
    for path in (f"/o/{_launch(plain).pk}/", f"/o/{uuid.uuid4()}/", "/smart/callback?state=unknown"):
        response = client.get(path)
        assert _csp(response)["frame-ancestors"] == ["'none'"], path
        assert response["X-Frame-Options"] == "DENY", path


def test_a_framed_site_inactive_is_not_framed(client, framed_site):
    launch = _launch(framed_site)
    EHRSite.objects.filter(pk=framed_site.pk).update(is_active=False)
    assert _csp(client.get(f"/o/{launch.pk}/"))["frame-ancestors"] == ["'none'"]


def test_frame_origins_that_could_break_the_header_are_dropped():
    assert framing.clean_origins(
        [
            "https://EPIC.example.org/",
            "https://epic.example.org",
            "https://a.example.org; script-src *",
            "https://*.example.org",
            "'self'",
            "javascript:alert(1)",
            "https://ok.example.org:8443",
            "http://[::1]:8000",
            42,
        ]
    ) == ["https://epic.example.org", "https://ok.example.org:8443", "http://[::1]:8000"]
    assert framing.clean_origins("https://epic.example.org") == []


def test_a_site_whose_origins_are_all_invalid_is_not_framed(client, framed_site):
    EHRSite.objects.filter(pk=framed_site.pk).update(frame_origins=["https://a.example.org; script-src *"])
    response = client.get(f"/o/{_launch(framed_site).pk}/")
    assert _csp(response)["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY"


def test_the_authorize_post_page_may_post_to_the_ehr_authorization_endpoint(client, ehr_site, sandbox_ehr):
    ehr_site.quirks = {"authorize_post": True}
    ehr_site.save(update_fields=["quirks", "updated_at"])
    response = client.get("/smart/launch", sandbox_launch(sandbox_ehr, patient="pat014"))
    assert response.status_code == 200 and b'id="authorize-form"' in response.content
    assert _csp(response)["form-action"] == ["'self'", sandbox_ehr.base]
    assert _csp(client.get("/"))["form-action"] == ["'self'"]


@pytest.mark.django_db
def test_the_sandbox_frame_page_may_frame_the_app_and_nothing_frames_it(client, settings):
    settings.SANDBOX_APP_LAUNCH_URL = "https://app.example.org/smart/launch"
    response = client.get("/sandbox/frame", {"patient": "pat014", "practitioner": "pra1234", "request": "X/1"})
    assert response.status_code == 200
    policy = _csp(response)
    assert policy["frame-src"] == ["'self'", "https://app.example.org"] and policy["frame-ancestors"] == ["'none'"]
    assert b'id="app-frame"' in response.content
    assert b'src="/sandbox/launch?patient=pat014&amp;practitioner=pra1234&amp;request=X%2F1"' in response.content
    listing = client.get("/sandbox/", {"framed": "1"})
    assert b'name="framed" value="1"' in listing.content and b"Open apps in the whole window" in listing.content
    # The launch step shows inside that frame (same origin only).
    launch = client.get("/sandbox/launch", {"patient": "nobody"})
    assert _csp(launch)["frame-ancestors"] == ["'self'"] and launch["X-Frame-Options"] == "SAMEORIGIN"


# --- Cookies: SameSite=None; Secure only for a framed site over https ----------------------------------------------


class HttpsClient(Client):
    """Django's test client with every request (redirects included) over https."""

    def generic(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["secure"] = True
        return super().generic(*args, **kwargs)


def test_framed_site_over_https_gets_samesite_none_secure_cookies(ehr_site, sandbox_ehr, settings):
    ehr_site.frame_origins = [EPIC]
    ehr_site.save(update_fields=["frame_origins", "updated_at"])
    browser = HttpsClient()
    result = complete_launch(browser, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    session = result.response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["samesite"] == "None" and session["secure"] is True
    assert session.OutputString().endswith("; Partitioned")
    assert _csp(result.response)["frame-ancestors"] == [EPIC]
    form = browser.get(f"/o/{result.launch_id}/", follow=True)
    assert b'name="csrfmiddlewaretoken"' in form.content
    csrf = form.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["samesite"] == "None" and csrf["secure"] is True and "Partitioned" in csrf.OutputString()


def test_framed_site_over_http_keeps_lax_cookies(client, ehr_site, sandbox_ehr, settings):
    ehr_site.frame_origins = [EPIC]
    ehr_site.save(update_fields=["frame_origins", "updated_at"])
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    session = result.response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["samesite"] == "Lax" and not session["secure"] and "Partitioned" not in session.OutputString()
    form = client.get(f"/o/{result.launch_id}/", follow=True)
    assert form.cookies[settings.CSRF_COOKIE_NAME]["samesite"] == "Lax"


def test_a_site_that_is_not_framed_keeps_lax_cookies_over_https(ehr_site, sandbox_ehr, settings):
    browser = HttpsClient()
    result = complete_launch(browser, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert result.response.cookies[settings.SESSION_COOKIE_NAME]["samesite"] == "Lax"
    assert _csp(result.response)["frame-ancestors"] == ["'none'"]


# --- The EHR style sheet (SMART App Launch 2.2 "Styling") ----------------------------------------------------------


def test_only_real_colours_lengths_and_plain_fonts_are_kept():
    properties = style.style_properties(
        {
            "color_background": "#F6F7F9",
            "color_highlight": "rgb(31 111 235 / 50%)",
            "color_text": "red; } body { background: url(https://evil.example/x) ",
            "color_border": "var(--x)",
            "color_error": "hsla(0, 80%, 40%, .9)",
            "color_success": "#12345",
            "dim_border_radius": "6px",
            "dim_font_size": "expression(alert(1))",
            "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
            "font_family_heading": "Arial; } * { color: red",
            "font_family": "Comic Sans MS",  # font_family_body wins
            "color_unknown": "#000",
        }
    )
    assert properties == {
        "--bg": "#F6F7F9",
        "--accent": "rgb(31 111 235 / 50%)",
        "--bad": "hsla(0, 80%, 40%, .9)",
        "--radius": "6px",
        "--font": 'system-ui, -apple-system, "Segoe UI", "Roboto", sans-serif',
    }
    assert style.style_properties(["#000"]) == {}
    assert style.style_properties({"font_family": "Segoe UI"}) == {"--font": '"Segoe UI"'}
    sheet = style.style_sheet(properties)
    assert sheet.count("{") == 1 and sheet.count("}") == 1 and "url(" not in sheet


def _style_launch(client, ehr_site, sandbox_ehr) -> Launch:  # type: ignore[no-untyped-def]
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    return Launch.objects.get(pk=result.launch_id)


class _Counter:
    """Counts the outbound sessions ``healthcommerce.ehr.style`` opens (each one is one fetch); real sessions."""

    def __init__(self, real):  # type: ignore[no-untyped-def]
        self.real, self.calls = real, 0

    def __call__(self, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.real(**kwargs)


def test_the_ehr_style_becomes_css_variables_and_is_cached(client, ehr_site, sandbox_ehr, monkeypatch):
    launch = _style_launch(client, ehr_site, sandbox_ehr)
    assert launch.smart_style_url.endswith("/sandbox/smart-style.json")
    counter = _Counter(style.outbound_session)
    monkeypatch.setattr(style, "outbound_session", counter)

    page = client.get(f"/o/{launch.pk}/", follow=True)
    assert f'href="/smart/style/{launch.pk}.css"'.encode() in page.content

    first = client.get(f"/smart/style/{launch.pk}.css")
    assert first.status_code == 200 and first["Content-Type"].startswith("text/css")
    css = first.content.decode()
    assert "--accent: #1f6feb;" in css and "--bg: #f6f7f9;" in css and "--radius: 6px;" in css
    assert "--font:" in css and "'" not in css  # re-quoted
    assert "--modal" not in css  # color_modal_backdrop has no use here
    second = client.get(f"/smart/style/{launch.pk}.css")
    assert second.content == first.content
    assert counter.calls == 1  # the second request was served from the cache


def test_a_style_fetch_failure_means_default_colours(client, ehr_site, sandbox_ehr, monkeypatch, caplog):
    launch = _style_launch(client, ehr_site, sandbox_ehr)
    Launch.objects.filter(pk=launch.pk).update(smart_style_url=f"http://127.0.0.1:{free_port()}/style.json")
    counter = _Counter(style.outbound_session)
    monkeypatch.setattr(style, "outbound_session", counter)
    with caplog.at_level("INFO", logger="healthcommerce.ehr.style"):
        response = client.get(f"/smart/style/{launch.pk}.css")
        again = client.get(f"/smart/style/{launch.pk}.css")
    assert response.status_code == 200 and again.status_code == 200
    assert "--" not in response.content.decode().replace("/*", "")  # no variable set
    assert counter.calls == 1  # the failure is cached too, briefly
    assert "smart_style_url not used: ConnectionError" in caplog.text and "127.0.0.1" not in caplog.text


@pytest.mark.parametrize(
    ("path", "max_bytes", "reason"),
    [
        ("/sandbox/smart-style.json", 100, "style_too_large"),  # the real document, over a lowered cap
        ("/sandbox/fhir/Patient/pat014", style.MAX_BYTES, "style_status"),  # 401 without a token
        ("/sandbox/fhir/metadata", style.MAX_BYTES, ""),  # JSON, but not a style document: nothing usable
    ],
)
def test_a_style_document_too_large_or_refused_is_not_used(  # type: ignore[no-untyped-def]
    client, ehr_site, sandbox_ehr, caplog, monkeypatch, path, max_bytes, reason
):
    monkeypatch.setattr(style, "MAX_BYTES", max_bytes)
    launch = _style_launch(client, ehr_site, sandbox_ehr)
    Launch.objects.filter(pk=launch.pk).update(smart_style_url=f"{sandbox_ehr.base}{path}")
    with caplog.at_level("INFO", logger="healthcommerce.ehr.style"):
        response = client.get(f"/smart/style/{launch.pk}.css")
    assert response.status_code == 200 and "--accent" not in response.content.decode()
    assert "--" not in response.content.decode().replace("/*", "")
    if reason:
        assert f"smart_style_url not used: {reason}" in caplog.text


def test_the_style_of_another_browsers_launch_is_not_served(client, ehr_site, sandbox_ehr):
    launch = _style_launch(client, ehr_site, sandbox_ehr)
    response = Client().get(f"/smart/style/{launch.pk}.css")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/css")
    assert "--accent" not in response.content.decode()


# --- No inline script or style anywhere ------------------------------------------------------------------------


INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+\s*=", re.IGNORECASE)


def test_no_template_has_inline_script_style_or_handlers():
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INLINE.search(line)
    ]
    assert found == []
