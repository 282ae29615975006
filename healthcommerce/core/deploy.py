"""What production refuses, and how the shared cache is found; pure functions the settings module calls.

Two modes (docs/deploy.md, docs/adr/0003-embedded-and-production-modes.md):
- *embedded* (``SANDBOX_ENABLED=true`` or ``DEBUG=true``: ``make demo`` and the tests) allows SQLite, kombu's
  filesystem broker, a cache in a local folder and the console email backend, so nothing needs a server;
- *production* (everything else) refuses to start on any of them, one line per problem naming the setting.

Django's deployment checklist and ``manage.py check --deploy`` cover the HTTP-level settings; these checks
cover what the checklist cannot know: that a patient would never get an email, or that two web processes
would not share state.
"""

import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEV_SECRET_KEY = "insecure-dev-only-change-me"
MIN_SECRET_KEY_LENGTH = 50
# Email backends that deliver nothing to a patient.
UNDELIVERING_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
}
# Exit status for a configuration error (sysexits.h EX_CONFIG).
EX_CONFIG = 78


@dataclass(frozen=True)
class ProductionConfig:
    """The settings production checks, as plain values (so the check runs before Django is set up)."""

    secret_key: str
    app_base_url: str
    email_backend: str
    database_engine: str
    broker_url: str
    cache_backend: str


def production_problems(config: ProductionConfig) -> list[str]:
    """Return one line per setting that makes ``config`` unfit for production; empty when it is fit.

    Each line names the setting and says what to set. Source: Django's deployment checklist (SECRET_KEY),
    SMART App Launch 2.2 "Best practices" (TLS for the redirect URI), docs/deploy.md (the processes share
    PostgreSQL, Redis and a real mail relay).
    """
    problems = []
    if config.secret_key == DEV_SECRET_KEY or len(config.secret_key) < MIN_SECRET_KEY_LENGTH:
        problems.append(
            f"SECRET_KEY is the development default or shorter than {MIN_SECRET_KEY_LENGTH} characters: set it to a "
            "long random value (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if urlsplit(config.app_base_url).scheme != "https":
        problems.append(
            f"APP_BASE_URL must be https (it is {config.app_base_url!r}): it builds the SMART redirect_uri and "
            "patient links."
        )
    if config.email_backend in UNDELIVERING_EMAIL_BACKENDS:
        problems.append(
            f"EMAIL_BACKEND is {config.email_backend.rsplit('.', 2)[-2]}: patients would never get their purchase "
            "links; set EMAIL_URL (for example smtp+tls://user:password@relay.example.org:587)."
        )
    if config.database_engine.endswith("sqlite3"):
        problems.append("DATABASE_URL is SQLite: set it to PostgreSQL (postgres://user:password@host:5432/name).")
    if config.broker_url.startswith("filesystem://"):
        problems.append(
            "CELERY_BROKER_URL is the filesystem transport: set it to Redis (redis://host:6379/0); workers on "
            "other hosts could not see the queue."
        )
    elif config.cache_backend.endswith(("LocMemCache", "FileBasedCache")):
        problems.append(
            "CACHE_URL is not set and the broker is not Redis: set CACHE_URL (redis://host:6379/1) so rate limits "
            "and caches hold across processes."
        )
    return problems


def refuse_to_start(problems: list[str]) -> None:
    """Write each problem on its own line to stderr and exit with ``EX_CONFIG`` (78); never returns."""
    for problem in problems:
        sys.stderr.write(f"healthcommerce refuses to start (DEBUG is off): {problem}\n")
    raise SystemExit(EX_CONFIG)


def redis_cache_url(broker_url: str) -> str:
    """Return the cache URL for a Redis broker URL: same server, the next database number; ``""`` otherwise.

    ``redis://h:6379/0`` -> ``redis://h:6379/1``. The cache gets a database of its own so that clearing the
    cache (``FLUSHDB``) can never drop queued Celery tasks.
    """
    parts = urlsplit(broker_url)
    if parts.scheme not in ("redis", "rediss"):
        return ""
    db_text = parts.path.strip("/") or "0"
    db = int(db_text) if db_text.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))
