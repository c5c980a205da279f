import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.js';

/**
 * A CNCF Distribution registry run the way operators run one: as a detached service (own session,
 * `setsid`) controlled by a generated shell script, so that GC executors can stop, start and restart
 * it with plain argv lists, locally or over SSH, exactly as they would a systemd unit:
 *
 *   <workDir>/registryctl start | start-readonly | stop | restart | restart-readonly | status
 *
 * `start*` returns once GET /v2/ answers; `stop` once the process is gone. Read-only mode comes from
 * the environment (`REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled":true}'`), the way a container
 * would be switched, so the config file never changes.
 *
 * Nothing outlives the test process: cleanup() stops the service, an 'exit' hook runs `stop`, and a
 * watchdog (a detached shell blocked on a pipe from this process) runs `stop` when the pipe closes,
 * which also happens on SIGKILL. The watchdog stops whatever PID the pidfile holds at that moment, so a
 * registry restarted by an executor is covered too.
 */

const REGISTRY_BINARY = 'docker-registry';
const START_TIMEOUT_S = 20;
const STOP_TIMEOUT_S = 10;

export interface RegistryServiceOptions {
  /** storage.cache.blobdescriptor; default 'inmemory' (the upstream default). */
  cache?: 'inmemory' | 'redis' | 'none';
  /** Used when cache is 'redis'. */
  redis?: { addr: string; db?: number };
  /** Default: a free loopback port. */
  port?: number;
  /** Storage folder; default `<workDir>/data`. A caller's folder is never removed by cleanup(). */
  storageDir?: string;
  /** storage.delete.enabled; default true. */
  deleteEnabled?: boolean;
  /** log.level; default 'info' (a real GC then logs every blob and manifest it deletes). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Start right away (default true); start-readonly with 'readonly'. */
  start?: boolean | 'readonly';
}

export interface RegistryLifecycleArgv {
  stop: string[];
  start: string[];
  startReadOnly: string[];
  restart: string[];
  restartReadOnly: string[];
}

const liveServices = new Set<RegistryService>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const service of liveServices) service.stopSync();
  });
}

export class RegistryService {
  readonly url: string;
  readonly configPath: string;
  readonly storagePath: string;
  /** Sent by this registry in every answer (X-Registry-Instance): the readiness check trusts only it. */
  private readonly instance = randomBytes(8).toString('hex');
  readonly scriptPath: string;
  readonly pidFile: string;
  readonly logPath: string;
  /** argv lists for an executor's `lifecycle` (run them locally or on the SSH host: same machine here). */
  readonly lifecycle: RegistryLifecycleArgv;
  private watchdog?: ChildProcess;

  /** GC settings' `local` executor for this registry: its collector and lifecycle run on this machine. */
  get localExecutor() {
    return {
      type: 'local' as const,
      command: ['docker-registry'],
      configPath: this.configPath,
      storagePath: this.storagePath,
      lifecycle: this.lifecycle,
    };
  }

  private constructor(
    readonly workDir: string,
    readonly port: number,
    storagePath: string,
    private readonly ownsStorage: boolean,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.configPath = join(workDir, 'config.yml');
    this.storagePath = storagePath;
    this.scriptPath = join(workDir, 'registryctl');
    this.pidFile = join(workDir, 'registry.pid');
    this.logPath = join(workDir, 'registry.log');
    const ctl = (action: string) => ['bash', this.scriptPath, action];
    this.lifecycle = {
      stop: ctl('stop'),
      start: ctl('start'),
      startReadOnly: ctl('start-readonly'),
      restart: ctl('restart'),
      restartReadOnly: ctl('restart-readonly'),
    };
  }

  static async create(opts: RegistryServiceOptions = {}): Promise<RegistryService> {
    const workDir = await mkdtemp(join(tmpdir(), 'registry-gateway-service-'));
    const port = opts.port ?? (await freePort());
    const service = new RegistryService(
      workDir,
      port,
      opts.storageDir ?? join(workDir, 'data'),
      !opts.storageDir,
    );
    try {
      await service.writeFiles(opts);
      liveServices.add(service);
      installExitHook();
      service.startWatchdog();
      if (opts.start !== false) await (opts.start === 'readonly' ? service.startReadOnly() : service.start());
      return service;
    } catch (err) {
      await service.cleanup().catch(() => undefined);
      throw err;
    }
  }

  async start(): Promise<void> {
    await this.ctl('start');
  }

  async startReadOnly(): Promise<void> {
    await this.ctl('start-readonly');
  }

  async stop(): Promise<void> {
    await this.ctl('stop');
  }

