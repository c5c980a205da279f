#!/usr/bin/env bash
# `npm run up`: the whole gateway on this machine. Node 24 and npm packages, Postgres and Redis
# (reused when they answer at the configured URLs, else started under .data/), a demo distribution
# registry with a few sample images, migrations, then the API and the worker in the background.
# Running it again rebuilds and restarts the API and worker; `npm run down` stops what it started.
#
# Everything is configured through the environment; the values below are only defaults:
#   DATABASE_URL          postgres://postgres@127.0.0.1:5432/registry_gateway  (database created if missing)
#   REDIS_URL             redis://127.0.0.1:6379
#   HOST / PORT           127.0.0.1 / 8080   (HOST=0.0.0.0 to listen on every interface)
#   DEMO_REGISTRY_ADDR    127.0.0.1:5000     (reused when a registry already answers there)
#   DEMO_SEED             1                  (0: do not push the sample images)
#   REGISTRIES_FILE       .data/registries.yml (written by this script when left at its default)
#   SECRETS_KEY, GATEWAY_ADMIN_TOKEN  generated once into .data/secrets.env (development values)
#   NODE_ENV development, LOG_LEVEL info, UP_TIMEOUT 60 (seconds to wait for /health/ready),
#   MIGRATE_TIMEOUT 600 (seconds)
set -euo pipefail
# shellcheck source=scripts/node-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-env.sh"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"
cd "$ROOT"

export NODE_ENV="${NODE_ENV:-development}"
export LOG_LEVEL="${LOG_LEVEL:-info}"
export HOST="${HOST:-127.0.0.1}"
export PORT="${PORT:-8080}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/registry_gateway}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
DEMO_REGISTRY_ADDR="${DEMO_REGISTRY_ADDR:-127.0.0.1:5000}"
DEMO_REGISTRY_URL="http://$DEMO_REGISTRY_ADDR"
DEMO_SEED="${DEMO_SEED:-1}"
UP_TIMEOUT="${UP_TIMEOUT:-60}"
mkdir -p "$DATA" "$LOG_DIR" "$RUN_DIR"

ensure_deps
ensure_apt_packages docker-registry
ensure_postgres "$DATABASE_URL"
ensure_redis "$REDIS_URL"

# --- demo registry -----------------------------------------------------------------------------------
# Started through scripts/demo-registry.sh, which the gateway's GC then drives too (fence, cache restart).
demo_registry_owned=1
start_demo_registry() {
  local status
  if running_pid registry >/dev/null; then
    bash "$ROOT/scripts/demo-registry.sh" start
    return 0
  fi
  status=$(http_status "$DEMO_REGISTRY_URL/v2/")
  if [ "$status" = 200 ] || [ "$status" = 401 ]; then
    log "demo registry: reusing the registry that answers at $DEMO_REGISTRY_URL (GC is not configured for it)"
    demo_registry_owned=0
    return 0
  fi
  DEMO_REGISTRY_ADDR="$DEMO_REGISTRY_ADDR" bash "$ROOT/scripts/demo-registry.sh" start
}
start_demo_registry

# --- configuration files ----------------------------------------------------------------------------
secrets_file="$DATA/secrets.env"
if [ ! -f "$secrets_file" ]; then
  log "generating development secrets in ${secrets_file#"$ROOT"/}"
  (umask 077 && echo "# Development secrets of \`npm run up\` (generated once; not for production)." >"$secrets_file")
fi
secret_value() { sed -n "s/^$1=//p" "$secrets_file" | tail -n 1; }
[ -n "$(secret_value SECRETS_KEY)" ] || printf 'SECRETS_KEY=%s\n' "$(rand_hex 32)" >>"$secrets_file"
[ -n "$(secret_value GATEWAY_ADMIN_TOKEN)" ] ||
  printf 'GATEWAY_ADMIN_TOKEN=%s\n' "rg_dev_$(rand_hex 24)" >>"$secrets_file"
export SECRETS_KEY="${SECRETS_KEY:-$(secret_value SECRETS_KEY)}"
export GATEWAY_ADMIN_TOKEN="${GATEWAY_ADMIN_TOKEN:-$(secret_value GATEWAY_ADMIN_TOKEN)}"

default_registries_file="$DATA/registries.yml"
export REGISTRIES_FILE="${REGISTRIES_FILE:-$default_registries_file}"
if [ "$REGISTRIES_FILE" = "$default_registries_file" ]; then
  cat >"$REGISTRIES_FILE" <<EOF
# Written by scripts/up.sh: the registries of \`npm run up\`.
registries:
  - name: demo
    url: $DEMO_REGISTRY_URL
EOF
  if [ "$demo_registry_owned" = 1 ]; then
    ctl="$ROOT/scripts/demo-registry.sh"
    cat >>"$REGISTRIES_FILE" <<EOF
    # GC runs docker-registry garbage-collect on this machine, with the registry read-only meanwhile.
    gc:
      executor:
        type: local
        command: [docker-registry]
        configPath: $DATA/registry/config.yml
        storagePath: $DATA/registry/storage
        env: { DEMO_REGISTRY_ADDR: "$DEMO_REGISTRY_ADDR" }
        lifecycle:
          stop: [bash, $ctl, stop]
          start: [bash, $ctl, start]
          startReadOnly: [bash, $ctl, start-readonly]
          restart: [bash, $ctl, restart]
          restartReadOnly: [bash, $ctl, restart-readonly]
      fence: readonly
      cache: { type: inmemory }
      graceSeconds: 0
