"""The app's WSGI application under pyinstrument, for ``make bench BENCH_PROFILE=1`` (issue 22): each request of a
clinician page is sampled on its own thread (pyinstrument profiles the thread that started it; the pre-fill's
concurrent FHIR reads run on threads of their own and show as the wait for them) and the samples are combined per
page. Every ``FLUSH_EVERY`` requests of a page, each page's combined profile is written to
``BENCH_PROFILE_DIR/<page>-<pid>``: ``.txt`` (pyinstrument's call tree, wall time), ``.flat.txt`` (self time per
function) and ``.json`` (the session, which ``benchmarks/profile_summary.py`` reads).

Never imported by the product: the bench starts gunicorn with ``benchmarks.profiled_wsgi:application`` instead of
the Procfile's ``healthcommerce.wsgi``.
"""

import os
import re
import threading
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

from healthcommerce.wsgi import application as app

OUT = Path(os.environ.get("BENCH_PROFILE_DIR", "benchmarks/results/profile"))
FLUSH_EVERY = 10
INTERVAL = 0.0005  # seconds between samples
_PAGES = [
    ("launch", "GET", re.compile(r"^/smart/launch")),
    ("callback", "GET", re.compile(r"^/smart/callback")),
    ("prefill", "GET", re.compile(r"^/o/[^/]+/$")),
    ("order_form", "GET", re.compile(r"^/o/[^/]+/orders/[^/]+/$")),
    ("sign", "POST", re.compile(r"^/o/[^/]+/orders/[^/]+/$")),
]
_sessions: dict[str, Session] = {}
_counts: dict[str, int] = {}
_lock = threading.Lock()


def _page(environ: dict[str, Any]) -> str | None:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
    return next((name for name, verb, pattern in _PAGES if verb == method and pattern.match(path)), None)


def _write(name: str, session: Session) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"{name}-{os.getpid()}"
    stem.with_suffix(".txt").write_text(ConsoleRenderer(unicode=True).render(session))
    flat = ConsoleRenderer(unicode=True, flat=True, flat_time="self")
    stem.with_suffix(".flat.txt").write_text(flat.render(session))
    session.save(str(stem.with_suffix(".json")))


def application(environ: dict[str, Any], start_response: Any) -> Any:
    """``healthcommerce.wsgi.application``, sampled when the request is a clinician page."""
    name = _page(environ)
    if name is None:
        return app(environ, start_response)
    profiler = Profiler(interval=INTERVAL, async_mode="disabled")
    profiler.start()
    try:
        response = app(environ, start_response)
        body = b"".join(response)  # the response is rendered inside the sample
        if hasattr(response, "close"):
            response.close()
    finally:
        session = profiler.stop()
    with _lock:
        _sessions[name] = Session.combine(_sessions[name], session) if name in _sessions else session
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] % FLUSH_EVERY == 0:
            _write(name, _sessions[name])
    return [body]
