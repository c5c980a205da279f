import { StringDecoder } from 'node:string_decoder';
import { DomainError } from '../../common/domain-error.js';

export type GcExecutorType = 'local' | 'ssh' | 'docker' | 'kubernetes';

export interface ExecOptions {
  /**
   * Every chunk of stdout and stderr as it arrives, uncapped (the result's `output` is capped), with the
   * stream it came from: a reader of stdout's lines must not have stderr's cut into them.
   */
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** Aborting kills the process where the executor can (see each executor) and rejects with EXECUTOR_ABORTED. */
  signal?: AbortSignal;
  env?: Record<string, string>;
  /** How much of the output the result keeps (its head and tail); default OUTPUT_CAP_BYTES. onOutput sees all of it. */
  outputCap?: number;
  /**
   * The command writes thousands of short lines one at a time (the collector, a few per blob; `du -a`,
   * which flushes every line). The `local` executor then has it write them to files read a few dozen times
   * a second rather than to pipes, whose reader is woken for every line; the output arrives in fewer,
   * later chunks. Others stream it as they do anything.
   */
  manyLines?: boolean;
}

export interface ExecResult {
  exitCode: number;
  /** stdout and stderr interleaved in arrival order; at most `outputCap` bytes (head and tail kept, the cut marked). */
  output: string;
  outputTruncated: boolean;
}

export interface GcCommandOptions extends ExecOptions {
  dryRun: boolean;
  deleteUntagged: boolean;
}

export interface GcExecutorCapabilities {
  /** stop() and start({ readOnly: false }) work. */
  stop: boolean;
  /** start/restart({ readOnly: true }) work. */
  readOnly: boolean;
  /** restart({ readOnly: false }) works. */
  restart: boolean;
}

export interface GcExecutor {
  readonly type: GcExecutorType;
  /** What this executor can do for fencing and cache clearing: the GC service refuses a fence mode the executor cannot do, with code FENCE_UNSUPPORTED. */
  readonly capabilities: GcExecutorCapabilities;
  /** `<command> garbage-collect [--dry-run] [--delete-untagged] <configPath>` where the registry lives. */
  garbageCollect(opts: GcCommandOptions): Promise<ExecResult>;
  /** The registry's storage folder where the commands run (configured, or the container image's default): what gc-storage.ts reads. */
  readonly storagePath: string;
  /** Each resolves once the action finished (the caller then waits for /v2/ to answer). FENCE_UNSUPPORTED when not supported. */
  stop(): Promise<void>;
  start(opts: { readOnly: boolean }): Promise<void>;
  restart(opts: { readOnly: boolean }): Promise<void>;
  /** Run an arbitrary argv where the registry lives (used for checks). */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  close(): Promise<void>;
}

/** Argv lists run where the registry lives (no shell on `local`; quoted for the remote shell on `ssh`). */
export interface LifecycleCommands {
  stop: string[];
  start: string[];
  startReadOnly?: string[];
  /** Default: stop, then start. */
  restart?: string[];
  /** Default: stop, then startReadOnly. */
  restartReadOnly?: string[];
}

interface CommandTarget {
  /** argv prefix of the registry binary; default ['registry'] (Debian's package: ['docker-registry']). */
  command?: string[];
  configPath?: string;
  storagePath?: string;
}

export interface LocalExecutorConfig extends CommandTarget {
  type: 'local';
  configPath: string;
  storagePath: string;
  lifecycle?: LifecycleCommands;
  /** Added to the worker's environment for every command. */
  env?: Record<string, string>;
}

export interface SshExecutorConfig extends CommandTarget {
  type: 'ssh';
  host: string;
  /** Default 22. */
  port?: number;
  username: string;
  /** OpenSSH's `SHA256:<base64>` fingerprint of the host key (`ssh-keygen -lf <key>.pub`). Required unless insecureIgnoreHostKey. */
  hostKeySha256?: string;
  insecureIgnoreHostKey?: boolean;
  configPath: string;
  storagePath: string;
  lifecycle?: LifecycleCommands;
  /** Set with `env` on the remote side (sshd's AcceptEnv is not needed). */
  env?: Record<string, string>;
  /** TCP connect + handshake + auth; default 20000. */
  connectTimeoutMs?: number;
  /** Default 15000; the connection is dropped after 4 unanswered keepalives. */
  keepaliveIntervalMs?: number;
}

