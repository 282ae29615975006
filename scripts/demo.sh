#!/usr/bin/env bash
# Run the demo the way production runs (gunicorn, a Celery worker, Celery beat: the Procfile), on the embedded
# defaults (SQLite, the filesystem broker, console email) with the sandbox EHR mounted. Listens on the host and
# port of APP_BASE_URL (default http://127.0.0.1:8000). Called by `make demo` after demo-setup; Ctrl-C stops all.
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

cat <<TXT

  healthcommerce demo (web, worker and beat from the Procfile; Ctrl-C stops them)
  -----------------------------------------------------------------------------
  Sandbox EHR (start here):  $BASE/sandbox/
  Admin:                     $BASE/admin/   (user: admin, password: printed by demo_setup above)
  Patient purchase links are printed below by the console email and SMS backends (worker lines).

TXT
exec honcho --no-colour start
