"""Settings for healthcommerce, read from the environment (django-environ).

Embedded defaults need nothing but Python: SQLite and kombu's filesystem broker. ``DATABASE_URL``
(PostgreSQL via psycopg 3) and ``CELERY_BROKER_URL`` (Redis) switch to the production services.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("HC_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    SANDBOX_ENABLED=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
)

DEBUG = env("DEBUG")
SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-only-change-me")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
SANDBOX_ENABLED = env("SANDBOX_ENABLED")
# Public base URL of this app, used to build the SMART redirect_uri and patient links.
APP_BASE_URL = env.str("APP_BASE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "healthcommerce.core",
    "healthcommerce.audit",
    "healthcommerce.ehr",
    "healthcommerce.catalog",
    "healthcommerce.orders",
    "healthcommerce.fulfillment",
    "healthcommerce.purchaselinks",
]
if SANDBOX_ENABLED:
    INSTALLED_APPS.append("healthcommerce.sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker is a separate process: share one file and wait for the write lock.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="orders@healthcommerce.invalid")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Outbound HTTP (healthcommerce.core.http) ---
# Seconds; (connect, read).
HTTP_TIMEOUT = (env.float("HTTP_CONNECT_TIMEOUT", default=3.05), env.float("HTTP_READ_TIMEOUT", default=10.0))
# Cache lifetime of SMART discovery documents, seconds.
SMART_DISCOVERY_TTL = env.int("SMART_DISCOVERY_TTL", default=3600)
# A launch (its tokens and pre-fill) lives this long, seconds.
LAUNCH_TTL = env.int("LAUNCH_TTL", default=3600)

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery (healthcommerce.celery) ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
FILESYSTEM_BROKER_DIR = Path(env.str("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed"):
        (FILESYSTEM_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(FILESYSTEM_BROKER_DIR / "queue"),
        "data_folder_out": str(FILESYSTEM_BROKER_DIR / "queue"),
        "processed_folder": str(FILESYSTEM_BROKER_DIR / "processed"),
        "store_processed": False,
    }
else:
    # RELIABILITY.md: visibility timeout > task time limit + longest backoff; publishing must not hang.
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
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {"task": "healthcommerce.fulfillment.tasks.outbox_relay", "schedule": 5.0},
}
# Dead-letter an outbox message after this many attempts.
FULFILLMENT_MAX_ATTEMPTS = env.int("FULFILLMENT_MAX_ATTEMPTS", default=8)
COMMERCE_BACKEND = env.str("COMMERCE_BACKEND", default="local")

# --- Purchase links ---
PURCHASE_LINK_TTL_DAYS = env.int("PURCHASE_LINK_TTL_DAYS", default=14)
PURCHASE_LINK_MAX_FAILURES = 5

# --- Sandbox EHR ---
# Where the sandbox's EHR launch sends the browser (default: /smart/launch on the sandbox's own host).
SANDBOX_APP_LAUNCH_URL = env.str("SANDBOX_APP_LAUNCH_URL", default="")
# Seconds the sandbox's injected "timeout" fault sleeps before answering.
SANDBOX_TIMEOUT_SLEEP = env.int("SANDBOX_TIMEOUT_SLEEP", default=15)
FHIR_FIXTURES_DIR = Path(env.str("FHIR_FIXTURES_DIR", default=str(BASE_DIR.parent / "shared" / "fixtures" / "fhir")))

# --- django-axes (admin login lockout) ---
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 1  # hours

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
