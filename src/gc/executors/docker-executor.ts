import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import Docker from 'dockerode';
import {
  abortedError,
  DEFAULT_CONTAINER_CONFIG_PATH,
  DEFAULT_CONTAINER_STORAGE_PATH,
  DEFAULT_REGISTRY_COMMAND,
  executorError,
  fenceUnsupported,
  gcArgv,
  AbortKiller,
  DOCKER_CAPABILITIES,
  KILL_GRACE_MS,
  killArgv,
  OutputCollector,
  PidMarkerFilter,
  pidWrapped,
  type DockerExecutorConfig,
  type ExecOptions,
  type ExecResult,
  type GcCommandOptions,
  type GcExecutor,
  type GcExecutorCapabilities,
  type GcExecutorSecrets,
} from './gc-executor.js';

const DEFAULT_SOCKET = '/var/run/docker.sock';
const DEFAULT_STOP_TIMEOUT_S = 10;
const STREAM_STDIN = 0;
const STREAM_STDOUT = 1;
const STREAM_STDERR = 2;

/**
 * Splits the Engine's multiplexed exec stream (a connection hijacked by POST /exec/{id}/start with
 * Tty false): frames of an 8-byte header `[stream, 0, 0, 0, size as uint32 big-endian]` and `size`
 * bytes of payload, stream 1 stdout and 2 stderr (0, stdin echoed, counts as stdout).
 */
export class ExecStreamDemuxer {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: 'stdout' | 'stderr', payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= 8) {
      const type = this.buffer.readUInt8(0);
      const size = this.buffer.readUInt32BE(4);
      if (type !== STREAM_STDIN && type !== STREAM_STDOUT && type !== STREAM_STDERR) {
        throw executorError(
          'EXECUTOR_COMMAND_FAILED',
          `the Engine sent a stream frame of unknown type ${type}`,
        );
      }
      if (this.buffer.length < 8 + size) return;
      const payload = this.buffer.subarray(8, 8 + size);
      this.buffer = this.buffer.subarray(8 + size);
      this.onFrame(type === STREAM_STDERR ? 'stderr' : 'stdout', payload);
    }
  }

  /** Bytes of an unfinished frame left when the stream ended. */
  get leftover(): number {
    return this.buffer.length;
  }
}

/**
 * Runs the collector inside the registry's container through the Docker Engine API, the way
 * `docker exec registry registry garbage-collect ...` does: POST /containers/{id}/exec, POST
 * /exec/{id}/start (hijacked, multiplexed stdout/stderr streamed as it comes), GET /exec/{id}/json for
 * the exit code. Fencing stops, starts and restarts the container; read-only mode would need the
 * container's environment changed, which the Engine cannot do, so `readOnly` is unsupported.
 */
export class DockerGcExecutor implements GcExecutor {
  readonly type = 'docker' as const;
  readonly capabilities: GcExecutorCapabilities = DOCKER_CAPABILITIES;
  private readonly docker: Docker;
  private readonly command: string[];
  private readonly configPath: string;
  readonly storagePath: string;

  constructor(
    private readonly config: DockerExecutorConfig,
    secrets: GcExecutorSecrets = {},
  ) {
    if (!config.container)
      throw executorError('EXECUTOR_CONFIG_INVALID', 'the docker executor needs a container');
    this.command = config.command?.length ? [...config.command] : [...DEFAULT_REGISTRY_COMMAND];
    this.configPath = config.configPath || DEFAULT_CONTAINER_CONFIG_PATH;
    this.storagePath = config.storagePath || DEFAULT_CONTAINER_STORAGE_PATH;
    // Every option is explicit: docker-modem otherwise fills gaps from DOCKER_HOST, DOCKER_CERT_PATH, ...
    const tls = !!(config.tls?.ca || config.tls?.cert || secrets.tlsKey);
    this.docker = new Docker(
      config.host
        ? {
            host: config.host,
            port: config.port ?? (tls ? 2376 : 2375),
            protocol: tls ? 'https' : 'http',
            ca: config.tls?.ca,
            cert: config.tls?.cert,
            key: secrets.tlsKey,
            socketPath: undefined,
          }
        : {
            socketPath: config.socketPath || DEFAULT_SOCKET,
            host: undefined,
            protocol: 'http',
            ca: undefined,
            cert: undefined,
            key: undefined,
          },
    );
  }

  garbageCollect(opts: GcCommandOptions): Promise<ExecResult> {
    return this.exec(gcArgv(this.command, this.configPath, opts), opts);
  }

  async stop(): Promise<void> {
    await this.call('stop the container', () =>
      this.container.stop({ t: this.config.stopTimeoutSeconds ?? DEFAULT_STOP_TIMEOUT_S }),
    );
  }

  async start(opts: { readOnly: boolean }): Promise<void> {
    if (opts.readOnly)
      throw fenceUnsupported('docker', 'start the container read-only (its environment is fixed)');
    await this.call('start the container', () => this.container.start());
  }

  async restart(opts: { readOnly: boolean }): Promise<void> {
    if (opts.readOnly)
      throw fenceUnsupported('docker', 'restart the container read-only (its environment is fixed)');
    await this.call('restart the container', () =>
      this.container.restart({ t: this.config.stopTimeoutSeconds ?? DEFAULT_STOP_TIMEOUT_S }),
    );
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!argv.length) throw executorError('EXECUTOR_CONFIG_INVALID', 'empty command');
    const { signal } = opts;
    if (signal?.aborted) throw abortedError(argv.join(' '));
    const killable = this.config.killOnAbort !== false;
    const env = { ...this.config.env, ...opts.env };
    const exec = await this.call('create the exec', () =>
      this.container.exec({
        Cmd: killable ? pidWrapped(argv) : argv,
        AttachStdin: false,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      }),
    );
    const stream = (await this.call('start the exec', () =>
      exec.start({ hijack: true, stdin: false, Detach: false, Tty: false }),
    )) as Duplex;

