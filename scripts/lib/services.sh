# shellcheck shell=bash
# Sourced by scripts/*.sh. Makes Postgres and Redis reachable at the configured URLs: a server that
# already answers is reused; otherwise a local one is started from Debian's packages (installed when
# absent) with its data under .data/. Everything the project starts itself is recorded as
# .data/run/<name>.pid (+ .meta), and only those are stopped by `npm run down`.
#
# Needs bash >= 4.4. Works with or without node-env.sh sourced first (down.sh needs no Node).

if [ -z "${ROOT:-}" ]; then
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
DATA="${GATEWAY_DATA_DIR:-$ROOT/.data}"
RUN_DIR="$DATA/run"
LOG_DIR="$DATA/logs"

if ! declare -F log >/dev/null; then
  log() { printf '\033[1;34m[gateway]\033[0m %s\n' "$*" >&2; }
fi
warn() { printf '\033[1;33m[gateway] warning:\033[0m %s\n' "$*" >&2; }
die() {
  printf '\033[1;31m[gateway] error:\033[0m %s\n' "$*" >&2
  exit 1
}

# Names recorded by record_started in this shell, in start order (see stop_started_now).
STARTED_NOW=()
_APT_UPDATED=0

# --- small helpers ---------------------------------------------------------------------------------

# url_parse URL: sets URL_SCHEME URL_USER URL_PASS URL_HOST (no brackets) URL_PORT URL_PATH URL_QUERY.
url_parse() {
  local re='^([a-zA-Z][a-zA-Z0-9+.-]*)://(([^:@/]*)(:([^@/]*))?@)?(\[[^]/]*\]|[^]:/?#[]*)(:([0-9]*))?(/[^?#]*)?(\?[^#]*)?$'
  [[ $1 =~ $re ]] || return 1
  URL_SCHEME=${BASH_REMATCH[1]}
  URL_USER=${BASH_REMATCH[3]}
  URL_PASS=${BASH_REMATCH[5]}
  URL_HOST=${BASH_REMATCH[6]}
  URL_HOST=${URL_HOST#[}
  URL_HOST=${URL_HOST%]}
  URL_PORT=${BASH_REMATCH[8]}
  URL_PATH=${BASH_REMATCH[9]}
  URL_QUERY=${BASH_REMATCH[10]}
}

# redact URL: hides the password of a URL for log lines.
redact() {
  local re='^([^:/]+://[^:@/]*):[^@/]*@(.*)$'
  if [[ $1 =~ $re ]]; then printf '%s:***@%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; else printf '%s' "$1"; fi
}

is_loopback() {
  case "$1" in
    localhost | 127.* | ::1 | "") return 0 ;;
    *) return 1 ;;
  esac
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# rand_hex BYTES: BYTES random bytes as lowercase hex.
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

_as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 126
  fi
}

# --- Debian packages ---------------------------------------------------------------------------------

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

# ensure_apt_packages PKG...: installs the missing ones (one `apt-get update` per run at most). Services
# are not started by the packages' maintainer scripts: the project starts its own under .data/.
ensure_apt_packages() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "missing packages: ${missing[*]} (and no apt-get here); install them and run again"
  if [ "$(id -u)" != 0 ] && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    die "missing Debian packages: ${missing[*]}; run as root, allow passwordless sudo, or: sudo apt-get install ${missing[*]}"
  fi
  mkdir -p "$LOG_DIR"
  local apt_log="$LOG_DIR/apt.log"
  local apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  log "installing Debian packages: ${missing[*]} (output in ${apt_log#"$ROOT"/})"
  if [ "$_APT_UPDATED" = 0 ]; then
    if ! _as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >>"$apt_log" 2>&1; then
      tail -n 20 "$apt_log" >&2
      die "apt-get update failed"
    fi
    _APT_UPDATED=1
  fi
  # Debian's maintainer scripts would start the system's postgresql/redis/registry/sshd on their
  # default ports; policy-rc.d (exit 101 = "action forbidden") keeps them stopped.
  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [ ! -e "$policy" ]; then
    _as_root sh -c "printf '#!/bin/sh\nexit 101\n' >'$policy' && chmod 755 '$policy'" && created=1
  fi
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
    "${missing[@]}" >>"$apt_log" 2>&1 || rc=$?
  if [ "$created" = 1 ]; then _as_root rm -f "$policy" || true; fi
  if [ "$rc" != 0 ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install ${missing[*]} failed"
  fi
  # Their units would start the system's servers at the next boot, on the ports the scripts look at first
  # (a Postgres asking for passwords on 5432, a registry with other settings on 5000): those just installed
  # are disabled, as the scripts start their own. sshd is left as it is.
  if command -v systemctl >/dev/null 2>&1; then
    for p in "${missing[@]}"; do
      case "$p" in
      postgresql | redis-server | docker-registry)
        _as_root systemctl disable --quiet "$p" >>"$apt_log" 2>&1 || true
        ;;
      esac
    done
  fi
  log "installed ${missing[*]}"
}

