"""Test settings: the sandbox EHR is on; everything else comes from the environment like production."""

import os

os.environ.setdefault("SANDBOX_ENABLED", "true")

from healthcommerce.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Short FHIR read timeout so the sandbox's injected "timeout" fault trips it quickly.
HTTP_TIMEOUT = (3.05, 2.0)
SANDBOX_TIMEOUT_SLEEP = 3
AXES_ENABLED = False
