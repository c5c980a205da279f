import { createHash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import {
  abortedError,
  CommandGcExecutor,
  executorError,
  AbortKiller,
  KILL_GRACE_MS,
  killArgv,
  OutputCollector,
  PID_MARKER,
  PidMarkerFilter,
  shellQuote,
  withEnv,
  type ExecOptions,
  type ExecResult,
  type GcExecutorSecrets,
  type SshExecutorConfig,
} from './gc-executor.js';

type Ssh2Client = InstanceType<typeof ssh2.Client>;

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_MS = 15_000;
const KEEPALIVE_COUNT_MAX = 4;

/** OpenSSH's fingerprint format: `SHA256:` + unpadded base64 of the SHA-256 of the key blob. */
export function sshFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

function normaliseFingerprint(value: string): string {
  const trimmed = value.trim();
  const body = trimmed.replace(/^SHA256:/i, '').replace(/=+$/, '');
  return `SHA256:${body}`;
}

/**
 * Runs commands on the registry's host over one SSH connection (opened on first use, reopened when
 * lost). The host key must match the pinned `hostKeySha256` unless `insecureIgnoreHostKey`.
 * Commands go through the remote login shell, every word single-quoted; each starts with
 * `echo <marker> $$ >&2; exec ...`, so the command keeps the shell's PID and an abort can kill it with
 * `kill -TERM <pid>` (then -KILL) on a second channel. If the connection drops, the remote command
 * dies at its next output line (SIGPIPE).
 */
/** The ssh-specific settings a connection needs; the base class checks the paths. */
function checked(config: SshExecutorConfig, secrets: GcExecutorSecrets): SshExecutorConfig {
  if (!config.host || !config.username) {
    throw executorError('EXECUTOR_CONFIG_INVALID', 'the ssh executor needs host and username');
  }
  if (!config.hostKeySha256 && !config.insecureIgnoreHostKey) {
    throw executorError(
      'EXECUTOR_CONFIG_INVALID',
      'the ssh executor needs hostKeySha256 (the host key fingerprint, `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) or insecureIgnoreHostKey: true',
    );
  }
  if (!secrets.privateKey && !secrets.password) {
    throw executorError(
      'EXECUTOR_CONFIG_INVALID',
      'the ssh executor needs a privateKey or a password secret',
    );
  }
  return config;
}

export class SshGcExecutor extends CommandGcExecutor {
  readonly type = 'ssh' as const;
  private client?: Ssh2Client;
  private connecting?: Promise<Ssh2Client>;

  constructor(
    private readonly config: SshExecutorConfig,
    private readonly secrets: GcExecutorSecrets = {},
  ) {
    super('ssh', checked(config, secrets));
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!argv.length) throw executorError('EXECUTOR_CONFIG_INVALID', 'empty command');
    const { signal } = opts;
    if (signal?.aborted) throw abortedError(argv.join(' '));
    const full = withEnv(argv, { ...this.config.env, ...opts.env });
    const line = `echo "${PID_MARKER} $$" >&2; exec ${shellQuote(full)}`;
    const client = await this.connect();
    if (signal?.aborted) throw abortedError(argv.join(' '));
    const channel = await new Promise<ClientChannel>((resolve, reject) => {
      try {
        client.exec(line, (err, stream) => (err ? reject(this.lost(err)) : resolve(stream)));
      } catch (err) {
        reject(this.lost(err as Error));
      }
    });

    const collector = new OutputCollector(opts.onOutput, opts.outputCap);
    let aborted = false;
    // stdout and stderr travel apart: an abort can come before the PID line; then kill on arrival
    const killer = new AbortKiller((pid, sig) => this.runQuiet(killGroup(pid, sig)));
    const kill = (pid: number) => killer.kill(pid);
    const pidFilter = new PidMarkerFilter((pid) => aborted && kill(pid));
    return new Promise<ExecResult>((resolve, reject) => {
      let exitCode: number | undefined;
      let forceClose: NodeJS.Timeout | undefined;
      const onAbort = () => {
        aborted = true;
        try {
          channel.signal('TERM');
        } catch {
          // not every server takes signal requests; the kill does the job
        }
        if (pidFilter.pid !== undefined) kill(pidFilter.pid);
        forceClose = setTimeout(() => channel.close(), KILL_GRACE_MS + 2_000);
        forceClose.unref();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      channel.on('data', (b: Buffer) => collector.write('stdout', b));
      const stderrDecoder = new StringDecoder('utf8');
      channel.stderr.on('data', (b: Buffer) => {
        // the marker line is ours: strip it before the caller sees anything
        collector.push(pidFilter.push(stderrDecoder.write(b)));
      });
      channel.on('exit', (code: number | null, signalName?: string) => {
        exitCode = code ?? (signalName ? 128 + (SIGNALS[signalName] ?? 0) : 255);
      });
      channel.on('close', () => {
        signal?.removeEventListener('abort', onAbort);
        if (forceClose) clearTimeout(forceClose);
        killer.ended();
        collector.push(pidFilter.push(stderrDecoder.end()));
        collector.push(pidFilter.flush());
        collector.end();
        if (aborted) return reject(abortedError(argv.join(' '), collector.result()));
        if (exitCode === undefined) {
          // The connection dropped; the command may go on. Kill it (best effort, on a new connection)
          // so that no collector runs on after the caller lifted its fence.
          const pid = pidFilter.pid;
          const kill =
            pid === undefined
              ? Promise.resolve(false)
              : Promise.race([
                  this.runQuiet(killGroup(pid, 'KILL')).then(() => true),
                  new Promise<boolean>((r) => setTimeout(() => r(false), 15_000).unref()),
                ]);
          void kill.then((killAttempted) =>
            reject(
              executorError(
                'EXECUTOR_UNREACHABLE',
                `the SSH connection to ${this.where} closed before the command exited`,
                { ...collector.result(), pid, killAttempted },
              ),
            ),
          );
          return;
        }
        resolve({ exitCode, ...collector.result() });
      });
    });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.connecting = undefined;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const done = setTimeout(resolve, 2_000);
      done.unref();
      client.once('close', () => {
        clearTimeout(done);
        resolve();
      });
      client.end();
    });
  }

  private get where(): string {
    return `${this.config.username}@${this.config.host}:${this.config.port ?? 22}`;
  }

  private lost(err: Error): Error {
    this.client = undefined;
    return executorError('EXECUTOR_UNREACHABLE', `SSH to ${this.where}: ${err.message}`);
  }

  /** Kill helpers must never throw into an abort handler. */
  private async runQuiet(line: string): Promise<void> {
    try {
      const client = await this.connect();
      await new Promise<void>((resolve) => {
        client.exec(line, (err, stream) => {
          if (err) return resolve();
          stream.on('close', () => resolve()).resume();
          stream.stderr.resume();
        });
      });
    } catch {
      // best effort
    }
  }

  private connect(): Promise<Ssh2Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.connecting) return this.connecting;
    const attempt = this.open().finally(() => {
      if (this.connecting === attempt) this.connecting = undefined;
    });
    this.connecting = attempt;
    return attempt;
  }

  private open(): Promise<Ssh2Client> {
    const { config, secrets } = this;
    const expected = config.hostKeySha256 ? normaliseFingerprint(config.hostKeySha256) : undefined;
    let presented: string | undefined;
    let mismatch = false;
    const options: ConnectConfig = {
      host: config.host,
      port: config.port ?? 22,
      username: config.username,
      readyTimeout: config.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepaliveInterval: config.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      hostVerifier: (key: Buffer) => {
        presented = sshFingerprint(key);
        if (config.insecureIgnoreHostKey && !expected) return true;
        mismatch = presented !== expected;
        return !mismatch;
      },
      ...(secrets.privateKey ? { privateKey: secrets.privateKey, passphrase: secrets.passphrase } : {}),
      ...(secrets.password ? { password: secrets.password } : {}),
    };
    return new Promise<Ssh2Client>((resolve, reject) => {
      const client = new ssh2.Client();
      let ready = false;
      client.on('ready', () => {
        ready = true;
        this.client = client;
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (ready) {
          // a live connection failed (keepalive timeout, reset): the next command reconnects
          if (this.client === client) this.client = undefined;
          return;
        }
        reject(this.connectError(err, mismatch, expected, presented));
      });
      client.on('close', () => {
        if (this.client === client) this.client = undefined;
        if (!ready)
          reject(
            executorError(
              'EXECUTOR_UNREACHABLE',
              `SSH to ${this.where}: connection closed during the handshake`,
            ),
          );
      });
      try {
        client.connect(options);
      } catch (err) {
        // invalid key material and the like are thrown synchronously
        reject(executorError('EXECUTOR_AUTH_FAILED', `SSH to ${this.where}: ${(err as Error).message}`));
      }
    });
  }

  private connectError(
    err: Error & { level?: string; code?: string },
    mismatch: boolean,
    expected: string | undefined,
    presented: string | undefined,
  ): Error {
    if (mismatch) {
      return executorError(
        'EXECUTOR_HOST_KEY_MISMATCH',
        `the host key of ${this.where} is ${presented}, not the pinned ${expected}: refusing to connect`,
        { expected, presented },
      );
    }
    if (err.level === 'client-authentication') {
      return executorError(
        'EXECUTOR_AUTH_FAILED',
        `SSH to ${this.where}: authentication failed (${err.message})`,
      );
    }
    if (err.level === 'client-timeout') {
      return executorError(
        'EXECUTOR_UNREACHABLE',
        `SSH to ${this.where}: timed out during connect or handshake`,
      );
    }
    return executorError(
      'EXECUTOR_UNREACHABLE',
      `SSH to ${this.where}: ${err.code ? `${err.code} ` : ''}${err.message}`,
    );
  }
}

/**
 * sshd starts each command in a session of its own (setsid), so the PID the command reported is its
 * process group: killing the group also takes the children a wrapper script may have started.
 */
function killGroup(pid: number, signal: 'TERM' | 'KILL'): string {
  return `kill -${signal} -- -${pid} 2>/dev/null || ${shellQuote(killArgv(pid, signal))}`;
}

const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  ABRT: 6,
  FPE: 8,
  KILL: 9,
  SEGV: 11,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  USR1: 10,
  USR2: 12,
};
