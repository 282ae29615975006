"""What production refuses, and how the shared cache is found; pure functions the settings module calls.

Two modes (docs/deploy.md, docs/adr/0003-embedded-and-production-modes.md):
- *embedded* (``SANDBOX_ENABLED=true`` or ``DEBUG=true``: ``make demo`` and the tests) allows SQLite, kombu's
  filesystem broker, a cache in a local folder and the console email backend, so nothing needs a server;
- *production* (everything else) refuses to start on any of them, one line per problem naming the setting.

Django's deployment checklist and ``manage.py check --deploy`` cover the HTTP-level settings; these checks
cover what the checklist cannot know: that a patient would never get an email, or that two web processes
would not share state.
"""

import base64
import binascii
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
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
# Embedded mode's field encryption key, made once under HC_VAR_DIR (docs/adr/0016).
DEV_FIELD_KEY_FILE = "field-encryption.key"
GENERATE_FIELD_KEY = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
# Every secret value this repository itself publishes (the demo's defaults in scripts/demo.sh, the examples in the
# README and docs/): anyone can read them, so production refuses each of them in every secret setting.
# tests/core/test_deploy.py ties this list to the literals it finds in the repository's files, so a new demo
# secret cannot be forgotten here.
REPOSITORY_SECRETS = frozenset(
    {
        DEV_SECRET_KEY,  # settings.SECRET_KEY's default
        "sk_test_demo",  # scripts/demo.sh: STRIPE_SECRET_KEY
        "pk_test_demo",  # scripts/demo.sh: STRIPE_PUBLISHABLE_KEY
        "whsec_ZGVtby1vbmx5LWRlbW8tb25seS1kZW1vLW9ubHk=",  # scripts/demo.sh: STRIPE_WEBHOOK_SECRET
        "password",  # README, docs/deploy.md, settings.py: EMAIL_URL smtp+tls://user:password@relay:587
        "dev",  # commerce/medusa/README.md: Medusa's JWT_SECRET and COOKIE_SECRET in development
        "setup-only",  # scripts/medusa.sh: the same while it builds the template database
    }
)


@dataclass(frozen=True)
class ProductionConfig:
    """The settings production checks, as plain values (so the check runs before Django is set up)."""

    secret_key: str
    app_base_url: str
    email_backend: str
    database_engine: str
    broker_url: str
    cache_backend: str
    session_cache_backend: str = ""
    sms_backend: str = ""
    sms_from: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    field_encryption_keys: tuple[str, ...] = ()
    # Whether a proxy in front says the scheme (SECURE_PROXY_SSL_HEADER set), and the proxies believed for the
    # client address (TRUSTED_PROXIES).
    proxy_ssl_header: bool = False
    trusted_proxies: tuple[str, ...] = ()
    # Every other secret setting as (name, value): STRIPE_*, ALERT_WEBHOOK_SECRET, METRICS_TOKEN, the email
    # password, TWILIO_AUTH_TOKEN... (empty values are not checked here).
    secrets: tuple[tuple[str, str], ...] = ()


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
    elif config.session_cache_backend.endswith(("LocMemCache", "FileBasedCache")):
        problems.append(
            "CACHE_URL is not Redis, so the sessions have no shared cache: set SESSION_CACHE_URL "
            "(redis://host:6379/2), or SESSION_ENGINE=django.contrib.sessions.backends.db."
        )
    if not config.field_encryption_keys:
        problems.append(
            "FIELD_ENCRYPTION_KEYS is not set: set it to one or more Fernet keys, newest first, comma-separated "
            f"({GENERATE_FIELD_KEY}); PHI, tokens and site secrets are encrypted with the first."
        )
    if config.proxy_ssl_header and not config.trusted_proxies:
        problems.append(
            "TRUSTED_PROXIES is empty but SECURE_PROXY_SSL_HEADER says a proxy is in front: every client would have "
            "the proxy's address, so /metrics would be open to all and one client's failed attempts would lock out "
            "everyone; set TRUSTED_PROXIES to the proxy's addresses (for example 127.0.0.1 or 10.0.0.0/8), or set "
            "SECURE_PROXY_SSL_HEADER empty when TLS ends at gunicorn."
        )
    return (
        problems
        + field_key_problems(config.field_encryption_keys)
        + sms_problems(config)
        + repository_secret_problems(config)
    )


