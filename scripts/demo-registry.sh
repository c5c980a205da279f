#!/usr/bin/env bash
# The demo registry of `npm run up`, run as a service that the gateway's GC executor can drive (the
# registries file written by up.sh points its `local` executor's lifecycle here):
#   scripts/demo-registry.sh start | start-readonly | stop | restart | restart-readonly
# Read-only mode comes from REGISTRY_STORAGE_MAINTENANCE_READONLY, so the config file never changes.
# Environment: DEMO_REGISTRY_ADDR (default: the address in its config, else 127.0.0.1:5000).
set -euo pipefail
# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"

DIR="$DATA/registry"
CONFIG="$DIR/config.yml"
ADDR="${DEMO_REGISTRY_ADDR:-$(sed -n 's/^  addr: //p' "$CONFIG" 2>/dev/null | head -n 1)}"
ADDR="${ADDR:-127.0.0.1:5000}"
URL="http://$ADDR"

write_config() {
  mkdir -p "$DIR/storage" "$LOG_DIR" "$RUN_DIR"
  cat >"$CONFIG" <<CONF
# Written by scripts/demo-registry.sh: the demo registry of \`npm run up\`.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
CONF
}

start() {
  local mode=$1 pid i
  if pid=$(running_pid registry); then
    log "demo registry: already running at $URL (pid $pid)"
    return 0
  fi
  port_open "${ADDR%:*}" "${ADDR##*:}" && die "something else listens on $ADDR; free the port or set DEMO_REGISTRY_ADDR"
  write_config
  log "demo registry: starting docker-registry at $URL ($mode; storage in ${DIR#"$ROOT"/}/storage)"
  if [ "$mode" = readonly ]; then
    start_bg registry docker-registry "$LOG_DIR/registry.log" \
      env REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled":true}' docker-registry serve "$CONFIG"
  else
    start_bg registry docker-registry "$LOG_DIR/registry.log" docker-registry serve "$CONFIG"
  fi
  for ((i = 0; i < 100; i++)); do
    [ "$(http_status "$URL/v2/")" = 200 ] && return 0
    running_pid registry >/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$LOG_DIR/registry.log" >&2 || true
  die "the demo registry did not start (log: ${LOG_DIR#"$ROOT"/}/registry.log)"
}

case "${1:-}" in
  start) start normal ;;
  start-readonly) start readonly ;;
  stop) stop_started registry 20 ;;
  restart) stop_started registry 20 && start normal ;;
  restart-readonly) stop_started registry 20 && start readonly ;;
  *) die "usage: $0 start|start-readonly|stop|restart|restart-readonly" ;;
esac
