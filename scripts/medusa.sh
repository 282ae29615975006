#!/usr/bin/env bash
# `make medusa-setup`: install Medusa 2 from npm into commerce/medusa/node_modules (only when package-lock.json
# changed) and build the template database hc_medusa_template on the local PostgreSQL: migrated, then seeded by
# commerce/medusa/src/scripts/seed.ts (region, sales channel, stock location, shipping option, secret API key).
# The seeded ids and key go to $HC_VAR_DIR/medusa/seed.json (default var/medusa/seed.json) for the tests, which
# copy the template per module (CREATE DATABASE ... TEMPLATE hc_medusa_template). See commerce/medusa/README.md.
#
# Rebuilds the template only when package-lock.json, medusa-config.ts or seed.ts changed, or when seed.json does
# not belong to the template in the database (its build id is the database's comment).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MEDUSA_DIR="$ROOT/commerce/medusa"
VAR_DIR="${HC_VAR_DIR:-$ROOT/var}/medusa"
PG_URL="${MEDUSA_PG_URL:-postgres://postgres@127.0.0.1:5432}"
TEMPLATE="${MEDUSA_TEMPLATE_DB:-hc_medusa_template}"
SEED_JSON="$VAR_DIR/seed.json"

log() { printf 'medusa-setup: %s\n' "$*" >&2; }
psql_admin() { psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qAtX "$@"; }

install() {
  local stamp
  stamp="$MEDUSA_DIR/node_modules/.hc-installed-$(cksum <"$MEDUSA_DIR/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" ]]; then
    return
  fi
  command -v npm >/dev/null || { log "npm is missing: install Node.js 20.19+ (Debian: nodejs npm)"; exit 1; }
  log "installing Medusa from npm (about 1.5 minutes, 720 MB)"
  # The versions come from package-lock.json. Not `npm ci`: this registry's lock leaves out other platforms'
  # optional packages (@swc/core-darwin-*), which `npm ci` rejects; --no-save never rewrites the lock.
  (cd "$MEDUSA_DIR" && npm install --no-save --no-audit --no-fund --loglevel=error)
  rm -f "$MEDUSA_DIR"/node_modules/.hc-installed-*
  touch "$stamp"
}

template() {
  local stamp comment build_id env_db
  stamp="$(cat "$MEDUSA_DIR/package-lock.json" "$MEDUSA_DIR/medusa-config.ts" "$MEDUSA_DIR/src/scripts/seed.ts" \
    | cksum | cut -d' ' -f1)"
  comment="$(psql_admin -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$TEMPLATE'")"
  if [[ -f "$SEED_JSON" && -n "$comment" && "${comment%%:*}" == "$stamp" ]] \
    && grep -q "\"build_id\": \"${comment#*:}\"" "$SEED_JSON"; then
    log "template $TEMPLATE is up to date"
    return
  fi
  build_id="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  log "building template database $TEMPLATE (migrate about 15 s, seed about 5 s)"
  psql_admin -c "DROP DATABASE IF EXISTS $TEMPLATE WITH (FORCE)" -c "CREATE DATABASE $TEMPLATE"
  mkdir -p "$VAR_DIR"
  env_db=(
    DATABASE_URL="$PG_URL/$TEMPLATE" JWT_SECRET="setup-only" COOKIE_SECRET="setup-only"
    MEDUSA_DISABLE_TELEMETRY=true NODE_ENV=production HC_MEDUSA_SEED_OUT="$SEED_JSON.tmp"
  )
  (cd "$MEDUSA_DIR" && env "${env_db[@]}" node_modules/.bin/medusa db:migrate --execute-safe-links >"$VAR_DIR/migrate.log" 2>&1) \
    || { tail -20 "$VAR_DIR/migrate.log" >&2; exit 1; }
  (cd "$MEDUSA_DIR" && env "${env_db[@]}" node_modules/.bin/medusa exec ./src/scripts/seed.ts >"$VAR_DIR/seed.log" 2>&1) \
    || { tail -20 "$VAR_DIR/seed.log" >&2; exit 1; }
  node -e '
    const fs = require("fs"); const [file, buildId, template] = process.argv.slice(1);
    const seed = JSON.parse(fs.readFileSync(file + ".tmp", "utf8"));
    fs.writeFileSync(file, JSON.stringify({ ...seed, build_id: buildId, template }, null, 2) + "\n", { mode: 0o600 });
    fs.unlinkSync(file + ".tmp");
  ' "$SEED_JSON" "$build_id" "$TEMPLATE"
  psql_admin -c "COMMENT ON DATABASE $TEMPLATE IS '$stamp:$build_id'"
  log "template $TEMPLATE ready; ids and key in $SEED_JSON"
}

case "${1:-setup}" in
  install) install ;;
  template) template ;;
  setup)
    install
    template
    ;;
  *) echo "usage: $0 [setup|install|template]" >&2; exit 2 ;;
esac
