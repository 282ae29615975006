"""gunicorn's access log keeps authorization codes, state and purchase-link tokens out (gunicorn_conf.py)."""

from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from healthcommerce import gunicorn_conf


def _line(path: str, query: str = "") -> str:
    logger = gunicorn_conf.AccessLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{path}?{query}" if query else path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", sent=10, headers=[("X-Request-ID", "0123456789abcdef")])
    atoms = logger.atoms(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=12))
    return str(gunicorn_conf.access_log_format % SafeAtoms(atoms))  # as gunicorn's Logger.access does


def test_the_callback_is_logged_without_its_code_and_state() -> None:
    line = _line("/smart/callback", "code=SECRETCODE&state=SECRETSTATE")

    assert line == '127.0.0.1 "GET /smart/callback" 200 10 12ms 0123456789abcdef'


def test_a_purchase_link_token_is_cut_out_of_the_path() -> None:
    line = _line("/p/CJLRlBuof-YbmL-w9-6b6l3HjXxDIdhRf_fWBH3h8UQ/confirm/")

    assert line == '127.0.0.1 "GET /p/<token>/confirm/" 200 10 12ms 0123456789abcdef'


def test_the_defaults_are_threads_no_control_socket_and_no_recycling() -> None:
    assert gunicorn_conf.worker_class == "gthread"
    assert gunicorn_conf.control_socket_disable is True
    assert gunicorn_conf.max_requests == 0
