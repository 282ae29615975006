"""``manage.py check --deploy`` refuses a commerce backend that cannot work: missing settings, a URL the outbound
rules refuse, a malformed status webhook secret (``healthcommerce/fulfillment/checks.py``)."""

import base64
from typing import Any

from healthcommerce.fulfillment.checks import commerce_backend_check
from tests.fulfillment.conftest import backend_options_set

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def ids(settings: Any) -> list[str]:
    return [message.id for message in commerce_backend_check()]


def test_the_local_backend_needs_nothing(settings: Any) -> None:
    settings.COMMERCE_BACKEND = "local"
    assert ids(settings) == []


def test_an_unknown_backend_or_missing_medusa_settings_fail(settings: Any) -> None:
    settings.COMMERCE_BACKEND = "shopify"
    assert ids(settings) == ["healthcommerce.E101"]
    settings.COMMERCE_BACKEND = "medusa"
    backend_options_set(settings, "medusa", URL="", API_KEY="")
    messages = commerce_backend_check()
    assert [m.id for m in messages] == ["healthcommerce.E101"] and "MEDUSA_URL" in messages[0].msg


def test_a_plain_http_url_to_another_host_fails(settings: Any) -> None:
    settings.COMMERCE_BACKEND = "medusa"
    backend_options_set(settings, "medusa", URL="http://medusa.example", API_KEY="sk_test")
    assert ids(settings) == ["healthcommerce.E102"]
    backend_options_set(settings, "medusa", URL="https://medusa.example")
    assert ids(settings) == []
    settings.COMMERCE_BACKEND = "webhook"  # its backend refuses the URL itself
    backend_options_set(settings, "webhook", URL="http://supplier.example/hooks", SECRET=SECRET)
    messages = commerce_backend_check()
    assert [m.id for m in messages] == ["healthcommerce.E101"] and "https" in messages[0].msg
    backend_options_set(settings, "webhook", URL="https://supplier.example/hooks")
    assert ids(settings) == []


def test_a_malformed_status_secret_fails_without_echoing_it(settings: Any) -> None:
    settings.COMMERCE_BACKEND = "local"
    backend_options_set(settings, "webhook", STATUS_SECRET="hunter2-not-a-secret")
    messages = commerce_backend_check()
    assert [m.id for m in messages] == ["healthcommerce.E103"] and "hunter2" not in messages[0].msg