  async restart(readOnly = false): Promise<void> {
    await this.ctl(readOnly ? 'restart-readonly' : 'restart');
  }

  /** The registry's PID, or undefined when it is not running. */
  async pid(): Promise<number | undefined> {
    let text: string;
    try {
      text = await readFile(this.pidFile, 'utf8');
    } catch {
      return undefined;
    }
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    try {
      // a zombie (killed, not yet reaped by PID 1) is not running
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z') ? undefined : pid;
    } catch {
      return undefined;
    }
  }

  async running(): Promise<boolean> {
    return (await this.pid()) !== undefined;
  }

  /** Whether the running registry refuses writes (read-only maintenance mode): an upload start answers 405. */
  async isReadOnly(): Promise<boolean> {
    const res = await fetch(`${this.url}/v2/readonly-probe/blobs/uploads/`, { method: 'POST' });
    await res.arrayBuffer();
    if (res.status === 202) {
      const location = res.headers.get('location');
      if (location) {
        const cancel = await fetch(new URL(location, this.url), { method: 'DELETE' });
        await cancel.arrayBuffer();
      }
    }
    return res.status === 405;
  }

  async logTail(lines = 40): Promise<string> {
    try {
      return (await readFile(this.logPath, 'utf8'))
        .split('\n')
        .slice(-lines - 1)
        .join('\n');
    } catch {
      return '';
    }
  }

  /** Stops the registry and the watchdog; removes the work dir (and the storage, unless the caller gave it). */
  async cleanup(): Promise<void> {
    try {
      await this.ctl('stop');
    } finally {
      this.watchdog?.kill('SIGKILL');
      this.watchdog = undefined;
      liveServices.delete(this);
      if (this.ownsStorage) await rm(this.storagePath, { recursive: true, force: true });
      await rm(this.workDir, { recursive: true, force: true });
    }
  }

  /** For the exit hook: no event loop left there. */
  stopSync(): void {
    try {
      execFileSync('bash', [this.scriptPath, 'stop'], {
        stdio: 'ignore',
        timeout: (STOP_TIMEOUT_S + 5) * 1000,
      });
    } catch {
      // best effort: the watchdog tries again
    }
  }

