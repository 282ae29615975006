#!/usr/bin/env bash
# `make hl7-peer-setup`: install the independent HL7 v2 peer the intake tests run against, node-hl7-client and
# node-hl7-server from npm, into tests/peers/hl7/node_modules with `npm ci` (exactly the versions and hashes of
# tests/peers/hl7/package-lock.json). A no-op, without the network, while the installed tree matches the lock.
# Needs Node.js 20.15+ and npm (node-hl7-client 3.2.0's engines; its 4.x needs Node.js 22). See
# tests/peers/hl7/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEER_DIR="$ROOT/tests/peers/hl7"

log() { printf 'hl7-peer-setup: %s\n' "$*" >&2; }

stamp="$PEER_DIR/node_modules/.hc-installed-$(cksum <"$PEER_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" ]]; then
  log "up to date"
  exit 0
fi
command -v node >/dev/null && command -v npm >/dev/null \
  || { log "node and npm are missing: install Node.js 20.15+ (Debian: nodejs npm)"; exit 1; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 15) ? 0 : 1)' \
  || { log "Node.js $(node --version) is too old: node-hl7-client 3.2.0 needs 20.15+"; exit 1; }
log "installing node-hl7-client and node-hl7-server from npm (a few seconds, under 2 MB)"
(cd "$PEER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
touch "$stamp"
log "installed: $(cd "$PEER_DIR/node_modules" && for name in node-hl7-client node-hl7-server; do
  printf '%s %s ' "$name" "$(node -p "JSON.parse(require('fs').readFileSync('$name/package.json')).version")"
done)"
