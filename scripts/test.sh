#!/usr/bin/env bash
# `npm test`: every check CI runs, on a fresh Debian machine too. Puts Node 24 on PATH, installs npm
# dependencies, makes Postgres and Redis reachable (reusing running servers, else starting local ones
# under .data/), installs the Debian packages the e2e suites start themselves (docker-registry,
# openssh-server, openssl), then runs lint, typecheck, build and vitest. Extra arguments go to vitest:
#   npm test -- test/catalog.e2e-spec.ts
# Environment (defaults):
#   TEST_DATABASE_URL  postgres://postgres@127.0.0.1:5432/postgres  (suites create their own databases)
#   TEST_REDIS_URL     redis://127.0.0.1:6379                        (suites use their own key prefix)
#   TEST_STEPS         "lint typecheck build vitest"                 (run a subset, e.g. TEST_STEPS=vitest)
#   KEEP_SERVICES      0; 1 keeps the Postgres/Redis this run started (stop them with `npm run down`)
set -euo pipefail
# shellcheck source=scripts/node-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-env.sh"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"
cd "$ROOT"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
TEST_STEPS="${TEST_STEPS:-lint typecheck build vitest}"

ensure_deps
ensure_apt_packages docker-registry openssh-server openssl
if [ "${KEEP_SERVICES:-0}" != 1 ]; then
  # Leave the machine as it was: servers this run started stop when it ends (data stays in .data/).
  trap 'stop_started_now' EXIT
fi
ensure_postgres "$TEST_DATABASE_URL"
ensure_redis "$TEST_REDIS_URL"

results=()
failed=0
run_step() {
  local name=$1 start=$SECONDS rc=0
  shift
  case " $TEST_STEPS " in
    *" $name "*) ;;
    *)
      results+=("skip  $name")
      return 0
      ;;
  esac
  log "── $name: $*"
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    results+=("ok    $name ($((SECONDS - start))s)")
  else
    results+=("FAIL  $name ($((SECONDS - start))s, exit $rc)")
    failed=1
  fi
}

run_step lint npm run lint
run_step typecheck npm run typecheck
run_step build npm run build
# The JSON report gives the closing "N passed, N failed" line; default output stays as it is.
report="$DATA/vitest-report.json"
rm -f "$report"
mkdir -p "$DATA"
run_step vitest npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"

log "── summary"
for r in "${results[@]}"; do printf '  %s\n' "$r" >&2; done
if [ "$failed" != 0 ]; then log "FAILED"; else log "all checks passed"; fi
if [ -s "$report" ]; then
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$report" || true
fi
exit "$failed"
