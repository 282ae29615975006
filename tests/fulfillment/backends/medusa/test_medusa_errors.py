"""How Medusa's HTTP answers map to temporary and permanent backend errors (no server needed)."""

import pytest
import requests

from healthcommerce.fulfillment.backends.base import PermanentBackendError, TemporaryBackendError
from healthcommerce.fulfillment.backends.medusa.client import error_for_response, retry_after_seconds


def answer(status: int, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = b'{"type": "invalid_data", "message": "Camila Lopez, 7525 Colshire Dr"}'
    return response


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_temporary(status: int) -> None:
    error = error_for_response(answer(status))
    assert isinstance(error, TemporaryBackendError)
    assert error.code == f"http_{status}"


def test_a_429_carries_retry_after_in_seconds() -> None:
    error = error_for_response(answer(429, **{"Retry-After": "7"}))
    assert isinstance(error, TemporaryBackendError)
    assert (error.code, error.retry_after) == ("http_429", 7.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_a_4xx_is_permanent_and_never_echoes_the_body(status: int) -> None:
    error = error_for_response(answer(status))
    assert isinstance(error, PermanentBackendError)
    assert error.code == f"http_{status}"
    assert "Camila" not in str(error) and "Colshire" not in error.message


def test_a_2xx_is_no_error() -> None:
    assert error_for_response(answer(200)) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