    const collector = new OutputCollector(opts.onOutput, opts.outputCap);
    let aborted = false;
    // stdout and stderr frames interleave: an abort can come before the PID line; then kill on arrival
    const killer = new AbortKiller((pid, sig) => this.execQuiet(killArgv(pid, sig)));
    const kill = (pid: number) => killer.kill(pid);
    const pidFilter = new PidMarkerFilter((pid) => aborted && kill(pid));
    const stderrDecoder = new StringDecoder('utf8');
    const demuxer = new ExecStreamDemuxer((name, payload) => {
      if (name === 'stdout') collector.write('stdout', payload);
      else if (killable) collector.push(pidFilter.push(stderrDecoder.write(payload)));
      else collector.write('stderr', payload);
    });

    const onAbort = () => {
      aborted = true;
      if (pidFilter.pid !== undefined) kill(pidFilter.pid);
      const t = setTimeout(() => stream.destroy(), KILL_GRACE_MS + 2_000);
      t.unref();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        stream.on('data', (chunk: Buffer) => {
          try {
            demuxer.push(chunk);
          } catch (err) {
            stream.destroy();
            reject(err as Error);
          }
        });
        stream.on('end', () => resolve());
        stream.on('close', () => resolve());
        stream.on('error', (err) => {
          if (aborted) resolve();
          else reject(executorError('EXECUTOR_UNREACHABLE', `the exec stream failed: ${err.message}`));
        });
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.destroy();
      killer.ended();
    }
    if (killable) collector.push(pidFilter.push(stderrDecoder.end()) + pidFilter.flush());
    collector.end();
    if (aborted) throw abortedError(argv.join(' '), collector.result());

    const exitCode = await this.exitCode(exec, signal, killable ? pidFilter.pid : undefined, collector);
    return { exitCode, ...collector.result() };
  }

  async close(): Promise<void> {
    // docker-modem opens a connection per request: nothing to close
  }

  private get container(): Docker.Container {
    return this.docker.getContainer(this.config.container);
  }

  /**
   * The stream can end a moment before the Engine records the exit, or early when the attach
   * connection drops while the command goes on: then keep asking until it has really finished (a
   * collector must never run on unseen after the caller lifted its fence). An abort kills it.
   */
  private async exitCode(
    exec: Docker.Exec,
    signal: AbortSignal | undefined,
    pid: number | undefined,
    collector: OutputCollector,
  ): Promise<number> {
    let noted = false;
    for (let attempt = 0; ; attempt++) {
      const info = await this.call('inspect the exec', () => exec.inspect());
      if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
      if (signal?.aborted) {
        if (pid !== undefined) await this.execQuiet(killArgv(pid, 'KILL'));
        throw abortedError('the command', collector.result());
      }
      if (attempt === 20 && !noted) {
        noted = true;
        collector.push(
          '\n[registry-gateway: the output stream closed early; waiting for the command to finish]\n',
        );
      }
      await new Promise((r) => setTimeout(r, attempt < 20 ? 100 : 1_000));
    }
  }

  private async execQuiet(argv: string[]): Promise<void> {
    try {
      const exec = await this.container.exec({
        Cmd: argv,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
      });
      const stream = (await exec.start({ hijack: true, stdin: false, Detach: false, Tty: false })) as Duplex;
      stream.resume();
      await new Promise<void>((resolve) => {
        stream.on('end', resolve);
        stream.on('close', resolve);
        stream.on('error', () => resolve());
      });
      stream.destroy();
    } catch {
      // best effort
    }
  }

  /** Engine and transport errors become executor errors with stable codes. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error & { statusCode?: number; code?: string; json?: { message?: string } };
      const where = this.config.host
        ? `${this.config.host}:${this.config.port ?? ''}`
        : this.config.socketPath || DEFAULT_SOCKET;
      const detail = e.json?.message ?? e.message;
      if (e.statusCode === 304) return undefined as T; // already stopped / already started
      if (e.statusCode === 404) {
        throw executorError(
          'EXECUTOR_TARGET_NOT_FOUND',
          `cannot ${what}: no container ${this.config.container} (${detail})`,
          {
            container: this.config.container,
          },
        );
      }
      if (e.statusCode === 409) {
        throw executorError(
          'EXECUTOR_COMMAND_FAILED',
          `cannot ${what}: the container is not running (${detail})`,
          {
            container: this.config.container,
          },
        );
      }
      if (e.statusCode === 401 || e.statusCode === 403) {
        throw executorError(
          'EXECUTOR_AUTH_FAILED',
          `cannot ${what}: the Engine at ${where} refused (${detail})`,
        );
      }
      if (e.statusCode) {
        throw executorError(
          'EXECUTOR_COMMAND_FAILED',
          `cannot ${what}: the Engine answered ${e.statusCode} (${detail})`,
        );
      }
      if (
        /certificate|self[- ]signed|SSL|TLS/i.test(e.message) ||
        e.code?.startsWith('ERR_TLS') ||
        e.code?.includes('CERT')
      ) {
        throw executorError(
          'EXECUTOR_AUTH_FAILED',
          `cannot ${what}: TLS with the Engine at ${where} failed (${e.message})`,
        );
      }
      throw executorError(
        'EXECUTOR_UNREACHABLE',
        `cannot ${what}: the Engine at ${where} is unreachable (${e.code ?? e.message})`,
      );
    }
  }
}