EOF
  fi
fi

# --- build, migrate, seed ---------------------------------------------------------------------------
log "building"
npm run --silent build
log "running migrations"
timeout "${MIGRATE_TIMEOUT:-600}" node dist/src/database/migrate.js ||
  die "migrations failed or hung (limit MIGRATE_TIMEOUT=${MIGRATE_TIMEOUT:-600}s)"

seed_note=""
if [ "$DEMO_SEED" = 1 ]; then
  if [ ! -f scripts/seed-demo.ts ]; then
    seed_note="  Note: scripts/seed-demo.ts is missing; the demo registry has no sample images."
  else
    log "pushing the sample images to $DEMO_REGISTRY_URL"
    # A failed seed leaves a working gateway over a registry with fewer images: say so, go on.
    npx tsx scripts/seed-demo.ts "$DEMO_REGISTRY_URL" ||
      seed_note="  Note: pushing the sample images failed (see above); run: npx tsx scripts/seed-demo.ts $DEMO_REGISTRY_URL"
  fi
  [ -z "$seed_note" ] || warn "${seed_note#  Note: }"
fi

# --- API and worker ---------------------------------------------------------------------------------
for name in api worker; do
  if pid=$(running_pid "$name"); then
    log "$name is already running (pid $pid): restarting it with the new build"
    stop_started "$name" 20
  fi
done
probe_host=$HOST
case "$probe_host" in 0.0.0.0 | :: | "") probe_host=127.0.0.1 ;; esac
[[ $probe_host == *:* ]] && probe_host="[$probe_host]"
base_url="http://$probe_host:$PORT"
if port_open "${probe_host//[\[\]]/}" "$PORT"; then
  die "port $PORT is taken by a process this project did not start; stop it or set PORT"
fi

node_bin="$(command -v node)"
log "starting the API on $base_url and the worker (logs in ${LOG_DIR#"$ROOT"/})"
{ printf '\n=== %s npm run up ===\n' "$(date -u +%FT%TZ)"; } | tee -a "$LOG_DIR/api.log" >>"$LOG_DIR/worker.log"
declare -A log_offset=([api]=$(stat -c %s "$LOG_DIR/api.log") [worker]=$(stat -c %s "$LOG_DIR/worker.log"))
start_bg api dist/src/main.js "$LOG_DIR/api.log" "$node_bin" dist/src/main.js
start_bg worker dist/src/worker.js "$LOG_DIR/worker.log" "$node_bin" dist/src/worker.js

ready=0
for ((i = 0; i < UP_TIMEOUT * 2; i++)); do
  if [ "$(http_status "$base_url/health/ready" 2000)" = 200 ]; then
    ready=1
    break
  fi
  running_pid api >/dev/null || break
  sleep 0.5
done
failed=""
[ "$ready" = 1 ] || failed=api
running_pid worker >/dev/null || failed="${failed:+$failed }worker"
if [ -n "$failed" ]; then
  for name in $failed; do
    warn "$name is not healthy; last lines of ${LOG_DIR#"$ROOT"/}/$name.log:"
    tail -c +"$((log_offset[$name] + 1))" "$LOG_DIR/$name.log" | tail -n 30 >&2 || true
  done
  stop_started worker 20
  stop_started api 20
  die "the gateway did not come up (GET $base_url/health/ready must answer 200 within ${UP_TIMEOUT}s)"
fi

if [ "$GATEWAY_ADMIN_TOKEN" = "$(secret_value GATEWAY_ADMIN_TOKEN)" ]; then
  token_hint="TOKEN=\$(sed -n 's/^GATEWAY_ADMIN_TOKEN=//p' ${secrets_file#"$ROOT"/})"
else
  # shellcheck disable=SC2016 # printed for the user's shell
  token_hint='TOKEN=$GATEWAY_ADMIN_TOKEN   # the value from your environment'
fi

cat >&2 <<EOF

  Registry Gateway is up.
    API        $base_url/api/v1
    Docs       $base_url/docs
    GraphQL    $base_url/graphql
    Metrics    $base_url/metrics
    Queues     $base_url/queues
    Health     $base_url/health/ready
    Demo registry  $DEMO_REGISTRY_URL  (registered as "demo" in ${REGISTRIES_FILE#"$ROOT"/})

  Admin token (GATEWAY_ADMIN_TOKEN):
    $token_hint
    curl -H "Authorization: Bearer \$TOKEN" $base_url/api/v1/registries
    (it is a global admin: create service accounts, tokens and role bindings with it, see the README's
     "Authentication and access control"; the queues dashboard takes it as the password of any user)

  Logs: ${LOG_DIR#"$ROOT"/}/api.log, ${LOG_DIR#"$ROOT"/}/worker.log, ${LOG_DIR#"$ROOT"/}/registry.log
  Stop: npm run down
$seed_note
EOF
