#!/usr/bin/env bash
# Run the demo the way production runs (gunicorn, a Celery worker, Celery beat, the HL7 listener: the Procfile), on
# the embedded defaults (SQLite, the filesystem broker, console email) with the sandbox EHR mounted. Listens on the
# host and port of APP_BASE_URL (default http://127.0.0.1:8000), and for HL7 v2 on 127.0.0.1:${DEMO_HL7_PORT:-2575}.
# Called by `make demo` after demo-setup; Ctrl-C stops all.
# scripts/procfile.sh runs them (and localstripe) in this process group: Ctrl-C, or TERM or KILL to the group of
# `make demo`, stops every one, and a new run first stops whatever an earlier one left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$PWD/$BIN:$PATH"
export SANDBOX_ENABLED="${SANDBOX_ENABLED:-true}"
export APP_BASE_URL="${APP_BASE_URL:-http://127.0.0.1:8000}"
WEB_BIND="$(python -c 'import os, urllib.parse as u; p = u.urlsplit(os.environ["APP_BASE_URL"]); print(p.hostname, p.port or {"https": 443}.get(p.scheme, 80), sep=":")')"
export WEB_BIND
export CELERY_LOG_LEVEL="${CELERY_LOG_LEVEL:-WARNING}"
BASE="${APP_BASE_URL%/}"
# Payments in the demo go to localstripe (a stand-in for Stripe's API and stripe.js, from requirements-dev.txt)
# on loopback: test keys only, nothing leaves the machine. Production sets the STRIPE_* variables (docs/deploy.md).
STRIPE_PORT="${DEMO_STRIPE_PORT:-8420}"
mkdir -p "${HC_VAR_DIR:-var}"
export STRIPE_SECRET_KEY="${STRIPE_SECRET_KEY:-sk_test_demo}" STRIPE_PUBLISHABLE_KEY="${STRIPE_PUBLISHABLE_KEY:-pk_test_demo}"
export STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_ZGVtby1vbmx5LWRlbW8tb25seS1kZW1vLW9ubHk=}"
export STRIPE_API_BASE="${STRIPE_API_BASE:-http://127.0.0.1:$STRIPE_PORT}"
export STRIPE_JS_URL="${STRIPE_JS_URL:-$STRIPE_API_BASE/js.stripe.com/v3/}"
# The HL7 v2 listener (the Procfile's hl7 line): plain TCP on loopback, as embedded mode allows; production needs TLS.
export HL7_LISTEN_HOST=127.0.0.1 HL7_LISTEN_PORT="${DEMO_HL7_PORT:-2575}"
export SANDBOX_HL7_TARGET="${SANDBOX_HL7_TARGET:-127.0.0.1:$HL7_LISTEN_PORT}"
# The patients' emails come from the sandbox clinic (printed on the console; nothing is sent).
export DEFAULT_FROM_EMAIL="${DEFAULT_FROM_EMAIL:-Sandbox Health Clinic orders <orders@sandbox-health.example>}"

cat <<TXT

  healthcommerce demo (web, worker, beat and hl7 from the Procfile; Ctrl-C stops them)
  -----------------------------------------------------------------------------
  Sandbox EHR (start here):  $BASE/sandbox/
  HL7 v2 (MLLP, plain TCP):  127.0.0.1:$HL7_LISTEN_PORT   (the sandbox's "Send as HL7" sends there)
  Admin:                     $BASE/admin/   (user admin or support, password printed by demo_setup above;
                             TOTP code: SANDBOX_ENABLED=true .venv/bin/python manage.py staff_totp code admin)
  Patient purchase links are printed below by the console email and SMS backends (worker lines).
  Payments go to localstripe at $STRIPE_API_BASE: pay with card 4242 4242 4242 4242 (4000 0000 0000 0341 declines).

TXT
exec bash scripts/procfile.sh stripe "python -m tests.stripe_server --port $STRIPE_PORT >'${HC_VAR_DIR:-var}/localstripe.log' 2>&1"
