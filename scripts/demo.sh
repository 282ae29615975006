#!/usr/bin/env bash
# Run the web app and a real Celery worker (with the outbox relay schedule) on 127.0.0.1:8000.
# Called by `make demo` after migrate + sandbox_load + demo_setup. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export SANDBOX_ENABLED="${SANDBOX_ENABLED:-true}"

$BIN/celery -A healthcommerce worker --beat --loglevel=WARNING --concurrency=2 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

cat <<TXT

  healthcommerce demo
  -------------------
  Sandbox EHR (start here):  http://127.0.0.1:8000/sandbox/
  Admin:                     http://127.0.0.1:8000/admin/   (user: admin, password: printed by demo_setup above)
  Patient purchase links are printed below by the console email backend.

TXT
$BIN/python manage.py runserver 127.0.0.1:8000 --noreload --insecure