# --- processes the project started -----------------------------------------------------------------

_alive() {
  local pid=$1 state
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

# record_started NAME PID SIGNAL MATCH: remembers a process this project started. SIGNAL stops it
# gracefully; MATCH must occur in its command line (guards against a recycled pid).
record_started() {
  local name=$1 pid=$2 signal=${3:-TERM} match=${4:-}
  mkdir -p "$RUN_DIR"
  printf '%s\n' "$pid" >"$RUN_DIR/$name.pid"
  printf 'signal=%s\nmatch=%s\nstarted=%s\n' "$signal" "$match" "$(date -u +%FT%TZ)" >"$RUN_DIR/$name.meta"
  STARTED_NOW+=("$name")
}

# running_pid NAME: prints the pid of a recorded process that is still alive; fails otherwise.
running_pid() {
  local name=$1 pid match=""
  [ -f "$RUN_DIR/$name.pid" ] || return 1
  pid=$(head -n 1 "$RUN_DIR/$name.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  _alive "$pid" || return 1
  [ -f "$RUN_DIR/$name.meta" ] && match=$(sed -n 's/^match=//p' "$RUN_DIR/$name.meta")
  if [ -n "$match" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$match"; then
    return 1
  fi
  printf '%s\n' "$pid"
}

# stop_started NAME [TIMEOUT_S]: stops a recorded process (graceful signal, then KILL) and forgets it.
stop_started() {
  local name=$1 timeout=${2:-30} pid signal=TERM i
  if pid=$(running_pid "$name"); then
    [ -f "$RUN_DIR/$name.meta" ] && signal=$(sed -n 's/^signal=//p' "$RUN_DIR/$name.meta")
    log "stopping $name (pid $pid)"
    kill -s "${signal:-TERM}" "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      _alive "$pid" || break
      sleep 0.1
    done
    if _alive "$pid"; then
      warn "$name did not stop within ${timeout}s; killing it"
      kill -s KILL "$pid" 2>/dev/null || true
    fi
  elif [ -f "$RUN_DIR/$name.pid" ]; then
    log "$name is not running (stale pid file removed)"
  fi
  rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.meta"
}

# stop_started_now: stops, newest first, what record_started recorded in this shell.
stop_started_now() {
  local i
  for ((i = ${#STARTED_NOW[@]} - 1; i >= 0; i--)); do
    stop_started "${STARTED_NOW[i]}" || true
  done
  STARTED_NOW=()
}

# start_bg NAME MATCH LOGFILE CMD...: starts CMD detached (no stdin, output to LOGFILE), records it.
start_bg() {
  local name=$1 match=$2 logfile=$3
  shift 3
  mkdir -p "$(dirname "$logfile")"
  nohup "$@" </dev/null >>"$logfile" 2>&1 &
  record_started "$name" "$!" TERM "$match"
}

# _owner NAME: "project's" when the project started NAME, "running" otherwise (for log lines).
_owner() {
  if running_pid "$1" >/dev/null; then printf "project's"; else printf 'running'; fi
}

# --- Postgres --------------------------------------------------------------------------------------

_pg_bindir() {
  local d
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] || return 1
  printf '%s\n' "$d"
}

_pg_ready() {
  pg_isready -q -t 3 -d "$1" >/dev/null 2>&1
}

# _pg_build_url DB: the parsed URL (url_parse) with another database.
_pg_build_url() {
  local auth="" host=$URL_HOST
  [ -n "$URL_USER" ] && auth="$URL_USER${URL_PASS:+:$URL_PASS}@"
  [[ $host == *:* ]] && host="[$host]"
  printf '%s://%s%s%s/%s%s' "$URL_SCHEME" "$auth" "$host" "${URL_PORT:+:$URL_PORT}" "$1" "$URL_QUERY"
}

# ensure_postgres [URL]: Postgres answers at URL and URL's database exists.
ensure_postgres() {
  local url=${1:-postgres://postgres@127.0.0.1:5432/registry_gateway}
  if ! url_parse "$url" || ! [[ $URL_SCHEME =~ ^postgres(ql)?$ ]]; then
    die "not a postgres:// URL: $(redact "$url")"
  fi
  local host=${URL_HOST:-127.0.0.1} port=${URL_PORT:-5432} user=${URL_USER:-$(id -un)}
  local db=${URL_PATH#/}
  db=${db:-$user}

  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    # The client alone is enough for a server that already runs; the server package brings it too.
    if port_open "$host" "$port"; then ensure_apt_packages postgresql-client; else ensure_apt_packages postgresql; fi
  fi

  if _pg_ready "$url"; then
    log "Postgres: reusing the $(_owner "postgres-$port") server at $host:$port"
  else
    _pg_start_local "$host" "$port" "$user"
  fi
  _pg_ensure_database "$url" "$db"
}

_pg_start_local() {
  local host=$1 port=$2 user=$3
  local name="postgres-$port"
  is_loopback "$host" || die "Postgres at $host:$port does not answer, and only a local one can be started here"
  if running_pid "$name" >/dev/null; then
    log "Postgres: the project's server on port $port runs but does not answer yet; waiting"
  elif port_open "$host" "$port"; then
    die "something listens on $host:$port but does not answer as Postgres; free the port or change the URL"
  else
    ensure_apt_packages postgresql
    local bindir base pgdata runas=()
    bindir=$(_pg_bindir) || die "Postgres server binaries not found under /usr/lib/postgresql"
    base="$DATA/postgres/$port"
    mkdir -p "$base"
    if [ "$(id -u)" = 0 ]; then
      # Postgres refuses to run as root: the cluster belongs to the postgres user.
      id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (it comes with the postgresql package)"
      runas=(runuser -u postgres --)
      chown postgres: "$base"
      if ! (cd / && runuser -u postgres -- test -w "$base"); then
        # The checkout is not reachable for other users (e.g. under /root): keep the cluster in the
        # postgres user's home instead, under a name derived from this checkout.
        local key
        key=$(printf '%s' "$ROOT" | cksum | cut -d ' ' -f 1)
        base="/var/lib/postgresql/registry-gateway/$key-$port"
        warn "the postgres user cannot reach $DATA; keeping this cluster in $base"
        mkdir -p "$base"
        chown postgres: "$(dirname "$base")" "$base"
      fi
    fi
    pgdata="$base/data"
    if [ ! -s "$pgdata/PG_VERSION" ]; then
      log "Postgres: creating a local cluster in ${pgdata#"$ROOT"/} (superuser '$user', trust on loopback)"
      if ! (cd / && "${runas[@]}" "$bindir/initdb" -D "$pgdata" -U "$user" -A trust -E UTF8 --no-locale --no-sync) \
        >"$base/initdb.log" 2>&1; then
        tail -n 20 "$base/initdb.log" >&2
        die "initdb failed (log: $base/initdb.log)"
      fi
      # Development settings: TCP on loopback only, no unix socket (no clash with a system cluster),
      # room for parallel test suites, and no fsync (throw-away data, much faster tests).
      cat >>"$pgdata/postgresql.conf" <<'EOF'

# --- registry-gateway development settings ---
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    local listen=$host
    log "Postgres: starting a local server on $listen:$port (log: ${base#"$ROOT"/}/postgres.log)"
    if ! (cd / && "${runas[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$base/postgres.log" -w -t 60 \
      -o "-p $port -h $listen" start) >/dev/null 2>&1; then
      tail -n 20 "$base/postgres.log" >&2 || true
      die "Postgres did not start (log: $base/postgres.log)"
    fi
    local pid
    pid=$(head -n 1 "$pgdata/postmaster.pid")
    # SIGINT is Postgres' "fast" shutdown (SIGTERM would wait for every client to disconnect).
    record_started "$name" "$pid" INT "postgres"
  fi
  local i
  for ((i = 0; i < 60; i++)); do
    pg_isready -q -t 3 -h "$host" -p "$port" >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "Postgres on $host:$port did not become ready"
}

_pg_ensure_database() {
  local url=$1 db=$2 out admin="" candidate
  psql "$url" -XtAqc 'select 1' >/dev/null 2>&1 && return 0
  for candidate in postgres template1; do
    if psql "$(_pg_build_url "$candidate")" -XtAqc 'select 1' >/dev/null 2>&1; then
      admin=$(_pg_build_url "$candidate")
      break
    fi
  done
  if [ -z "$admin" ]; then
    out=$(psql "$url" -XtAqc 'select 1' 2>&1 || true)
    die "cannot connect to $(redact "$url"): $out"
  fi
  out=$(psql "$admin" -XtAq -v ON_ERROR_STOP=1 -v db="$db" <<<"select 1 from pg_database where datname = :'db'" 2>&1) ||
    die "cannot query databases: $out"
  if [ "$out" != 1 ]; then
    log "Postgres: creating database \"$db\""
    out=$(psql "$admin" -Xq -v ON_ERROR_STOP=1 -v db="$db" <<<'create database :"db"' 2>&1) ||
      die "cannot create database \"$db\": $out"
  fi
  out=$(psql "$url" -XtAqc 'select 1' 2>&1) || die "cannot connect to $(redact "$url"): $out"
}

# --- Redis -----------------------------------------------------------------------------------------

_redis_ping() {
  local url=$1 host=$2 port=$3 reply
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 5 redis-cli -u "$url" --no-auth-warning ping 2>/dev/null) || return 1
    [ "$reply" = PONG ]
  else
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && IFS= read -r line <&3 &&
      [[ $line == +PONG* ]]' _ "$host" "$port" 2>/dev/null
  fi
}

# ensure_redis [URL]: Redis answers PING at URL.
ensure_redis() {
  local url=${1:-redis://127.0.0.1:6379}
  if ! url_parse "$url" || ! [[ $URL_SCHEME =~ ^rediss?$ ]]; then
    die "not a redis:// URL: $(redact "$url")"
  fi
  local host=${URL_HOST:-127.0.0.1} port=${URL_PORT:-6379} pass=$URL_PASS name
  name="redis-${URL_PORT:-6379}"
  if _redis_ping "$url" "$host" "$port"; then
    log "Redis: reusing the $(_owner "$name") server at $host:$port"
    return 0
  fi
  [ "$URL_SCHEME" = redis ] || die "Redis at $(redact "$url") does not answer (TLS servers are not started here)"
  is_loopback "$host" || die "Redis at $host:$port does not answer, and only a local one can be started here"
  if ! running_pid "$name" >/dev/null; then
    port_open "$host" "$port" &&
      die "something listens on $host:$port but does not answer PING (wrong password?); free the port or change the URL"
    ensure_apt_packages redis-server
    local dir="$DATA/redis/$port" bind=("$host")
    mkdir -p "$dir"
    # "-" marks an optional address: localhost works without IPv6 too.
    [ "$host" = localhost ] && bind=(127.0.0.1 -::1)
    rm -f "$dir/redis.pid"
    log "Redis: starting a local server on $host:$port (data and log in ${dir#"$ROOT"/})"
    local args=(--port "$port" --bind "${bind[@]}" --daemonize yes --pidfile "$dir/redis.pid"
      --logfile "$dir/redis.log" --dir "$dir" --dbfilename dump.rdb --appendonly no)
    [ -n "$pass" ] && args+=(--requirepass "$pass")
    (cd "$dir" && redis-server "${args[@]}" </dev/null >/dev/null 2>&1) || {
      tail -n 20 "$dir/redis.log" >&2 || true
      die "redis-server did not start (log: $dir/redis.log)"
    }
    local i
    for ((i = 0; i < 50; i++)); do
      [ -s "$dir/redis.pid" ] && break
      sleep 0.1
    done
    [ -s "$dir/redis.pid" ] || die "redis-server wrote no pid file (log: $dir/redis.log)"
    record_started "$name" "$(head -n 1 "$dir/redis.pid")" TERM redis-server
  fi
  local i
  for ((i = 0; i < 100; i++)); do
    _redis_ping "$url" "$host" "$port" && return 0
    sleep 0.1
  done
  tail -n 20 "$DATA/redis/$port/redis.log" >&2 || true
  die "Redis on $host:$port did not answer PING"
}

# --- HTTP ------------------------------------------------------------------------------------------

# http_status URL [TIMEOUT_MS]: prints the HTTP status (0 when nothing answers). Needs Node.
http_status() {
  node -e '
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), Number(process.argv[2])).unref();
    fetch(process.argv[1], { signal: ctl.signal, redirect: "manual" }).then(
      (r) => console.log(r.status),
      () => console.log(0),
    );' "$1" "${2:-3000}" 2>/dev/null || echo 0
}
