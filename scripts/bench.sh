#!/usr/bin/env bash
# `npm run bench`: builds, then runs bench/run.ts, which prints ratios against a direct baseline
# measured in the same run. Needs the same servers as the tests (same TEST_* variables and defaults,
# see scripts/test.sh); extra arguments go to bench/run.ts.
set -euo pipefail
# shellcheck source=scripts/node-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-env.sh"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"
cd "$ROOT"

if [ ! -f bench/run.ts ]; then
  log "bench/run.ts does not exist yet: there are no benchmarks to run"
  exit 1
fi

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

ensure_deps
ensure_apt_packages docker-registry
if [ "${KEEP_SERVICES:-0}" != 1 ]; then
  trap 'stop_started_now' EXIT
fi
ensure_postgres "$TEST_DATABASE_URL"
ensure_redis "$TEST_REDIS_URL"

npm run build
npx tsx bench/run.ts "$@"
