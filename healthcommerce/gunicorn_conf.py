"""gunicorn settings for the web process (``gunicorn -c healthcommerce/gunicorn_conf.py healthcommerce.wsgi``).

Read from the environment (docs/deploy.md):
- ``WEB_BIND``: ``host:port`` to listen on (default ``127.0.0.1:8000``; a proxy in front terminates TLS);
- ``WEB_CONCURRENCY``: worker processes (default 2); ``WEB_THREADS``: threads per worker (default 8);
- ``TRUSTED_PROXIES``: the proxies whose ``X-Forwarded-*`` headers gunicorn believes (as in Django settings).

Threads, not more processes: a launch waits on the EHR (token exchange, four concurrent FHIR reads), so each
request mostly sleeps on the network. With the sandbox EHR mounted in the same server (``make demo``) a
launch also calls this server back, which a single-threaded worker would deadlock on.
"""

import os
import re
from typing import Any

from gunicorn.glogging import Logger

# Only token-shaped segments (32+ URL-safe characters): /p/verify/, /p/confirm/ and /p/track/ stay readable.
_TOKEN_PATH = re.compile(r"^/p/[A-Za-z0-9_-]{32,128}")


class AccessLogger(Logger):
    """gunicorn's logger, with a patient link's token cut out of the logged path (``/p/<token>/...``)."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """Return gunicorn's log atoms with ``U`` (the path) redacted."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["U"] = _TOKEN_PATH.sub("/p/<token>", str(atoms.get("U") or ""))
        return atoms


bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
# Seconds: a request longer than this is killed (the EHR read timeout is 10 s).
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycling workers after N requests (WEB_MAX_REQUESTS) is off by default: gthread workers reset connections
# in flight while they recycle (gunicorn issue #3038), which a POSTed sign-off would not survive.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "127.0.0.1,::1") or "127.0.0.1,::1"
# gunicorn's control socket has one default path per user, which several instances on a host would fight over;
# manage the process with signals (HUP reloads, TERM stops) or the process supervisor instead.
control_socket_disable = True
logger_class = AccessLogger
accesslog = "-"
# The path without its query string: callback codes and state never reach the access log; no link tokens.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def child_exit(server: Any, worker: Any) -> None:
    """Let prometheus_client drop a dead worker's live gauges in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
    docs/deploy.md "Metrics"); its counters stay summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


_seal_timer: Any = None


def post_worker_init(worker: Any) -> None:
    """Seal the worker's audit rows on a timer (``AuditSealTimer``, every ``AUDIT_SEAL_INTERVAL`` seconds) instead
    of after each commit: the hash chain's sealing is off the request path (ADR 0015, issue 22). Then do what the
    first request would otherwise pay for (``core.warmup``)."""
    global _seal_timer
    from django.conf import settings

    from healthcommerce.audit.services import AuditSealTimer
    from healthcommerce.core.warmup import warm

    _seal_timer = AuditSealTimer(settings.AUDIT_SEAL_INTERVAL)
    _seal_timer.start()
    worker.log.info("warmed up in %.2f s", warm())


def worker_exit(server: Any, worker: Any) -> None:
    """Seal what the worker wrote since the timer's last run before it exits."""
    if _seal_timer is not None:
        _seal_timer.stop()
