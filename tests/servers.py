"""Real processes for tests: gunicorn, Celery workers and beat, on free loopback ports.

The commands are the Procfile's own lines, run by bash as honcho runs them with this virtualenv first on
``PATH``, so a test exercises exactly what ``make serve`` and ``make demo`` run.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# What a child process must not inherit from the test run: it gets its own settings module and services.
PRIVATE_ENV = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "DJANGO_SETTINGS_MODULE",
    "CELERY_BROKER_DIR",
    "DJANGO_ALLOW_ASYNC_UNSAFE",  # the browser test's, for its own thread only
)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    """Return this process's environment without ``PRIVATE_ENV``, with ``healthcommerce.settings``, this
    interpreter's folder first on ``PATH`` (gunicorn, celery), and ``overrides``."""
    env = {key: value for key, value in os.environ.items() if key not in PRIVATE_ENV}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The processes share this one's database, so they share its field encryption keys (not their HC_VAR_DIR's).
    keys = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    common = {"DJANGO_SETTINGS_MODULE": "healthcommerce.settings", "PATH": path, "FIELD_ENCRYPTION_KEYS": keys}
    return env | common | overrides


def current_database_url() -> str:
    """Return a ``DATABASE_URL`` for the database pytest-django is using now (SQLite file or PostgreSQL)."""
    info = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{info['NAME']}"
    user = info.get("USER") or "postgres"
    password = f":{info['PASSWORD']}" if info.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{info.get('HOST') or '127.0.0.1'}:{info.get('PORT') or 5432}/{info['NAME']}"


def procfile_command(process: str) -> list[str]:
    """Return the Procfile's line for ``process`` (``web``, ``worker``, ``beat``) as a bash command.

    Raises ``LookupError`` when the Procfile has no such process.
    """
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and not line.startswith("#") and name.strip() == process:
            return ["bash", "-c", f"exec {command.strip()}"]  # exec: our SIGTERM reaches gunicorn or celery
    raise LookupError(f"no {process!r} in the Procfile")


def gunicorn_command() -> list[str]:
    """The Procfile's ``web`` command; bind, workers and threads come from ``WEB_*`` in the environment."""
    return procfile_command("web")


def wait_http(
    url: str, proc: subprocess.Popen, *, seconds: float = 60, log: Path | None = None, verify: bool | str = True
) -> None:
    """Poll ``url`` until it answers; raise ``RuntimeError`` (with the log's tail) if ``proc`` exits or times out.

    ``verify``: as ``requests``' (a CA file for a test certificate, ``False`` to not check it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            requests.get(url, timeout=2, verify=verify)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


@contextmanager
def running(
    cmd: list[str],
    env: Mapping[str, str],
    *,
    log: Path | None = None,
    ready_url: str | None = None,
    verify: bool | str = True,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in the repo with ``env`` until the block ends (SIGTERM, then SIGKILL after 20 s).

    Output goes to ``log`` (or nowhere). With ``ready_url`` the block starts once that URL answers (checked
    with ``verify``, as in ``wait_http``).
    """
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        if ready_url:
            wait_http(ready_url, proc, log=log, verify=verify)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if log:
            out.close()  # type: ignore[union-attr]


def web_env(
    env: Mapping[str, str], *, port: int, workers: int = 1, threads: int = 8, tls: "TestCertificate | None" = None
) -> dict[str, str]:
    """Return ``env`` with gunicorn listening on ``127.0.0.1:port`` with ``workers`` x ``threads``.

    With ``tls`` gunicorn itself serves https with that certificate (``--certfile``/``--keyfile`` through
    ``GUNICORN_CMD_ARGS``, which gunicorn applies over its config file).
    """
    extra = {"GUNICORN_CMD_ARGS": f"--certfile={tls.certfile} --keyfile={tls.keyfile}"} if tls else {}
    return (
        dict(env)
        | {
            "WEB_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
        }
        | extra
    )


