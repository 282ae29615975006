"""A request id on every log line, taken from a trusted proxy only, carried into Celery tasks
(docs/reliability.md "Integration health")."""

import io
import json
import logging
import re
from types import SimpleNamespace

import pytest
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.test import Client
from django.test.utils import override_settings

from healthcommerce.core.requestid import TASK_HEADER, RequestIdFilter, request_id, request_id_reset, request_id_set

pytestmark = pytest.mark.django_db
OFFERED = "proxy-req-0123456789"


def test_a_request_gets_a_fresh_id_and_answers_with_it(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz", HTTP_X_REQUEST_ID=OFFERED)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])  # the client is not a trusted proxy


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_a_trusted_proxys_id_is_kept_and_a_malformed_one_is_not() -> None:
    proxy = Client(REMOTE_ADDR="10.1.2.3")
    assert proxy.get("/healthz", HTTP_X_REQUEST_ID=OFFERED)["X-Request-ID"] == OFFERED
    assert proxy.get("/healthz", HTTP_X_REQUEST_ID="bad id\n<script>")["X-Request-ID"] != "bad id\n<script>"


def test_every_log_line_of_a_request_carries_its_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    logging.getLogger("django.request").addHandler(handler)
    try:
        response = Client().get("/no-such-page/")
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert stream.getvalue().startswith(response["X-Request-ID"] + " Not Found")


def test_the_id_travels_in_the_task_headers_and_is_restored_in_the_worker() -> None:
    token = request_id_set(OFFERED)
    headers: dict[str, str] = {}
    try:
        before_task_publish.send(sender="healthcommerce.outbox.tasks.deliver", headers=headers, body=None)
    finally:
        request_id_reset(token)
    assert headers == {TASK_HEADER: OFFERED}
    assert request_id() is None

    class Task:  # what Celery passes: the task, whose ``request`` holds the message's headers
        def __init__(self, **request: object) -> None:
            self.request = SimpleNamespace(**request)

    task = Task(**headers)
    task_prerun.send(sender=task, task=task, task_id="t1", args=(), kwargs={})
    assert request_id() == OFFERED
    task_postrun.send(sender=task, task=task, task_id="t1", args=(), kwargs={}, retval=None, state="SUCCESS")
    assert request_id() is None
    fresh = Task(headers=None)  # published by beat, outside a request
    task_prerun.send(sender=fresh, task=fresh, task_id="t2", args=(), kwargs={})
    assert re.fullmatch(r"[0-9a-f]{32}", request_id() or "")
    request_id_set(None)


def test_json_lines_carry_the_request_id(settings) -> None:  # type: ignore[no-untyped-def]
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    config = settings.LOGGING["formatters"]["json"]
    handler.setFormatter(JsonFormatter(config["fmt"], rename_fields=config["rename_fields"]))
    log = logging.getLogger("healthcommerce.test")
    log.addHandler(handler)
    token = request_id_set(OFFERED)
    try:
        log.warning("outbox retry subscriber=%s", "fulfillment.submit")
    finally:
        request_id_reset(token)
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == OFFERED and line["level"] == "WARNING"
    assert line["message"] == "outbox retry subscriber=fulfillment.submit" and line["logger"] == "healthcommerce.test"