export interface DockerExecutorConfig extends CommandTarget {
  type: 'docker';
  /** Default /var/run/docker.sock; ignored when host is set. */
  socketPath?: string;
  host?: string;
  /** Default 2376 with TLS, else 2375. */
  port?: number;
  /** PEM; the client key is a secret (tlsKey). */
  tls?: { ca?: string; cert?: string };
  /** Container name or id. */
  container: string;
  env?: Record<string, string>;
  /** `docker stop -t`; default 10. */
  stopTimeoutSeconds?: number;
  /** Wrap commands in `sh -c` to learn their PID so an abort can kill them; default true. Set false for images without a shell. */
  killOnAbort?: boolean;
}

export interface KubernetesExecutorConfig extends CommandTarget {
  type: 'kubernetes';
  /** Use the pod's service account instead of a kubeconfig secret. */
  inCluster?: boolean;
  namespace: string;
  /** A fixed pod; or labelSelector (needed for restart). */
  pod?: string;
  labelSelector?: string;
  /** Default: the pod's only container. */
  container?: string;
  env?: Record<string, string>;
  /** How long restart waits for the new pod to be Ready; default 300000. */
  readyTimeoutMs?: number;
  /** See DockerExecutorConfig.killOnAbort; default true. */
  killOnAbort?: boolean;
}

export type GcExecutorConfig =
  LocalExecutorConfig | SshExecutorConfig | DockerExecutorConfig | KubernetesExecutorConfig;

/** Write-only: stored sealed (SecretBox), never returned. */
export interface GcExecutorSecrets {
  /** ssh: OpenSSH or PEM private key. */
  privateKey?: string;
  passphrase?: string;
  /** ssh: password authentication. */
  password?: string;
  /** docker: TLS client key (PEM). */
  tlsKey?: string;
  /** kubernetes: kubeconfig YAML. */
  kubeconfig?: string;
}

export const DEFAULT_REGISTRY_COMMAND: readonly string[] = ['registry'];
export const DEFAULT_CONTAINER_CONFIG_PATH = '/etc/docker/registry/config.yml';
export const DEFAULT_CONTAINER_STORAGE_PATH = '/var/lib/registry';
export const OUTPUT_CAP_BYTES = 1024 * 1024;
/**
 * The docker executor's: no `stop` fence, as the collector and the storage reads run inside the registry's
 * container (`docker exec`), which a stopped container cannot take; no read-only mode, as a container's
 * environment is fixed. Here rather than beside the executor, whose module is loaded only when used.
 */
export const DOCKER_CAPABILITIES: GcExecutorCapabilities = { stop: false, readOnly: false, restart: true };

/** Grace between SIGTERM and SIGKILL when an abort kills a process. */
export const KILL_GRACE_MS = 5_000;

// --- errors --------------------------------------------------------------------------------------

export type ExecutorErrorCode =
  | 'EXECUTOR_UNREACHABLE'
  | 'EXECUTOR_AUTH_FAILED'
  | 'EXECUTOR_HOST_KEY_MISMATCH'
  | 'EXECUTOR_COMMAND_FAILED'
  | 'EXECUTOR_COMMAND_NOT_FOUND'
  | 'EXECUTOR_TARGET_NOT_FOUND'
  | 'EXECUTOR_ABORTED'
  | 'EXECUTOR_CONFIG_INVALID'
  | 'FENCE_UNSUPPORTED';

const STATUS: Record<ExecutorErrorCode, number> = {
  EXECUTOR_UNREACHABLE: 502,
  EXECUTOR_AUTH_FAILED: 502,
  EXECUTOR_HOST_KEY_MISMATCH: 502,
  EXECUTOR_COMMAND_FAILED: 502,
  EXECUTOR_COMMAND_NOT_FOUND: 502,
  EXECUTOR_TARGET_NOT_FOUND: 502,
  EXECUTOR_ABORTED: 409,
  EXECUTOR_CONFIG_INVALID: 400,
  FENCE_UNSUPPORTED: 409,
};

