"""Settings for healthcommerce, read from the environment (django-environ); every variable: docs/deploy.md.

Embedded mode (``SANDBOX_ENABLED`` or ``DEBUG`` on: ``make demo``, the tests) needs nothing but Python:
SQLite, kombu's filesystem broker, a per-process cache. Production (``DEBUG`` off, no sandbox) runs on
PostgreSQL (``DATABASE_URL``, psycopg 3), Redis (``CELERY_BROKER_URL``, and the shared cache) and a mail relay,
behind TLS, and refuses to start without them (``healthcommerce.core.deploy``, ADR 0003).
"""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from healthcommerce.core.deploy import (
    DEV_SECRET_KEY,
    ProductionConfig,
    demo_hint,
    dev_field_encryption_key,
    field_key_problems,
    production_problems,
    redis_cache_url,
    refuse_to_start,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("HC_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    SANDBOX_ENABLED=(bool, False),
)

DEBUG = env("DEBUG")
SANDBOX_ENABLED = env("SANDBOX_ENABLED")
# Production unless this is the demo or a test run (the sandbox EHR is mounted) or DEBUG is on.
PRODUCTION = not DEBUG and not SANDBOX_ENABLED
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
# Fernet keys for the encrypted columns (PHI, OAuth tokens, EHR site secrets; healthcommerce.core.encryption),
# comma-separated, newest first: the first encrypts, every one decrypts. Production refuses to start without them;
# embedded mode makes one under HC_VAR_DIR. Rotation: docs/deploy.md "Encryption keys".
FIELD_ENCRYPTION_KEYS = [key.strip() for key in env.list("FIELD_ENCRYPTION_KEYS", default=[]) if key.strip()]
if not FIELD_ENCRYPTION_KEYS and not PRODUCTION:
    FIELD_ENCRYPTION_KEYS = [dev_field_encryption_key(VAR_DIR)]
if not PRODUCTION and field_key_problems(FIELD_ENCRYPTION_KEYS):
    raise ImproperlyConfigured(field_key_problems(FIELD_ENCRYPTION_KEYS)[0])
# Public base URL of this app, used to build the SMART redirect_uri and patient links.
APP_BASE_URL = env.str("APP_BASE_URL", default="http://127.0.0.1:8000")
# Which environment this deployment is (production, staging, ...): our signing keys are per environment, so a
# non-production key never signs for production (ehr.models.AppSigningKey, docs/adr/0020).
APP_ENVIRONMENT = env.str("APP_ENVIRONMENT", default="production" if PRODUCTION else "development")
_APP_HOST = urlsplit(APP_BASE_URL).hostname or "localhost"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[_APP_HOST] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = [f"{urlsplit(APP_BASE_URL).scheme}://{urlsplit(APP_BASE_URL).netloc}"]

INSTALLED_APPS = [
    # django.contrib.admin with the two-factor admin site (healthcommerce.core.adminsite)
    "healthcommerce.core.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "healthcommerce.core.apps.LoginLockoutsConfig",  # django-axes, named for the admin index
    "django_otp",
    "healthcommerce.core.apps.TwoFactorDevicesConfig",  # django_otp.plugins.otp_totp, named for the admin index
    "localflavor",  # US state names and ZIP code fields, with their translations
    "simple_history",  # who changed an EHR site, its code mappings and rules, and when (docs/adr/0019)
    "healthcommerce.core",
    "healthcommerce.audit",
    "healthcommerce.ehr",
    "healthcommerce.catalog",
    "healthcommerce.intake",
    "healthcommerce.coverage",
    "healthcommerce.orders",
    "healthcommerce.outbox",
    "healthcommerce.fulfillment",
    "healthcommerce.fulfillment.backends.local",  # the local commerce backend's model and admin
    "healthcommerce.purchaselinks",
    "healthcommerce.cdshooks",
    "healthcommerce.golive",
    "healthcommerce.monitoring",
]
if SANDBOX_ENABLED:
    INSTALLED_APPS.append("healthcommerce.sandbox")

MIDDLEWARE = [
    # django-prometheus counts every request (first and last); the request id is set before anything logs.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "healthcommerce.core.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The client address and user agent of the audit rows the request writes (healthcommerce.audit.context).
    "healthcommerce.audit.context.AuditContextMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before FramingMiddleware, so it sees the framed clinician pages' exemption (ADR 0005).
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp plus the EHR framing rules; before sessions and CSRF, so it sees their cookies (ADR 0005).
    "healthcommerce.ehr.framing.FramingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's LocaleMiddleware on the patient pages only (after sessions, before CommonMiddleware); English
    # elsewhere (ADR 0013).
    "healthcommerce.purchaselinks.language.PatientLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # the admin user behind each site history row (django-simple-history; docs/adr/0019)
    "simple_history.middleware.HistoryRequestMiddleware",
    # request.user.is_verified(): the session's second factor (django-otp; the admin requires it)
    "django_otp.middleware.OTPMiddleware",
    # staff logins end after 15 idle minutes and 12 hours (docs/reliability.md "Accounts")
    "healthcommerce.core.staffsessions.StaffSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "healthcommerce.urls"
WSGI_APPLICATION = "healthcommerce.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Seconds a connection is kept between requests (0: one per request). Each gunicorn thread holds its own (2 x 8 by
# default). A new one per request cost a clinician's launch four backend starts (issue 22: ~3 ms of the web worker's
# CPU and ~15 ms of PostgreSQL's each); a pooler in transaction mode (PgBouncer) wants 0.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Seconds a Celery pool process keeps its connection between tasks (healthcommerce.celery; 0: a new one per task).
# A new connection costs ~3 ms of worker CPU and ~15 ms of PostgreSQL CPU (a backend start), twice per order.
WORKER_CONN_MAX_AGE = env.int("WORKER_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker is a separate process: share one file and wait for the write lock.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
# The patient pages and messages speak these (ADR 0013); clinician pages and the admin stay in English.
LANGUAGES = [("en", "English"), ("es", "Español")]
# Compiled catalogs (.mo) are committed beside their .po: a fresh machine needs no GNU gettext.
LOCALE_PATHS = [BASE_DIR / "locale"]
# US conventions in both languages (es as in es-US: 1,234.56), dates written out per language.
FORMAT_MODULE_PATH = ["healthcommerce.core.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
# whitenoise serves static files from gunicorn. Production serves the hashed, compressed files that
# ``collectstatic`` writes (``make release``); embedded mode serves straight from the source folders.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing

# --- HTTPS (Django's deployment checklist; on by default in production) ---
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# The load balancer's health check may come over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
# "HEADER,value" set by the TLS-terminating proxy (which must overwrite it); empty: TLS ends at gunicorn.
_PROXY_SSL = env.list("SECURE_PROXY_SSL_HEADER", default=["HTTP_X_FORWARDED_PROTO", "https"] if PRODUCTION else [])
SECURE_PROXY_SSL_HEADER = (_PROXY_SSL[0], _PROXY_SSL[1]) if len(_PROXY_SSL) == 2 else None
# Addresses or CIDR networks of the proxies whose X-Forwarded-For is believed (healthcommerce.core.clientip).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# Sessions (the clinician's browser binding and launches, the staff login, the patient's verification) live in a
# shared cache of their own (SESSION_CACHE_URL, below): no SQL on any page for them (issue 22). They hold no PHI.
# Losing that cache (a Redis restart without persistence) ends every session: clinicians launch again from the EHR,
# staff and patients sign in again. SESSION_ENGINE=django.contrib.sessions.backends.db keeps them in PostgreSQL.
SESSION_ENGINE = env.str("SESSION_ENGINE", default="django.contrib.sessions.backends.cache")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # __Host- cookies are https-only, host-only and path=/ (RFC 6265bis 4.1.3.2).
    SESSION_COOKIE_NAME = "__Host-hc_session"
    CSRF_COOKIE_NAME = "__Host-hc_csrf"
    LANGUAGE_COOKIE_NAME = "__Host-hc_language"
# The patient's language switch (purchaselinks.views.link_language): a browser-session cookie (no max-age).
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"

# --- Content-Security-Policy and framing inside the EHR (healthcommerce.ehr.framing, ADR 0005) ---
# django-csp 4 builds the header; FramingMiddleware sets frame-ancestors per EHR site (EHRSite.frame_origins) on
# /smart/ and /o/ and 'none' elsewhere, and widens form-action on /smart/launch to the EHR's authorize endpoint.
# No 'unsafe-inline': scripts and styles come from static files (the SMART style is /smart/style/<launch>.css).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
X_FRAME_OPTIONS = "DENY"
# Cache lifetime (seconds) of a fetched smart_style_url document, and of a failed fetch (healthcommerce.ehr.style).
SMART_STYLE_TTL = env.int("SMART_STYLE_TTL", default=3600)
SMART_STYLE_FAILURE_TTL = env.int("SMART_STYLE_FAILURE_TTL", default=300)

# EMAIL_URL (smtp+tls://user:password@host:587) sets the SMTP backend, host, port, credentials and TLS.
_EMAIL = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=_EMAIL["EMAIL_BACKEND"])
EMAIL_HOST = _EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _EMAIL.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _EMAIL.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_EMAIL.get("EMAIL_USE_SSL"))
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
# The sender of patient emails, with the name they see: "Harbor Health orders <orders@harbor-health.org>".
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Your clinic's orders <orders@healthcommerce.invalid>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Text messages (django-sms; docs/adr/0010): optional, on top of email ---
# A django-sms backend class. Empty turns texts off: the production default, since SMS needs a provider and each
# health system's consent (EHRSite.sms_enabled). Embedded mode prints texts to the console like the emails.
SMS_BACKEND = env.str("SMS_BACKEND", default="" if PRODUCTION else "sms.backends.console.SmsBackend")
# The sender: an E.164 number (or a sender id) the provider allows; django-sms calls it DEFAULT_FROM_SMS.
SMS_FROM = env.str("SMS_FROM", default="" if PRODUCTION else "+12075550100")
DEFAULT_FROM_SMS = SMS_FROM
# Region for patient numbers written without a +country code (phonenumbers; ISO 3166-1 alpha-2).
SMS_DEFAULT_REGION = env.str("SMS_DEFAULT_REGION", default="US")
SMS_FILE_PATH = env.str("SMS_FILE_PATH", default=str(VAR_DIR / "sms"))
# sms.backends.twilio.SmsBackend (needs the `twilio` package too).
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")

# --- Outbound HTTP (healthcommerce.core.http) ---
# Seconds; (connect, read).
HTTP_TIMEOUT = (env.float("HTTP_CONNECT_TIMEOUT", default=3.05), env.float("HTTP_READ_TIMEOUT", default=10.0))
# Bytes: the largest response body any outbound request reads (EHR, commerce, JWKS); larger ones fail unread.
HTTP_MAX_RESPONSE_BYTES = env.int("HTTP_MAX_RESPONSE_BYTES", default=10 * 1024 * 1024)
# Cache lifetime of SMART discovery documents, seconds.
SMART_DISCOVERY_TTL = env.int("SMART_DISCOVERY_TTL", default=3600)
# A launch (its tokens and pre-fill) lives this long, seconds.
LAUNCH_TTL = env.int("LAUNCH_TTL", default=3600)
# Launches one client address may start, "<count>/<s|m|h>" (django-ratelimit); empty: no limit. A hospital's
# clinicians may share one NAT address: raise it rather than turn it off.
LAUNCH_RATE_LIMIT = env.str("LAUNCH_RATE_LIMIT", default="300/m")
# Hours an ended launch (its state, PKCE verifier and tokens) is kept after it expired; beat then deletes it
# together with expired sessions (healthcommerce.ehr.services.launches_purge).
LAUNCH_RETENTION_HOURS = env.int("LAUNCH_RETENTION_HOURS", default=24)
# Retention (docs/reliability.md "Retention"), run daily by beat and audited as retention.purge: days a done or
# cancelled outbox row is kept (healthcommerce.outbox.services.outbox_purge), and days after an order closed
# (cancelled, failed, delivered; a draft: created) before its PHI, its purchase links' addresses and its local
# commerce payload are blanked (orders_phi_purge). Keep ORDER_PHI_RETENTION_DAYS >= PURCHASE_LINK_TRACKING_DAYS.
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=30)
ORDER_PHI_RETENTION_DAYS = env.int("ORDER_PHI_RETENTION_DAYS", default=90)
if OUTBOX_RETENTION_DAYS < 1 or ORDER_PHI_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("OUTBOX_RETENTION_DAYS and ORDER_PHI_RETENTION_DAYS must be at least 1.")

# --- Celery (healthcommerce.celery) ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
FILESYSTEM_BROKER_DIR = Path(env.str("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (FILESYSTEM_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(FILESYSTEM_BROKER_DIR / "queue"),
        "data_folder_out": str(FILESYSTEM_BROKER_DIR / "queue"),
        "processed_folder": str(FILESYSTEM_BROKER_DIR / "processed"),
        # kombu's exchange tables (celery.exchange, celery.pidbox.exchange); the default is ./control.
        "control_folder": str(FILESYSTEM_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # docs/reliability.md: visibility timeout > task time limit + longest backoff; publishing must not hang.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "max_retries": 2,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Seconds. Production keeps the defaults; `make test-faults` shortens them so a killed worker's claim
# (time limit + 60 s, healthcommerce.outbox.services) runs out within the test.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_IGNORE_RESULT = True
# Workers and beat log through LOGGING (JSON lines, request ids, the scrub and token filters), not Celery's own
# root handler (docs/reliability.md "Integration health").
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Production sends whatever a worker prints through LOGGING too (scrubbed). Embedded mode leaves the worker's stdout
# alone, so the demo's console email and SMS backends print the patient's message, link included, intact on its
# console (README); production refuses those backends (healthcommerce.core.deploy), so no message reaches a log.
CELERY_WORKER_REDIRECT_STDOUTS = PRODUCTION
CELERY_TASK_ALWAYS_EAGER = False
# Celery's Django fixup closes the database connection around every task unless this is set; then only every this
# many tasks, and Django's age and health check before each task (WORKER_CONN_MAX_AGE, healthcommerce.celery) decides.
CELERY_DB_REUSE_MAX = 1000 if WORKER_CONN_MAX_AGE else None
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {"task": "healthcommerce.outbox.tasks.relay", "schedule": 5.0},
    # Ask the backends where our open orders are (docs/reliability.md "Status back"), daily at this UTC hour.
    "reconcile-fulfillment": {
        "task": "healthcommerce.fulfillment.tasks.reconcile",
        "schedule": crontab(hour=env.int("FULFILLMENT_RECONCILE_HOUR", default=4), minute=17),
    },
    # Delete launches that ended LAUNCH_RETENTION_HOURS ago, and expired sessions (healthcommerce.ehr.tasks), daily.
    "purge-launches": {"task": "healthcommerce.ehr.tasks.purge", "schedule": crontab(hour=3, minute=23)},
    # Clear the OAuth tokens of launches that expired (healthcommerce.ehr.services.launch_tokens_clear).
    "clear-launch-tokens": {"task": "healthcommerce.ehr.tasks.clear_tokens", "schedule": 600.0},
    # Retention, daily, each stage after the one before (docs/reliability.md "Retention"): done outbox rows; the PHI
    # of closed orders; then their local commerce payloads; then their purchase links' addresses.
    "purge-outbox": {"task": "healthcommerce.outbox.tasks.purge", "schedule": crontab(hour=3, minute=25)},
    "purge-order-phi": {"task": "healthcommerce.orders.tasks.purge", "schedule": crontab(hour=3, minute=27)},
    "purge-local-order-phi": {"task": "healthcommerce.fulfillment.tasks.purge", "schedule": crontab(hour=3, minute=29)},
    "purge-purchase-link-phi": {
        "task": "healthcommerce.purchaselinks.tasks.purge",
        "schedule": crontab(hour=3, minute=31),
    },
    # Blank the raw copy of intake messages that made no order (healthcommerce.intake.services.intake_raw_retention).
    "purge-intake-raw": {"task": "healthcommerce.intake.tasks.purge", "schedule": crontab(hour=3, minute=33)},
    # Remind patients whose purchase link is about to expire (healthcommerce.purchaselinks.reminders), hourly.
    "remind-purchase-links": {"task": "healthcommerce.purchaselinks.tasks.remind", "schedule": crontab(minute=41)},
    # Seal the audit rows into the hash chain (healthcommerce.audit.services.audit_seal; also after each commit in the
    # worker, and on the web workers' and the HL7 listener's own timers, AUDIT_SEAL_INTERVAL).
    "seal-audit": {"task": "healthcommerce.audit.tasks.seal", "schedule": 60.0},
    # Integration health (docs/reliability.md "Integration health"): the alert rules every minute, old buckets daily.
    "evaluate-alerts": {"task": "healthcommerce.monitoring.tasks.evaluate", "schedule": 60.0},
    "purge-integration-buckets": {
        "task": "healthcommerce.monitoring.tasks.purge",
        "schedule": crontab(hour=3, minute=47),
    },
}
# Integration health (docs/adr/0018-integration-health.md). Seconds between flushes of a process's per-minute call
# buckets to the database (at the end of a request or task), and days they are kept.
INTEGRATION_FLUSH_SECONDS = env.float("INTEGRATION_FLUSH_SECONDS", default=10.0)
INTEGRATION_RETENTION_DAYS = env.int("INTEGRATION_RETENTION_DAYS", default=8)
# Alert rules run by beat (healthcommerce.monitoring.rules), their window and thresholds (percent of calls).
ALERT_RULES = env.list(
    "ALERT_RULES",
    default=[
        "auth_failures",
        "fhir_errors",
        "commerce_errors",
        "silence",
        "outbox_lag",
        "dead_letters",
        "hl7_status",
        "eligibility",
    ],
)
ALERT_WINDOW_MINUTES = env.int("ALERT_WINDOW_MINUTES", default=10)
ALERT_MIN_CALLS = env.int("ALERT_MIN_CALLS", default=5)
ALERT_AUTH_FAILURE_PERCENT = env.float("ALERT_AUTH_FAILURE_PERCENT", default=15.0)
ALERT_ERROR_PERCENT = env.float("ALERT_ERROR_PERCENT", default=10.0)
ALERT_OUTBOX_LAG_SECONDS = env.int("ALERT_OUTBOX_LAG_SECONDS", default=300)
# Silence: a site with ALERT_SILENCE_MIN_CALLS calls in the LOOKBACK hours before and none for ALERT_SILENCE_MINUTES,
# on ALERT_WORKING_DAYS (0 = Monday) between ALERT_WORKING_HOURS (start, end) in ALERT_TIMEZONE.
ALERT_SILENCE_MINUTES = env.int("ALERT_SILENCE_MINUTES", default=30)
ALERT_SILENCE_LOOKBACK_HOURS = env.int("ALERT_SILENCE_LOOKBACK_HOURS", default=3)
ALERT_SILENCE_MIN_CALLS = env.int("ALERT_SILENCE_MIN_CALLS", default=10)
ALERT_WORKING_HOURS = tuple(int(h) for h in env.list("ALERT_WORKING_HOURS", default=["8", "18"]))
ALERT_WORKING_DAYS = tuple(int(d) for d in env.list("ALERT_WORKING_DAYS", default=["0", "1", "2", "3", "4"]))
ALERT_TIMEZONE = env.str("ALERT_TIMEZONE", default="America/New_York")
# Delivery (healthcommerce.monitoring.delivery): emails, and a Standard Webhooks endpoint with its whsec_ secret.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default="")
# /metrics: answered to loopback, to METRICS_ALLOWED_NETWORKS (CIDR) or with "Authorization: Bearer METRICS_TOKEN".
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
FULFILLMENT_RECONCILE_MAX_AGE_DAYS = env.int("FULFILLMENT_RECONCILE_MAX_AGE_DAYS", default=90)
# Outbox timing in seconds (healthcommerce.outbox.services): the first step of the full-jitter retry backoff, and
# how long the relay leaves a published row alone before publishing it again (doubling up to an hour). Production
# keeps the defaults; `make test-faults` shortens them so the fault run drains in minutes.
OUTBOX_BACKOFF_BASE_SECONDS = env.float("OUTBOX_BACKOFF_BASE_SECONDS", default=5.0)
OUTBOX_RELAY_LEASE_SECONDS = env.int("OUTBOX_RELAY_LEASE_SECONDS", default=60)
# Rows per outbox.deliver_batch task (ADR 0014).
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=20)
# Dead-letter an outbox message (any subscriber) after this many attempts.
FULFILLMENT_MAX_ATTEMPTS = env.int("FULFILLMENT_MAX_ATTEMPTS", default=8)
# Commerce backends, configured like Django's CACHES: each entry names its class (BACKEND) and the options the
# backend reads and validates itself (its ``check()``, run by ``manage.py check --deploy``). COMMERCE_BACKEND picks
# the one that takes new orders; an order keeps the backend that took it (status, confirm, cancel). The options
# read the environment variables operators set (docs/deploy.md "Commerce backend"); a new backend is its folder
# under healthcommerce/fulfillment/backends/ plus one entry here (docs/extending.md).
COMMERCE_BACKEND = env.str("COMMERCE_BACKEND", default="local")
COMMERCE_BACKENDS: dict[str, dict[str, Any]] = {
    "local": {"BACKEND": "healthcommerce.fulfillment.backends.local.backend.LocalCommerceBackend", "OPTIONS": {}},
    # Medusa 2 Admin API (docs/adr/0007): https, or http to loopback, and a secret API key. The ids are optional:
    # when empty the backend looks them up (first region shipping to the country, default channel). STATUS_SECRET
    # is what Medusa's healthcommerce-status subscriber signs with (its HC_STATUS_WEBHOOK_SECRET); whsec_<base64>.
    "medusa": {
        "BACKEND": "healthcommerce.fulfillment.backends.medusa.backend.MedusaCommerceBackend",
        "OPTIONS": {
            "URL": env.str("MEDUSA_URL", default=""),
            "API_KEY": env.str("MEDUSA_API_KEY", default=""),
            "REGION_ID": env.str("MEDUSA_REGION_ID", default=""),
            "SALES_CHANNEL_ID": env.str("MEDUSA_SALES_CHANNEL_ID", default=""),
            "SHIPPING_OPTION_ID": env.str("MEDUSA_SHIPPING_OPTION_ID", default=""),
            "SHIPPING_PROFILE_ID": env.str("MEDUSA_SHIPPING_PROFILE_ID", default=""),
            "STATUS_SECRET": env.str("MEDUSA_STATUS_SECRET", default=""),
        },
    },
    # Standard Webhooks to one DME supplier (docs/adr/0009): https URL and whsec_ secret; optional mutual TLS (PEM
    # client certificate and key) and a CA bundle that replaces the system's trusted CAs. STATUS_SECRET is the one
    # the supplier signs its status webhooks with (POST /webhooks/webhook/); whsec_<base64>, ours to give.
    "webhook": {
        "BACKEND": "healthcommerce.fulfillment.backends.webhook.backend.WebhookCommerceBackend",
        "OPTIONS": {
            "URL": env.str("WEBHOOK_URL", default=""),
            "SECRET": env.str("WEBHOOK_SECRET", default=""),
            "CLIENT_CERT": env.str("WEBHOOK_CLIENT_CERT", default=""),
            "CLIENT_KEY": env.str("WEBHOOK_CLIENT_KEY", default=""),
            "CA_BUNDLE": env.str("WEBHOOK_CA_BUNDLE", default=""),
            "STATUS_SECRET": env.str("WEBHOOK_STATUS_SECRET", default=""),
        },
    },
}
# Production refuses outbound requests to private addresses (core.http.check_url) except to these hosts: an EHR on
# the hospital's network (comma-separated host names), and the hosts of the URLs configured here (Medusa, the
# webhook supplier, the alert webhook). Loopback and link-local addresses are refused whatever this says.
OUTBOUND_PRIVATE_HOSTS = [
    *(host.strip().lower() for host in env.list("OUTBOUND_PRIVATE_HOSTS", default=[]) if host.strip()),
    *(
        host
        for url in (*(str(b["OPTIONS"].get("URL", "")) for b in COMMERCE_BACKENDS.values()), ALERT_WEBHOOK_URL)
        if (host := urlsplit(url).hostname)
    ),
]

# --- Cache: shared on Redis (rate limits, JWKS) whenever Redis is there; discovery is on the site row ---
# CACHE_URL, else the broker's Redis server on the next database number; in embedded mode a folder under
# HC_VAR_DIR, shared by the processes of one machine (the demo's web, worker and beat: /readyz sees the relay).
# The sessions (SESSION_ENGINE above) have a cache of their own, SESSION_CACHE_URL (else the next database number
# after the cache's; in embedded mode a folder of their own): clearing the cache never ends a session.
CACHE_URL = env.str("CACHE_URL", default="") or redis_cache_url(CELERY_BROKER_URL)
SESSION_CACHE_URL = env.str("SESSION_CACHE_URL", default="") or redis_cache_url(CACHE_URL)
if CACHE_URL:
    CACHES = {"default": environ.Env.cache_url_config(CACHE_URL) | {"KEY_PREFIX": "hc"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
if SESSION_CACHE_URL:
    CACHES["sessions"] = environ.Env.cache_url_config(SESSION_CACHE_URL) | {"KEY_PREFIX": "hcs"}
else:
    CACHES["sessions"] = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "sessions"),
        # Never cull a live session (Django's default culls a third of the entries past 300).
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    }
SESSION_CACHE_ALIAS = "sessions"

# --- Purchase links ---
# Days a patient link stays valid: 7 unless set, never more than 30 (a link is a bearer credential).
PURCHASE_LINK_TTL_DAYS = env.int("PURCHASE_LINK_TTL_DAYS", default=7)
if not 1 <= PURCHASE_LINK_TTL_DAYS <= 30:
    raise ImproperlyConfigured("PURCHASE_LINK_TTL_DAYS must be between 1 and 30.")
PURCHASE_LINK_MAX_FAILURES = 5
# Hours before a link expires when the patient who has not confirmed gets one reminder (email and text; 0 = none),
# for links sent at least PURCHASE_LINK_REMINDER_MIN_AGE_HOURS ago (no reminder right after the link itself).
PURCHASE_LINK_REMINDER_HOURS = env.int("PURCHASE_LINK_REMINDER_HOURS", default=48)
PURCHASE_LINK_REMINDER_MIN_AGE_HOURS = env.int("PURCHASE_LINK_REMINDER_MIN_AGE_HOURS", default=24)
if PURCHASE_LINK_REMINDER_HOURS < 0 or PURCHASE_LINK_REMINDER_MIN_AGE_HOURS < 0:
    raise ImproperlyConfigured("PURCHASE_LINK_REMINDER_HOURS and _MIN_AGE_HOURS must not be negative.")
# After the patient confirms, the same link opens the order's tracking page (date of birth again) this long.
PURCHASE_LINK_TRACKING_DAYS = env.int("PURCHASE_LINK_TRACKING_DAYS", default=90)
# The delivery window the patient's receipt promises, in business days after confirming: "LOW,HIGH".
PATIENT_DELIVERY_BUSINESS_DAYS = tuple(env.list("PATIENT_DELIVERY_BUSINESS_DAYS", cast=int, default=[3, 7]))[:2]

# --- Payments through Stripe (healthcommerce.purchaselinks.payments, docs/adr/0012) ---
# Empty STRIPE_SECRET_KEY: payments off (a patient with something to pay cannot pay online). Keys from the Stripe
# dashboard: sk_ (or a restricted rk_) and pk_; the webhook endpoint's signing secret is whsec_.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Empty: Stripe's own API. Tests and the demo point it at localstripe on loopback (the outbound rules apply: https,
# or http to this machine). STRIPE_JS_URL is the stripe.js the payment page loads (localstripe serves its own).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
# Retries of a failed Stripe request (the library retries connection errors, 409, 429 and 5xx with backoff, and
# resends the same Idempotency-Key); each request has HTTP_TIMEOUT.
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)

# --- HL7 v2 intake over MLLP (healthcommerce.intake; `manage.py hl7_listen`, the Procfile's hl7 line) ---
# Where the listener binds. TLS with client certificates (HL7_TLS_CERT and HL7_TLS_KEY: our PEM certificate chain and
# key; HL7_TLS_CLIENT_CA: the PEM CA bundle the sending interface engines' certificates must chain to) is required in
# production (`manage.py check --deploy`, intake.E001); plain TCP only in embedded mode on a loopback address.
HL7_LISTEN_HOST = env.str("HL7_LISTEN_HOST", default="127.0.0.1")
HL7_LISTEN_PORT = env.int("HL7_LISTEN_PORT", default=2575)
HL7_TLS_CERT = env.str("HL7_TLS_CERT", default="")
HL7_TLS_KEY = env.str("HL7_TLS_KEY", default="")
HL7_TLS_CLIENT_CA = env.str("HL7_TLS_CLIENT_CA", default="")
# Seconds a connection may stay silent (between or inside frames) before the listener closes it.
HL7_IDLE_TIMEOUT = env.float("HL7_IDLE_TIMEOUT", default=300.0)
# Threads that run the messages' database work (one message at a time per connection; connections share these).
HL7_WORKER_THREADS = env.int("HL7_WORKER_THREADS", default=8)
# Seconds between the seals of a web worker's or the HL7 listener's audit rows into the hash chain (they seal on a
# timer, not after each commit: healthcommerce.audit.services.AuditSealTimer, healthcommerce.intake.mllp.listen;
# ADR 0015).
AUDIT_SEAL_INTERVAL = env.float("AUDIT_SEAL_INTERVAL", default=1.0)

# --- HL7 v2 status back (healthcommerce.orders.hl7status; docs/interface-hl7-status.md) ---
# What our ORM^O01 status messages say they come from (MSH-3, MSH-4), how long a peer has to answer one (seconds:
# connect, TLS, send and ACK), and our TLS client certificate, its key and the CA that signed the peers' server
# certificates (PEM files). Without a certificate the messages go over plain TCP: loopback or a VPN only.
HL7_STATUS_SENDING_APPLICATION = env.str("HL7_STATUS_SENDING_APPLICATION", default="HEALTHCOMMERCE")
HL7_STATUS_SENDING_FACILITY = env.str("HL7_STATUS_SENDING_FACILITY", default="HEALTHCOMMERCE")
HL7_STATUS_TIMEOUT_SECONDS = env.float("HL7_STATUS_TIMEOUT_SECONDS", default=10.0)
# Eligibility (docs/interface-eligibility.md): at the patient's checkout an answer older than the site's
# ``answer_max_age_hours`` is asked for again, waiting at most this many seconds (the estimate stands otherwise).
ELIGIBILITY_CHECKOUT_TIMEOUT_SECONDS = env.float("ELIGIBILITY_CHECKOUT_TIMEOUT_SECONDS", default=5.0)
HL7_STATUS_TLS_CERT = env.str("HL7_STATUS_TLS_CERT", default="")
HL7_STATUS_TLS_KEY = env.str("HL7_STATUS_TLS_KEY", default="")
HL7_STATUS_TLS_CA = env.str("HL7_STATUS_TLS_CA", default="")

# --- Sandbox EHR ---
# Where the sandbox's EHR launch sends the browser (default: /smart/launch on the sandbox's own host).
SANDBOX_APP_LAUNCH_URL = env.str("SANDBOX_APP_LAUNCH_URL", default="")
# The CDS services the sandbox EHR calls as a CDS client (default: /cds-services on the sandbox's own host).
SANDBOX_CDS_SERVICES_URL = env.str("SANDBOX_CDS_SERVICES_URL", default="")
# Seconds the sandbox's injected "timeout" fault sleeps before answering.
SANDBOX_TIMEOUT_SLEEP = env.int("SANDBOX_TIMEOUT_SLEEP", default=15)
# Milliseconds the sandbox EHR waits before answering each OAuth/FHIR request (make bench; 0 elsewhere).
SANDBOX_LATENCY_MS = env.int("SANDBOX_LATENCY_MS", default=0)
SANDBOX_REQUEST_LOG = env.str("SANDBOX_REQUEST_LOG", default="")  # make bench: a JSON line per EHR API request
if SANDBOX_ENABLED:
    MIDDLEWARE.insert(0, "healthcommerce.sandbox.latency.SandboxLatencyMiddleware")
# The synthetic FHIR data the sandbox serves; kept in the repository (its README names sources and licences).
FHIR_FIXTURES_DIR = Path(env.str("FHIR_FIXTURES_DIR", default=str(BASE_DIR / "healthcommerce/sandbox/fixtures")))
# Where the sandbox EHR's "Send as HL7" sends its order messages over MLLP (plain TCP): the app's hl7 listener, as
# make demo runs it (127.0.0.1:${DEMO_HL7_PORT:-2575}).
SANDBOX_HL7_TARGET = env.str("SANDBOX_HL7_TARGET", default=f"127.0.0.1:{env.int('DEMO_HL7_PORT', default=2575)}")

# --- Staff accounts: admin login lockout, second factor, session limits (docs/reliability.md "Accounts") ---
# django-axes locks a username on one client address after 5 failures, and a username from any addresses after 20
# (healthcommerce.core.lockout), each for an hour: one address cannot lock every admin, rotating addresses still
# get locked. A right password with a wrong TOTP code counts as a failure (healthcommerce.core.adminsite).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]
AXES_FAILURE_LIMIT = 5
AXES_PARAMETER_LIMITS = {"username": 20}
AXES_HANDLER = "healthcommerce.core.lockout.StaffLockoutHandler"
AXES_COOLOFF_TIME = 1  # hours
AXES_CLIENT_IP_CALLABLE = "healthcommerce.core.clientip.client_ip"
# A locked-out login gets the login page with the message every refused login gets (it never says which failed).
AXES_LOCKOUT_CALLABLE = "healthcommerce.core.adminsite.staff_lockout_response"
# TOTP (RFC 6238): the issuer shown in authenticator apps; codes one 30-second step either side are accepted.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="healthcommerce")
# The admin never shows a device's secret (no key field, no QR code page): `manage.py staff_totp add` shows it once.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Seconds: a staff login ends this long after the last admin request, and this long after login whatever happens.
STAFF_SESSION_IDLE_SECONDS = env.int("STAFF_SESSION_IDLE_SECONDS", default=15 * 60)
STAFF_SESSION_MAX_SECONDS = env.int("STAFF_SESSION_MAX_SECONDS", default=12 * 3600)
if not 60 <= STAFF_SESSION_IDLE_SECONDS <= 15 * 60 or not STAFF_SESSION_IDLE_SECONDS <= STAFF_SESSION_MAX_SECONDS:
    raise ImproperlyConfigured("STAFF_SESSION_IDLE_SECONDS must be 60 to 900 and at most STAFF_SESSION_MAX_SECONDS.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line passes the token filter (a patient link token becomes ``/p/<token>``), the secrets and PHI scrub
    # (healthcommerce.core.logfilters.ScrubFilter) and gets the request id; LOG_FORMAT=json writes JSON lines.
    "filters": {
        "request_id": {"()": "healthcommerce.core.requestid.RequestIdFilter"},
        "no_link_tokens": {"()": "healthcommerce.core.logfilters.LinkTokenFilter"},
        "scrub": {"()": "healthcommerce.core.logfilters.ScrubFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "no_link_tokens", "scrub"],
            "formatter": env.str("LOG_FORMAT", default="json" if PRODUCTION else "text"),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The stripe library logs response bodies (client secrets among them) at DEBUG: never let them through.
        "stripe": {"level": "WARNING"},
    },
}

if PRODUCTION:
    _problems = production_problems(
        ProductionConfig(
            secret_key=SECRET_KEY,
            app_base_url=APP_BASE_URL,
            email_backend=EMAIL_BACKEND,
            database_engine=DATABASES["default"]["ENGINE"],
            broker_url=CELERY_BROKER_URL,
            cache_backend=CACHES["default"]["BACKEND"],
            session_cache_backend=CACHES["sessions"]["BACKEND"] if SESSION_ENGINE.endswith(".cache") else "",
            sms_backend=SMS_BACKEND,
            sms_from=SMS_FROM,
            twilio_account_sid=TWILIO_ACCOUNT_SID,
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            field_encryption_keys=tuple(FIELD_ENCRYPTION_KEYS),
            proxy_ssl_header=SECURE_PROXY_SSL_HEADER is not None,
            trusted_proxies=tuple(entry for entry in TRUSTED_PROXIES if entry.strip()),
            secrets=(
                ("EMAIL_HOST_PASSWORD", EMAIL_HOST_PASSWORD),
                ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
                ("STRIPE_PUBLISHABLE_KEY", STRIPE_PUBLISHABLE_KEY),
                ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
                ("ALERT_WEBHOOK_SECRET", ALERT_WEBHOOK_SECRET),
                ("METRICS_TOKEN", METRICS_TOKEN),
                ("MEDUSA_API_KEY", COMMERCE_BACKENDS["medusa"]["OPTIONS"]["API_KEY"]),
                ("MEDUSA_STATUS_SECRET", COMMERCE_BACKENDS["medusa"]["OPTIONS"]["STATUS_SECRET"]),
                ("WEBHOOK_SECRET", COMMERCE_BACKENDS["webhook"]["OPTIONS"]["SECRET"]),
                ("WEBHOOK_CLIENT_KEY", COMMERCE_BACKENDS["webhook"]["OPTIONS"]["CLIENT_KEY"]),
                ("WEBHOOK_STATUS_SECRET", COMMERCE_BACKENDS["webhook"]["OPTIONS"]["STATUS_SECRET"]),
            ),
        )
    )
    if _problems:
        _hint = demo_hint(
            database_url_set=bool(env.str("DATABASE_URL", default="")),
            database_engine=DATABASES["default"]["ENGINE"],
            email_backend=EMAIL_BACKEND,
            broker_url=CELERY_BROKER_URL,
        )
        refuse_to_start(_problems, hint=_hint)
