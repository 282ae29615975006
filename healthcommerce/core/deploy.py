"""What production refuses, and how the shared cache is found; pure functions the settings module calls.

Two modes (docs/deploy.md, docs/adr/0003-embedded-and-production-modes.md):
- *embedded* (``SANDBOX_ENABLED=true`` or ``DEBUG=true``: ``make demo`` and the tests) allows SQLite, kombu's
  filesystem broker, a cache in a local folder and the console email backend, so nothing needs a server;
- *production* (everything else) refuses to start on any of them, one line per problem naming the setting.

Django's deployment checklist and ``manage.py check --deploy`` cover the HTTP-level settings; these checks
cover what the checklist cannot know: that a patient would never get an email, or that two web processes
would not share state.
"""

import importlib.util
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
# SMS backends that text nobody; the console and file ones would also write patients' numbers and links to logs or
# disk. An empty SMS_BACKEND is fine: texts are optional (docs/adr/0010).
UNDELIVERING_SMS_BACKENDS = {
    "sms.backends.console.SmsBackend",
    "sms.backends.filebased.SmsBackend",
    "sms.backends.locmem.SmsBackend",
    "sms.backends.dummy.SmsBackend",
}
TWILIO_SMS_BACKEND = "sms.backends.twilio.SmsBackend"
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
    sms_backend: str = ""
    sms_from: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""


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
    return problems + sms_problems(config)


def sms_problems(config: ProductionConfig) -> list[str]:
    """Return one line per SMS setting unfit for production; empty when SMS is off (``SMS_BACKEND`` empty) or fit.

    A backend that texts nobody is refused (console and file ones would log patients' numbers and links); the
    Twilio backend (django-sms ``sms.backends.twilio``) needs ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``,
    ``SMS_FROM`` and the ``twilio`` package.
    """
    if not config.sms_backend:
        return []
    if config.sms_backend in UNDELIVERING_SMS_BACKENDS:
        return [
            f"SMS_BACKEND is {config.sms_backend.rsplit('.', 2)[-2]}: it texts nobody and may log patients' numbers; "
            "set it to a provider (sms.backends.twilio.SmsBackend) or leave it empty to send email only."
        ]
    problems = []
    if config.sms_backend == TWILIO_SMS_BACKEND:
        missing = [
            name
            for name, value in (
                ("TWILIO_ACCOUNT_SID", config.twilio_account_sid),
                ("TWILIO_AUTH_TOKEN", config.twilio_auth_token),
            )
            if not value
        ]
        if missing:
            names = " and ".join(missing)
            problems.append(f"SMS_BACKEND is Twilio but {names} is not set: set it, or empty SMS_BACKEND.")
        if importlib.util.find_spec("twilio") is None:
            problems.append("SMS_BACKEND is Twilio but the twilio package is not installed: pip install twilio.")
    if not config.sms_from:
        problems.append("SMS_FROM is not set: set the sender number the SMS provider gave you (E.164, +12075550100).")
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