export function executorError(
  code: ExecutorErrorCode,
  message: string,
  details?: Record<string, unknown>,
): DomainError {
  return new DomainError(code, message, STATUS[code], details);
}

export function abortedError(
  what: string,
  partial?: { output: string; outputTruncated: boolean },
): DomainError {
  return executorError('EXECUTOR_ABORTED', `${what} was aborted`, partial ? { ...partial } : undefined);
}

export function fenceUnsupported(type: GcExecutorType, action: string): DomainError {
  return executorError('FENCE_UNSUPPORTED', `the ${type} executor cannot ${action}`, {
    executor: type,
    action,
  });
}

/** Lifecycle commands must succeed: a non-zero exit is an error, with the command's output attached. */
export function assertSucceeded(what: string, argv: string[], result: ExecResult): void {
  if (result.exitCode === 0) return;
  throw executorError('EXECUTOR_COMMAND_FAILED', `${what} exited with code ${result.exitCode}`, {
    argv,
    exitCode: result.exitCode,
    output: tailOf(result.output, 4_096),
  });
}

function tailOf(text: string, chars: number): string {
  return text.length > chars ? text.slice(text.length - chars) : text;
}

// --- argv ---------------------------------------------------------------------------------------

export function gcArgv(command: readonly string[], configPath: string, opts: GcCommandOptions): string[] {
  return [
    ...command,
    'garbage-collect',
    ...(opts.dryRun ? ['--dry-run'] : []),
    ...(opts.deleteUntagged ? ['--delete-untagged'] : []),
    configPath,
  ];
}

