"""The authorization endpoint: SMART EHR launch checks, PKCE and RFC 6749 error redirects."""

from django.test import Client

from healthcommerce.sandbox.models import SandboxClient, SandboxLaunch
from tests.sandbox.helpers import REDIRECT_URI, SmartApp, query_of


def test_it_redirects_with_a_code_and_the_state(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), state="st-123")

    params = query_of(response)
    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert params["state"] == "st-123"
    assert len(params["code"]) >= 40


def test_it_accepts_a_post(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), method="post")

    assert response.status_code == 302
    assert "code" in query_of(response)


def test_it_accepts_any_port_on_a_registered_loopback_redirect_uri(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(
        client_id="public-app", launch=app.launch(), redirect_uri="http://127.0.0.1:51234/smart/callback"
    )

    assert response["Location"].startswith("http://127.0.0.1:51234/smart/callback?code=")


def test_it_marks_the_launch_used(app: SmartApp, public_client: SandboxClient) -> None:
    launch = app.launch()

    app.authorize(client_id="public-app", launch=launch)

    assert SandboxLaunch.objects.get(value=launch).used_at is not None


def test_it_refuses_a_replayed_launch(app: SmartApp, public_client: SandboxClient) -> None:
    launch = app.launch()
    app.authorize(client_id="public-app", launch=launch)

    response = app.authorize(client_id="public-app", launch=launch, state="again")

    params = query_of(response)
    assert params["error"] == "invalid_request"
    assert "launch" in params["error_description"]
    assert params["state"] == "again"
    assert "code" not in params


def test_it_refuses_an_unknown_launch(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch="made-up")

    assert query_of(response)["error"] == "invalid_request"


def test_it_refuses_a_wrong_aud(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), aud="https://evil.example/fhir")

    params = query_of(response)
    assert response.status_code == 302
    assert params["error"] == "invalid_request"
    assert "aud" in params["error_description"]


def test_a_refused_request_leaves_the_launch_usable(app: SmartApp, public_client: SandboxClient) -> None:
    launch = app.launch()
    app.authorize(client_id="public-app", launch=launch, aud="https://evil.example/fhir")

    response = app.authorize(client_id="public-app", launch=launch)

    assert "code" in query_of(response)


def test_it_refuses_plain_pkce(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(
        client_id="public-app", launch=app.launch(), code_challenge=app.verifier, code_challenge_method="plain"
    )

    params = query_of(response)
    assert params["error"] == "invalid_request"
    assert "S256" in params["error_description"]


def test_it_refuses_a_request_without_code_challenge(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(
        client_id="public-app", launch=app.launch(), code_challenge=None, code_challenge_method=None
    )

    assert query_of(response)["error"] == "invalid_request"


def test_it_refuses_a_request_without_state(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), state=None)

    assert query_of(response)["error"] == "invalid_request"


def test_it_refuses_an_unsupported_response_type(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), response_type="token")

    assert query_of(response)["error"] == "unsupported_response_type"


def test_it_shows_an_error_page_for_an_unregistered_redirect_uri(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="public-app", launch=app.launch(), redirect_uri="https://evil.example/cb")

    assert response.status_code == 400
    assert b"Authorization refused" in response.content
    assert not response.has_header("Location")


def test_it_shows_an_error_page_for_an_unknown_client(app: SmartApp, public_client: SandboxClient) -> None:
    response = app.authorize(client_id="nobody", launch=app.launch())

    assert response.status_code == 400
    assert not response.has_header("Location")


def test_it_refuses_plain_http_to_a_host_that_is_not_loopback(public_client: SandboxClient) -> None:
    app = SmartApp(Client())  # host "testserver" over http

    response = app.authorize(client_id="public-app", launch="x")

    assert response.status_code == 400
    assert not response.has_header("Location")
