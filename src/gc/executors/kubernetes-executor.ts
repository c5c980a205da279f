import { PassThrough, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { CoreV1Api, Exec, KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
// Not re-exported by the package index; the package has no exports map, so the path is public enough.
import { WebSocketHandler } from '@kubernetes/client-node/dist/web-socket-handler.js';
import type { DomainError } from '../../common/domain-error.js';
import {
  abortedError,
  DEFAULT_CONTAINER_CONFIG_PATH,
  DEFAULT_CONTAINER_STORAGE_PATH,
  DEFAULT_REGISTRY_COMMAND,
  executorError,
  fenceUnsupported,
  gcArgv,
  AbortKiller,
  KILL_GRACE_MS,
  killArgv,
  OutputCollector,
  PidMarkerFilter,
  pidWrapped,
  withEnv,
  type ExecOptions,
  type ExecResult,
  type GcCommandOptions,
  type GcExecutor,
  type GcExecutorCapabilities,
  type GcExecutorSecrets,
  type KubernetesExecutorConfig,
} from './gc-executor.js';

const DEFAULT_READY_TIMEOUT_MS = 300_000;
const POLL_MS = 1_000;
const QUIET_EXEC_TIMEOUT_MS = 15_000;

/** The exit code in a v4.channel.k8s.io status (channel 3): Success, or Failure/NonZeroExitCode with an ExitCode cause. */
export function exitCodeFromStatus(status: V1Status): number | undefined {
  if (status.status === 'Success') return 0;
  if (status.reason !== 'NonZeroExitCode') return undefined;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  const code = cause?.message !== undefined ? Number(cause.message) : NaN;
  return Number.isInteger(code) ? code : undefined;
}

function isReady(pod: V1Pod): boolean {
  return (
    pod.status?.phase === 'Running' &&
    !pod.metadata?.deletionTimestamp &&
    !!pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

/**
 * Runs the collector in the registry's pod through the pods/exec subresource (the client library's
 * Exec: a websocket speaking v4.channel.k8s.io, stdout on channel 1, stderr on 2, the exit status as
 * JSON on 3). The pod is fixed (`pod`) or the first Running one matching `labelSelector`. `restart`
 * deletes every pod matching the selector and waits until as many new pods are Ready (the controller
 * recreates them; each had its own in-memory cache). A pod cannot be stopped or switched to
 * read-only from here: those are unsupported.
 */
export class KubernetesGcExecutor implements GcExecutor {
  readonly type = 'kubernetes' as const;
  readonly capabilities: GcExecutorCapabilities;
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly execApi: Exec;
  private readonly command: string[];
  private readonly configPath: string;
  readonly storagePath: string;

  constructor(
    private readonly config: KubernetesExecutorConfig,
    secrets: GcExecutorSecrets = {},
  ) {
    if (!config.namespace)
      throw executorError('EXECUTOR_CONFIG_INVALID', 'the kubernetes executor needs a namespace');
    if (!config.pod && !config.labelSelector) {
      throw executorError(
        'EXECUTOR_CONFIG_INVALID',
        'the kubernetes executor needs a pod or a labelSelector',
      );
    }
    this.kc = new KubeConfig();
    try {
      if (config.inCluster) this.kc.loadFromCluster();
      else if (secrets.kubeconfig) this.kc.loadFromString(secrets.kubeconfig);
      else throw new Error('a kubeconfig secret or inCluster: true is required');
    } catch (err) {
      throw executorError('EXECUTOR_CONFIG_INVALID', `kubernetes executor: ${(err as Error).message}`);
    }
    if (!this.kc.getCurrentCluster()) {
      throw executorError(
        'EXECUTOR_CONFIG_INVALID',
        'kubernetes executor: the kubeconfig has no current cluster',
      );
    }
    this.core = this.kc.makeApiClient(CoreV1Api);
    // The handler applies a v5 CLOSE frame to its own streams, which default to process.stdin/stdout/
    // stderr: a server closing "stdout" would end the worker's log output. Give it throwaway streams.
    const inert = () => new PassThrough().resume();
    this.execApi = new Exec(
      this.kc,
      new WebSocketHandler(this.kc, undefined, { stdin: inert(), stdout: inert(), stderr: inert() }),
    );
    this.command = config.command?.length ? [...config.command] : [...DEFAULT_REGISTRY_COMMAND];
    this.configPath = config.configPath || DEFAULT_CONTAINER_CONFIG_PATH;
    this.storagePath = config.storagePath || DEFAULT_CONTAINER_STORAGE_PATH;
    this.capabilities = { stop: false, readOnly: false, restart: !!config.labelSelector };
  }

  garbageCollect(opts: GcCommandOptions): Promise<ExecResult> {
    return this.exec(gcArgv(this.command, this.configPath, opts), opts);
  }

  async stop(): Promise<void> {
    throw fenceUnsupported('kubernetes', 'stop a pod (its controller would recreate it)');
  }

  async start(_opts: { readOnly: boolean }): Promise<void> {
    throw fenceUnsupported('kubernetes', 'start a pod');
  }

  async restart(opts: { readOnly: boolean }): Promise<void> {
    if (opts.readOnly)
      throw fenceUnsupported('kubernetes', 'restart a pod read-only (its environment is fixed)');
    const selector = this.config.labelSelector;
    if (!selector) throw fenceUnsupported('kubernetes', 'restart a fixed pod (configure labelSelector)');
    const { namespace } = this.config;
    const before = await this.api('list pods', () =>
      this.core.listNamespacedPod({ namespace, labelSelector: selector }),
    );
    const old = before.items.filter((p) => !p.metadata?.deletionTimestamp);
    if (!old.length) {
      throw executorError('EXECUTOR_TARGET_NOT_FOUND', `no pod in ${namespace} matches ${selector}`, {
        namespace,
        selector,
      });
    }
    const oldUids = new Set(old.map((p) => p.metadata?.uid));
    for (const pod of old) {
      const name = pod.metadata?.name ?? '';
      try {
        await this.api(`delete pod ${name}`, () => this.core.deleteNamespacedPod({ name, namespace }));
      } catch (err) {
        if ((err as DomainError).code !== 'EXECUTOR_TARGET_NOT_FOUND') throw err;
      }
    }
    const deadline = Date.now() + (this.config.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    for (;;) {
      const list = await this.api('list pods', () =>
        this.core.listNamespacedPod({ namespace, labelSelector: selector }),
      );
      const ready = list.items.filter((p) => !oldUids.has(p.metadata?.uid) && isReady(p));
      if (ready.length >= old.length) return;
      if (Date.now() > deadline) {
        throw executorError(
          'EXECUTOR_COMMAND_FAILED',
          `restart: ${ready.length} of ${old.length} new pods matching ${selector} became Ready in time`,
          { namespace, selector, ready: ready.map((p) => p.metadata?.name) },
        );
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!argv.length) throw executorError('EXECUTOR_CONFIG_INVALID', 'empty command');
    const { signal } = opts;
    if (signal?.aborted) throw abortedError(argv.join(' '));
    const { pod, container } = await this.target();
    const killable = this.config.killOnAbort !== false;
    const withVars = withEnv(argv, { ...this.config.env, ...opts.env });
    const command = killable ? pidWrapped(withVars) : withVars;

    const collector = new OutputCollector(opts.onOutput, opts.outputCap);
    let aborted = false;
    // stdout and stderr are separate channels: an abort can come before the PID line; then kill on arrival
    const killer = new AbortKiller((pid, sig) => this.execQuiet(pod, container, killArgv(pid, sig)));
    const kill = (pid: number) => killer.kill(pid);
    const pidFilter = new PidMarkerFilter((pid) => aborted && kill(pid));
    const stderrDecoder = new StringDecoder('utf8');
    const stdout = new Writable({
      write(chunk: Buffer, _enc, cb) {
        collector.write('stdout', chunk);
        cb();
      },
    });
    const stderr = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (killable) collector.push(pidFilter.push(stderrDecoder.write(chunk)));
        else collector.write('stderr', chunk);
        cb();
      },
    });
    let status: V1Status | undefined;
    const ws = await this.connectExec(pod, container, command, stdout, stderr, (s) => (status = s));

    const onAbort = () => {
      aborted = true;
      if (pidFilter.pid !== undefined) kill(pidFilter.pid);
      const t = setTimeout(() => ws.close(), KILL_GRACE_MS + 2_000);
      t.unref();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve) => {
        if (ws.readyState === ws.CLOSED) return resolve();
        ws.on('close', () => resolve());
        ws.on('error', () => resolve());
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
      killer.ended();
    }
    if (killable) collector.push(pidFilter.push(stderrDecoder.end()) + pidFilter.flush());
    collector.end();
    if (aborted) throw abortedError(argv.join(' '), collector.result());
    if (!status) {
      // The connection dropped; the command may go on: kill it so that no collector runs unfenced.
      const pid = killable ? pidFilter.pid : undefined;
      if (pid !== undefined) await this.execQuiet(pod, container, killArgv(pid, 'KILL'));
      throw executorError(
        'EXECUTOR_UNREACHABLE',
        `the exec connection to ${pod} closed before the command exited`,
        { ...collector.result(), pid, killAttempted: pid !== undefined },
      );
    }
    const exitCode = exitCodeFromStatus(status);
    if (exitCode === undefined) {
      // the command never ran (no such binary, container gone, ...): there is no exit code to report
      throw executorError(
        'EXECUTOR_COMMAND_FAILED',
        `exec in ${pod}/${container} failed: ${status.message ?? status.reason}`,
        {
          status: status.status,
          reason: status.reason,
          ...collector.result(),
        },
      );
    }
    return { exitCode, ...collector.result() };
  }

  async close(): Promise<void> {
    // one request or websocket per call: nothing held open
  }

  private async connectExec(
    pod: string,
    container: string,
    command: string[],
    stdout: Writable,
    stderr: Writable,
    onStatus: (s: V1Status) => void,
  ) {
    try {
      return await this.execApi.exec(
        this.config.namespace,
        pod,
        container,
        command,
        stdout,
        stderr,
        null,
        false,
        onStatus,
      );
    } catch (err) {
      throw this.translate(`exec in ${pod}`, err);
    }
  }

  /** Best effort and bounded: used from abort and connection-loss paths, which must not hang. */
  private async execQuiet(pod: string, container: string, argv: string[]): Promise<void> {
    const attempt = (async () => {
      const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
      const ws = await this.execApi.exec(
        this.config.namespace,
        pod,
        container,
        argv,
        sink(),
        sink(),
        null,
        false,
      );
      await new Promise<void>((resolve) => {
        ws.on('close', () => resolve());
        ws.on('error', () => resolve());
      });
    })().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([attempt, new Promise((r) => (timer = setTimeout(r, QUIET_EXEC_TIMEOUT_MS)))]);
    clearTimeout(timer);
  }

  /** The pod and container commands run in. */
  private async target(): Promise<{ pod: string; container: string }> {
    const { namespace } = this.config;
    let pod: V1Pod | undefined;
    if (this.config.pod) {
      const name = this.config.pod;
      pod = await this.api(`read pod ${name}`, () => this.core.readNamespacedPod({ name, namespace }));
      if (pod.status?.phase !== 'Running') {
        throw executorError(
          'EXECUTOR_TARGET_NOT_FOUND',
          `pod ${namespace}/${name} is ${pod.status?.phase ?? 'not running'}`,
        );
      }
    } else {
      const labelSelector = this.config.labelSelector ?? '';
      const list = await this.api('list pods', () =>
        this.core.listNamespacedPod({ namespace, labelSelector }),
      );
      const running = list.items
        .filter((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp)
        .sort(
          (a, b) =>
            Number(isReady(b)) - Number(isReady(a)) ||
            (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''),
        );
      pod = running[0];
      if (!pod) {
        throw executorError(
          'EXECUTOR_TARGET_NOT_FOUND',
          `no Running pod in ${namespace} matches ${labelSelector}`,
          {
            namespace,
            labelSelector,
          },
        );
      }
    }
    const name = pod.metadata?.name ?? '';
    const containers = pod.spec?.containers ?? [];
    if (this.config.container) {
      if (containers.length && !containers.some((c) => c.name === this.config.container)) {
        throw executorError(
          'EXECUTOR_TARGET_NOT_FOUND',
          `pod ${namespace}/${name} has no container ${this.config.container}`,
        );
      }
      return { pod: name, container: this.config.container };
    }
    if (containers.length !== 1) {
      throw executorError(
        'EXECUTOR_CONFIG_INVALID',
        `pod ${namespace}/${name} has ${containers.length} containers: configure which one runs the registry`,
        { containers: containers.map((c) => c.name) },
      );
    }
    return { pod: name, container: containers[0].name };
  }

  private async api<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.translate(what, err);
    }
  }

  private translate(what: string, err: unknown): DomainError {
    const e = err as Error & { code?: unknown; body?: unknown; cause?: { code?: string; message?: string } };
    const message = e?.message ?? String(err);
    const status =
      typeof e?.code === 'number' ? e.code : Number(/Unexpected server response: (\d{3})/.exec(message)?.[1]);
    if (status === 401 || status === 403) {
      return executorError('EXECUTOR_AUTH_FAILED', `cannot ${what}: the Kubernetes API refused (${status})`);
    }
    if (status === 404) return executorError('EXECUTOR_TARGET_NOT_FOUND', `cannot ${what}: not found`);
    if (status)
      return executorError(
        'EXECUTOR_COMMAND_FAILED',
        `cannot ${what}: the Kubernetes API answered ${status}`,
      );
    if (/HTTP protocol is not allowed/.test(message)) {
      return executorError(
        'EXECUTOR_CONFIG_INVALID',
        `cannot ${what}: ${message} (use https, or insecure-skip-tls-verify)`,
      );
    }
    if (
      /certificate|self[- ]signed|SSL|TLS/i.test(
        `${message} ${e?.cause?.message ?? ''} ${e?.cause?.code ?? ''}`,
      )
    ) {
      return executorError(
        'EXECUTOR_AUTH_FAILED',
        `cannot ${what}: TLS with the Kubernetes API failed (${e?.cause?.message ?? message})`,
      );
    }
    const cause = e?.cause?.code ?? (typeof e?.code === 'string' ? e.code : undefined);
    return executorError(
      'EXECUTOR_UNREACHABLE',
      `cannot ${what}: the Kubernetes API is unreachable (${cause ?? message})`,
    );
  }
}