def repository_secret_problems(config: ProductionConfig) -> list[str]:
    """Return one line per secret setting whose value is one this repository publishes (``REPOSITORY_SECRETS``),
    naming the setting, never the value; empty otherwise.

    ``SECRET_KEY`` at the development default is left to ``production_problems``' own line. A
    ``FIELD_ENCRYPTION_KEYS`` key is checked one by one.
    """
    named: list[tuple[str, str]] = [("SECRET_KEY", config.secret_key), *config.secrets]
    named += [("FIELD_ENCRYPTION_KEYS", key) for key in config.field_encryption_keys]
    named += [("TWILIO_AUTH_TOKEN", config.twilio_auth_token)]
    problems = []
    for name, value in named:
        if name == "SECRET_KEY" and value == DEV_SECRET_KEY:
            continue
        line = (
            f"{name} is a value published in this repository (the demo's or the documentation's): anyone can read "
            "it; set a secret of your own."
        )
        if value and value in REPOSITORY_SECRETS and line not in problems:
            problems.append(line)
    return problems


def field_key_problems(keys: tuple[str, ...] | list[str]) -> list[str]:
    """Return one line naming ``FIELD_ENCRYPTION_KEYS`` when any key is not a Fernet key (url-safe base64 of 32
    bytes), empty otherwise; the line gives the key's position, never the key. Source: the Fernet spec (a key is
    a 128-bit signing key and a 128-bit encryption key, base64url-encoded)."""
    bad = [str(number) for number, key in enumerate(keys, 1) if not _is_fernet_key(key)]
    if not bad:
        return []
    return [
        f"FIELD_ENCRYPTION_KEYS has {len(bad)} key(s) that are not Fernet keys (position {', '.join(bad)}): each "
        f"must be 32 url-safe base64-encoded bytes ({GENERATE_FIELD_KEY})."
    ]


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def dev_field_encryption_key(var_dir: Path) -> str:
    """Return embedded mode's field encryption key: read from ``var_dir/field-encryption.key``, made there (a new
    random Fernet key, file mode 0600) the first time. Stable for every process sharing ``var_dir`` (the demo's
    web, worker and beat); never used in production, which refuses to start without ``FIELD_ENCRYPTION_KEYS``."""
    path = var_dir / DEV_FIELD_KEY_FILE
    if not path.exists():
        draft = var_dir / f".{DEV_FIELD_KEY_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.urlsafe_b64encode(os.urandom(32)).decode("ascii") + "\n")
        try:
            os.link(draft, path)  # atomic; the first process to get here wins, the others read its key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


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


def refuse_to_start(problems: list[str], *, hint: str = "") -> None:
    """Write each problem on its own line to stderr, then ``hint`` (``demo_hint``) on one line when given, and
    exit with ``EX_CONFIG`` (78); never returns."""
    for problem in problems:
        sys.stderr.write(f"healthcommerce refuses to start (DEBUG is off): {problem}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")
    raise SystemExit(EX_CONFIG)


def demo_hint(*, database_url_set: bool, database_engine: str, email_backend: str, broker_url: str) -> str:
    """Return one line saying what to do when production refuses to start in what looks like the demo (no
    ``DATABASE_URL``, so SQLite under ``HC_VAR_DIR``, and the console email or the filesystem broker): someone ran
    ``manage.py`` beside ``make demo`` without ``SANDBOX_ENABLED=true``. ``""`` when it does not look like the demo
    (a production host with some settings wrong gets only the per-setting lines)."""
    demo_like = email_backend in UNDELIVERING_EMAIL_BACKENDS or broker_url.startswith("filesystem://")
    if database_url_set or not database_engine.endswith("sqlite3") or not demo_like:
        return ""
    return (
        "healthcommerce: this looks like the demo (SQLite under var/, no DATABASE_URL, console email): run with "
        "SANDBOX_ENABLED=true (or DEBUG=true), e.g. `SANDBOX_ENABLED=true .venv/bin/python manage.py ...`, as "
        '`make demo` does; production needs the settings above (docs/deploy.md "Production mode").'
    )


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
