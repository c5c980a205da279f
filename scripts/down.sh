#!/usr/bin/env bash
# `npm run down`: stops what `npm run up` (or a test/bench run with KEEP_SERVICES=1) started: API,
# worker, demo registry, and the Postgres/Redis servers the project started itself (pid files in
# .data/run/). Servers that were already running are left alone. Data in .data/ is kept; delete that
# folder for a clean slate. Safe to run any number of times.
set -euo pipefail
# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"

shopt -s nullglob
pidfiles=("$RUN_DIR"/*.pid)
if [ ${#pidfiles[@]} -eq 0 ]; then
  log "nothing to stop (no processes recorded in ${RUN_DIR#"$ROOT"/})"
  exit 0
fi

# Clients first, then the servers they use.
order=(api worker registry)
for f in "$RUN_DIR"/registry-*.pid "$RUN_DIR"/redis-*.pid "$RUN_DIR"/postgres-*.pid "${pidfiles[@]}"; do
  order+=("$(basename "$f" .pid)")
done
declare -A seen=()
for name in "${order[@]}"; do
  [ -n "${seen[$name]:-}" ] && continue
  seen[$name]=1
  [ -f "$RUN_DIR/$name.pid" ] || continue
  case "$name" in
    postgres-*) stop_started "$name" 60 ;;
    *) stop_started "$name" 20 ;;
  esac
done
log "stopped everything the project had started"