@dataclass(frozen=True)
class TestCertificate:
    """A self-signed certificate for ``127.0.0.1`` and ``localhost``: PEM files ``certfile`` and ``keyfile``."""

    __test__ = False  # not a pytest test class

    certfile: Path
    keyfile: Path


def self_signed_certificate(folder: Path) -> TestCertificate:
    """Write a self-signed certificate (EC P-256, valid one day, for ``127.0.0.1``, ``::1`` and ``localhost``)
    and its key into ``folder``; for tests that need https, never for anything else."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "healthcommerce test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    return TestCertificate(certfile=certfile, keyfile=keyfile)


@dataclass
class AppCluster:
    """The app as production runs it: gunicorn instances at ``urls``, Celery workers and one beat.

    ``env`` is what every process got; ``mail_dir`` holds the emails the file backend wrote; ``logs`` the
    processes' output (``web-N.log``, ``worker-N.log``, ``beat.log``).
    """

    urls: list[str]
    env: dict[str, str]
    mail_dir: Path
    logs: Path

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of every process log, for a failure message."""
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in sorted(self.logs.glob("*.log")))


@contextmanager
def app_cluster(
    tmp: Path,
    *,
    ports: list[int],
    workers: int = 1,
    broker_url: str = "",
    threads: int = 8,
    tls: TestCertificate | None = None,
    **extra_env: str,
) -> Iterator[AppCluster]:
    """Run gunicorn on each of ``ports``, ``workers`` Celery workers and one beat on the test database.

    ``broker_url`` empty: a filesystem broker in ``tmp/broker`` of its own. ``APP_BASE_URL`` is the first
    instance (as behind a load balancer, every instance has the same public URL). With ``tls`` gunicorn serves
    https itself (``urls`` are ``https://``); ``SECURE_COOKIES`` is up to the caller. Stops everything on exit.
    """
    logs, mail_dir = tmp / "logs", tmp / "mail"
    logs.mkdir(parents=True, exist_ok=True)
    urls = [f"{'https' if tls else 'http'}://127.0.0.1:{port}" for port in ports]
    env = base_env(
        SANDBOX_ENABLED="true",
        DATABASE_URL=current_database_url(),
        CELERY_BROKER_URL=broker_url or "filesystem://",
        CELERY_BROKER_DIR=str(tmp / "broker"),
        HC_VAR_DIR=str(tmp / "var"),
        APP_BASE_URL=urls[0],
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail_dir),
        **extra_env,
    )
    with ExitStack() as stack:
        for number, (port, url) in enumerate(zip(ports, urls, strict=True), 1):
            stack.enter_context(
                running(
                    gunicorn_command(),
                    web_env(env, port=port, threads=threads, tls=tls),
                    log=logs / f"web-{number}.log",
                    ready_url=f"{url}/healthz",
                    verify=str(tls.certfile) if tls else True,
                )
            )
        for number in range(1, workers + 1):
            # PORT names the worker node (worker-<PORT>@host), as honcho's PORT does.
            worker_env = env | {"PORT": str(number), "WORKER_CONCURRENCY": "2"}
            stack.enter_context(running(procfile_command("worker"), worker_env, log=logs / f"worker-{number}.log"))
        stack.enter_context(running(procfile_command("beat"), env, log=logs / "beat.log"))
        yield AppCluster(urls=urls, env=env, mail_dir=mail_dir, logs=logs)


def isolated_broker_url(db: int) -> str:
    """Return the test run's Redis server with database ``db`` (emptied first), or ``""`` when the run has no Redis.

    Processes started by a test get a broker database of their own (and the cache the next one), so they never
    consume tasks that other tests published, and nothing they queue outlives the test.
    """
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return ""
    import redis

    url = urlunsplit(urlsplit(settings.CELERY_BROKER_URL)._replace(path=f"/{db}"))
    redis.Redis.from_url(url, socket_timeout=5).flushdb()
    return url