/** POSIX shell quoting: every word in single quotes, so nothing in it is expanded. */
export function shellQuote(argv: readonly string[]): string {
  return argv
    .map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `env K=V ... argv`: passes variables through exec APIs and shells that have no env parameter. */
export function withEnv(argv: string[], env: Record<string, string> | undefined): string[] {
  const entries = Object.entries(env ?? {});
  if (!entries.length) return argv;
  for (const [name] of entries) {
    if (!ENV_NAME_RE.test(name)) {
      throw executorError('EXECUTOR_CONFIG_INVALID', `invalid environment variable name: ${name}`);
    }
  }
  return ['env', ...entries.map(([k, v]) => `${k}=${v}`), ...argv];
}

/**
 * Exec APIs (Engine, Kubernetes) and SSH channels cannot kill what they started. The command runs as
 * `sh -c 'echo <marker> $$ >&2; exec "$@"'`: the shell reports its PID on stderr, then becomes the
 * command (same PID), so an abort can `kill` it with a second exec.
 */
export const PID_MARKER = '__registry_gateway_pid__';

export function pidWrapped(argv: string[]): string[] {
  return ['sh', '-c', `echo "${PID_MARKER} $$" >&2; exec "$@"`, 'sh', ...argv];
}

export function killArgv(pid: number, signal: 'TERM' | 'KILL'): string[] {
  return ['kill', `-${signal}`, String(pid)];
}

/**
 * How an aborted remote command is killed: SIGTERM at once, SIGKILL after KILL_GRACE_MS unless the command
 * ended first (`ended()`): a late KILL would reach whatever process has since taken its PID, and would open
 * a new connection to an executor already closed.
 */
export class AbortKiller {
  private timer?: NodeJS.Timeout;
  private over = false;

  constructor(private readonly send: (pid: number, signal: 'TERM' | 'KILL') => Promise<unknown>) {}

  kill(pid: number): void {
    if (this.over) return;
    void this.send(pid, 'TERM');
    this.timer = setTimeout(() => {
      if (!this.over) void this.send(pid, 'KILL');
    }, KILL_GRACE_MS);
    this.timer.unref();
  }

  /** The command ended: nothing more is sent. */
  ended(): void {
    this.over = true;
    clearTimeout(this.timer);
  }
}

/** Strips the PID marker line from the start of a stderr stream and reports the PID. */
export class PidMarkerFilter {
  private pending = '';
  private done = false;
  pid?: number;

  constructor(private readonly onPid?: (pid: number) => void) {}

  /** Returns the text to pass on. */
  push(text: string): string {
    if (this.done) return text;
    this.pending += text;
    const newline = this.pending.indexOf('\n');
    if (newline === -1) {
      // a stream that never starts with the marker must not be held back for long
      if (
        this.pending.length > PID_MARKER.length + 32 ||
        !PID_MARKER.startsWith(this.pending.slice(0, PID_MARKER.length))
      ) {
        return this.release();
      }
      return '';
    }
    const first = this.pending.slice(0, newline);
    const match = new RegExp(`^${PID_MARKER} (\\d+)$`).exec(first);
    if (!match) return this.release();
    this.done = true;
    this.pid = Number(match[1]);
    this.onPid?.(this.pid);
    const rest = this.pending.slice(newline + 1);
    this.pending = '';
    return rest;
  }

  flush(): string {
    return this.done ? '' : this.release();
  }

  private release(): string {
    this.done = true;
    const text = this.pending;
    this.pending = '';
    return text;
  }
}

// --- output -------------------------------------------------------------------------------------

/**
 * Keeps the first and the last half of OUTPUT_CAP_BYTES of a command's output and counts what falls
 * between; every chunk still goes to onOutput. One decoder per source stream, so a multi-byte
 * character split between two chunks stays whole.
 */
export class OutputCollector {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private total = 0;
  private readonly decoders = new Map<'stdout' | 'stderr', StringDecoder>();

  constructor(
    private readonly onOutput?: ExecOptions['onOutput'],
    cap = OUTPUT_CAP_BYTES,
  ) {
    this.headLimit = Math.floor(cap / 2);
    this.tailLimit = cap - this.headLimit;
  }

  /** Raw bytes from a stream; kept as they are (the caller does not reuse them). */
  write(stream: 'stdout' | 'stderr', bytes: Buffer): string {
    let decoder = this.decoders.get(stream);
    if (!decoder) {
      decoder = new StringDecoder('utf8');
      this.decoders.set(stream, decoder);
    }
    const text = decoder.write(bytes);
    this.emit(text, stream);
    // The bytes as they came are what is kept: no copy of every chunk (a listing is megabytes) encoded
    // back from its text.
    this.keep(bytes);
    return text;
  }

  /** Flushes the decoders (call once the streams ended): a character cut off at the end, as text. */
  end(): void {
    for (const [stream, decoder] of this.decoders) this.emit(decoder.end(), stream);
    this.decoders.clear();
  }

  /** Text for the output: stderr's (decoded by the caller), or the gateway's own notes. */
  push(text: string, stream: 'stdout' | 'stderr' = 'stderr'): void {
    if (!text) return;
    this.emit(text, stream);
    this.keep(Buffer.from(text, 'utf8'));
  }

  private emit(text: string, stream: 'stdout' | 'stderr'): void {
    if (!text) return;
    try {
      this.onOutput?.(text, stream);
    } catch {
      // a failing listener must not break the command
    }
  }

  private keep(bytes: Buffer): void {
    this.total += bytes.length;
    if (this.headBytes < this.headLimit) {
      const take = Math.min(bytes.length, this.headLimit - this.headBytes);
      this.head.push(bytes.subarray(0, take));
      this.headBytes += take;
      bytes = bytes.subarray(take);
    }
    if (!bytes.length) return;
    this.tail.push(bytes);
    this.tailBytes += bytes.length;
    while (this.tailBytes > this.tailLimit) {
      const excess = this.tailBytes - this.tailLimit;
      const first = this.tail[0];
      if (first.length <= excess) {
        this.tail.shift();
        this.tailBytes -= first.length;
      } else {
        this.tail[0] = first.subarray(excess);
        this.tailBytes -= excess;
      }
    }
  }

  get truncated(): boolean {
    return this.total > this.headBytes + this.tailBytes;
  }

  result(): { output: string; outputTruncated: boolean } {
    const head = Buffer.concat(this.head).toString('utf8');
    const tail = Buffer.concat(this.tail).toString('utf8');
    if (!this.truncated) return { output: head + tail, outputTruncated: false };
    const omitted = this.total - this.headBytes - this.tailBytes;
    const marker = `\n[registry-gateway: ${omitted} bytes of output omitted here; the first ${this.headBytes} and the last ${this.tailBytes} bytes are kept]\n`;
    return { output: head + marker + tail, outputTruncated: true };
  }
}

// --- lifecycle through commands (local, ssh) ----------------------------------------------------

/** stop/start/restart by running the configured argv lists with `run`; capabilities follow from which exist. */
export class CommandLifecycle {
  readonly capabilities: GcExecutorCapabilities;

  constructor(
    private readonly type: GcExecutorType,
    private readonly lifecycle: LifecycleCommands | undefined,
    private readonly run: (argv: string[]) => Promise<ExecResult>,
  ) {
    const l = lifecycle;
    const canStop = !!(l?.stop?.length && l.start?.length);
    this.capabilities = {
      stop: canStop,
      readOnly: !!(l?.startReadOnly?.length || l?.restartReadOnly?.length),
      restart: !!(l?.restart?.length || canStop),
    };
  }

  async stop(): Promise<void> {
    const argv = this.lifecycle?.stop;
    if (!argv?.length) throw fenceUnsupported(this.type, 'stop the registry (no lifecycle.stop command)');
    await this.step('lifecycle.stop', argv);
  }

  async start(readOnly: boolean): Promise<void> {
    const argv = readOnly ? this.lifecycle?.startReadOnly : this.lifecycle?.start;
    if (!argv?.length) {
      throw fenceUnsupported(
        this.type,
        readOnly
          ? 'start the registry read-only (no lifecycle.startReadOnly command)'
          : 'start the registry (no lifecycle.start command)',
      );
    }
    await this.step(readOnly ? 'lifecycle.startReadOnly' : 'lifecycle.start', argv);
  }

  async restart(readOnly: boolean): Promise<void> {
    const direct = readOnly ? this.lifecycle?.restartReadOnly : this.lifecycle?.restart;
    if (direct?.length) {
      await this.step(readOnly ? 'lifecycle.restartReadOnly' : 'lifecycle.restart', direct);
      return;
    }
    const startArgv = readOnly ? this.lifecycle?.startReadOnly : this.lifecycle?.start;
    if (!this.lifecycle?.stop?.length || !startArgv?.length) {
      throw fenceUnsupported(
        this.type,
        readOnly
          ? 'restart the registry read-only (needs lifecycle.restartReadOnly, or stop and startReadOnly)'
          : 'restart the registry (needs lifecycle.restart, or stop and start)',
      );
    }
    await this.stop();
    await this.start(readOnly);
  }

  private async step(what: string, argv: string[]): Promise<void> {
    assertSucceeded(what, argv, await this.run(argv));
  }
}

/**
 * What the executors that run plain commands where the registry lives (`local`, `ssh`) share: the
 * collector and `du` as argv, and the registry's lifecycle through the configured commands. Each
 * subclass only says how a command is run.
 */
export abstract class CommandGcExecutor implements GcExecutor {
  abstract readonly type: 'local' | 'ssh';
  readonly capabilities: GcExecutorCapabilities;
  private readonly lifecycle: CommandLifecycle;
  private readonly command: string[];

  protected constructor(
    type: 'local' | 'ssh',
    private readonly target: {
      command?: string[];
      configPath: string;
      storagePath: string;
      lifecycle?: LifecycleCommands;
    },
  ) {
    if (!target.configPath || !target.storagePath) {
      throw executorError('EXECUTOR_CONFIG_INVALID', `the ${type} executor needs configPath and storagePath`);
    }
    this.command = target.command?.length ? [...target.command] : [...DEFAULT_REGISTRY_COMMAND];
    this.lifecycle = new CommandLifecycle(type, target.lifecycle, (argv) => this.exec(argv));
    this.capabilities = this.lifecycle.capabilities;
  }

  garbageCollect(opts: GcCommandOptions): Promise<ExecResult> {
    return this.exec(gcArgv(this.command, this.target.configPath, opts), { ...opts, manyLines: true });
  }

  get storagePath(): string {
    return this.target.storagePath;
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  start(opts: { readOnly: boolean }): Promise<void> {
    return this.lifecycle.start(opts.readOnly);
  }

  restart(opts: { readOnly: boolean }): Promise<void> {
    return this.lifecycle.restart(opts.readOnly);
  }

  abstract exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  abstract close(): Promise<void>;
}
