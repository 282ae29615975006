"""Test settings: the sandbox EHR is on; everything else comes from the environment like production."""

import os
from pathlib import Path

os.environ.setdefault("SANDBOX_ENABLED", "true")
# Tests and their worker process use their own filesystem-broker folder, never the demo's.
os.environ.setdefault("CELERY_BROKER_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test-broker"))

from healthcommerce import settings as _base
from healthcommerce.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SMS_BACKEND = "sms.backends.locmem.SmsBackend"
SMS_FROM = DEFAULT_FROM_SMS = "+12075550100"
# Short FHIR read timeout so the sandbox's injected "timeout" fault trips it quickly.
HTTP_TIMEOUT = (3.05, 2.0)
SANDBOX_TIMEOUT_SLEEP = 3
AXES_ENABLED = False

# The test process keeps its caches in memory (no state across runs), the sessions' apart from the default one as in
# the app (clearing the cache ends no session); app processes the tests start use their own.
CACHES = {
    alias: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": alias}
    if config["BACKEND"].endswith("FileBasedCache")
    else config
    for alias, config in _base.CACHES.items()
}

# The suite launches hundreds of times from 127.0.0.1 within a minute; tests of the throttle set their own limit.
LAUNCH_RATE_LIMIT = ""