  private async ctl(action: string): Promise<void> {
    const child = spawn('bash', [this.scriptPath, action], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (exitCode) => resolve(exitCode ?? 1));
    });
    if (code !== 0) {
      throw new Error(
        `registryctl ${action} exited with ${code}: ${output.trim()}\nlog tail:\n${await this.logTail()}`,
      );
    }
  }

  private startWatchdog(): void {
    const watchdog = spawn(
      'sh',
      ['-c', 'read _ignored; exec bash "$1" stop', 'registry-service-watchdog', this.scriptPath],
      {
        stdio: ['pipe', 'ignore', 'ignore'],
        // its own process group: a Ctrl-C to the test run must not kill it before it did its job
        detached: true,
      },
    );
    watchdog.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as unknown as Socket | null)?.unref();
    this.watchdog = watchdog;
  }

  private async writeFiles(opts: RegistryServiceOptions): Promise<void> {
    const cache = opts.cache ?? 'inmemory';
    const storage: Record<string, unknown> = {
      filesystem: { rootdirectory: this.storagePath },
      delete: { enabled: opts.deleteEnabled ?? true },
      maintenance: { uploadpurging: { enabled: false }, readonly: { enabled: false } },
    };
    if (cache !== 'none') storage.cache = { blobdescriptor: cache };
    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: opts.logLevel ?? 'info', formatter: 'text', accesslog: { disabled: true } },
      storage,
      http: {
        addr: `127.0.0.1:${this.port}`,
        // fixed: uploads signed before a restart stay valid after it
        secret: randomBytes(24).toString('hex'),
        // Tells this registry's answers from another server's that got the same port first.
        headers: { 'X-Content-Type-Options': ['nosniff'], 'X-Registry-Instance': [this.instance] },
      },
    };
    if (cache === 'redis') {
      if (!opts.redis) throw new Error("cache 'redis' needs the redis option");
      config.redis = { addr: opts.redis.addr, db: opts.redis.db ?? 0, dialtimeout: '1s' };
    }
    await writeFile(this.configPath, stringify(config));
    await writeFile(this.scriptPath, this.script());
    await chmod(this.scriptPath, 0o755);
  }

  private script(): string {
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    return `#!/usr/bin/env bash
# Generated by test/support/registry-service.ts: controls one registry as a detached service.
set -u
PIDFILE=${q(this.pidFile)}
LOG=${q(this.logPath)}
CONFIG=${q(this.configPath)}
PORT=${this.port}
INSTANCE=${this.instance}

# Alive and not a zombie: an orphaned registry is reaped by PID 1, which some containers never do.
# Bash builtins only, like everything the loops below run: a fork each time would be the slow part.
alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  IFS= read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
  stat=\${stat##*) }
  [ -n "$stat" ] && [ "\${stat:0:1}" != Z ]
}

pid_alive() {
  local pid
  read -r pid <"$PIDFILE" 2>/dev/null || return 1
  [ -n "$pid" ] && alive "$pid"
}

# Sets STATUS to the status of GET /v2/ through bash's /dev/tcp (no curl needed); empty while nothing
# listens, and empty when what answers is not this registry (its X-Registry-Instance header is missing).
http_status() {
  local line status mine=''
  STATUS=''
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 0
  printf 'GET /v2/ HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3
  IFS= read -r -t 2 line <&3 || true
  set -- $line
  status=\${2:-}
  while IFS= read -r -t 2 line <&3; do
    line=\${line%$'\\r'}
    [ -z "$line" ] && break
    [ "\${line,,}" = "x-registry-instance: $INSTANCE" ] && mine=1
  done
  exec 3>&- 3<&-
  [ -n "$mine" ] && STATUS=$status
  return 0
}

port_busy() {
  : 2>/dev/null <>"/dev/tcp/127.0.0.1/$PORT"
}

# A pause without a fork (an external sleep costs more than the wait it is polled with): a read with a
# timeout on a pipe this shell holds both ends of, so nothing ever arrives.
exec {NAP_FD}<> <(:)
nap() {
  read -r -t "$1" -u "$NAP_FD" _ || true
}

do_start() {
  local mode=$1
  if pid_alive; then echo "already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if port_busy; then echo "port $PORT is taken by another process" >&2; return 1; fi
  rm -f "$PIDFILE"
  TZ=UTC printf -- '--- start %s at %(%FT%TZ)T\\n' "$mode" -1 >>"$LOG"
  # REGISTRY_* from the caller's environment would override the config: drop them; read-only mode is the
  # one this script sets.
  for v in "\${!REGISTRY_@}"; do unset "$v"; done
  [ "$mode" = readonly ] && export REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled":true}'
  # The shell writes its own PID, then becomes the registry (exec keeps the PID), in a new session.
  setsid sh -c 'echo $$ > "$1"; exec "$2" serve "$3"' sh "$PIDFILE" ${REGISTRY_BINARY} "$CONFIG" </dev/null >>"$LOG" 2>&1 {NAP_FD}<&- &
  local i pid
  for ((i = 0; i < ${START_TIMEOUT_S * 200}; i++)); do
    nap 0.005
    http_status
    if [ "$STATUS" = 200 ] || [ "$STATUS" = 401 ]; then
      pid_alive && read -r pid <"$PIDFILE" && { echo "started (pid $pid, $mode)"; return 0; }
    fi
    if [ -s "$PIDFILE" ] && ! pid_alive; then
      echo "registry exited during start; log tail:" >&2
      tail -n 20 "$LOG" >&2
      return 1
    fi
  done
  echo "registry did not answer GET /v2/ within ${START_TIMEOUT_S}s" >&2
  do_stop
  return 1
}

do_stop() {
  local pid i
  read -r pid <"$PIDFILE" 2>/dev/null || pid=''
  if [ -n "$pid" ] && alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < ${STOP_TIMEOUT_S * 200}; i++)); do
      alive "$pid" || break
      nap 0.005
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; nap 0.1; fi
    TZ=UTC printf -- '--- stopped pid %s at %(%FT%TZ)T\\n' "$pid" -1 >>"$LOG"
    # The port must be free when stop returns, so that a start right after it cannot meet the old one. A
    # process whose main thread has ended looks dead (a zombie) while its other threads, and so its
    # listening socket, may still be there for a moment.
    for ((i = 0; i < 1000; i++)); do port_busy || break; nap 0.005; done
  fi
  rm -f "$PIDFILE"
  echo stopped
}

case "\${1:-}" in
  start) do_start normal ;;
  start-readonly) do_start readonly ;;
  stop) do_stop ;;
  restart) do_stop >/dev/null && do_start normal ;;
  restart-readonly) do_stop >/dev/null && do_start readonly ;;
  status) if pid_alive; then echo "running (pid $(cat "$PIDFILE"))"; else echo stopped; exit 3; fi ;;
  *) echo "usage: $0 start|start-readonly|stop|restart|restart-readonly|status" >&2; exit 2 ;;
esac
`;
  }
}
