import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { appendFile, mkdir, open } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { request as undiciRequest } from 'undici';
import { Queue } from 'bullmq';
import { envSchema } from '../../src/config/config.schema.js';
import { Queues } from '../../src/queue/queue.constants.js';
import { redisOptions } from '../../src/queue/redis-options.js';
import { BENCH_DATA_DIR, PROJECT_ROOT } from './bench.js';
import { freePort } from '../../test/support/ports.js';

const API_ENTRY = join(PROJECT_ROOT, 'dist', 'src', 'main.js');
const WORKER_ENTRY = join(PROJECT_ROOT, 'dist', 'src', 'worker.js');
// Generous: the first start runs every migration on an empty database.
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
/** How long a worker may take until each of its queues has a consumer (it has no HTTP endpoint). */
const WORKER_READY_TIMEOUT_MS = 60_000;
/** GATEWAY_ADMIN_TOKEN of every gateway a bench starts; `request()` sends it. */
const BENCH_ADMIN_TOKEN = `bench-admin-${randomBytes(24).toString('hex')}`;

export interface GatewayProcessOptions {
  /** At least DATABASE_URL, REDIS_URL, REDIS_PREFIX and SECRETS_KEY; any other gateway variable too. */
  env: Record<string, string>;
  /** Also start `node dist/src/worker.js` (after the API, which runs the migrations). */
  worker?: boolean;
  /** Default: a free loopback port, kept across restart(). */
  port?: number;
  /** Names the log files under .data/bench/logs/. */
  name?: string;
  /** Extra node flags for both processes, e.g. ['--prof'] or ['--max-old-space-size=256']. */
  nodeArgs?: string[];
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** A bench that throws or is interrupted must not leave gateways running; see also startWatchdog. */
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveChildren) {
        try {
          c.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/** Kills `pid` when this process dies in a way no 'exit' handler sees (SIGKILL): the pipe closes. */
function startWatchdog(pid: number): ChildProcess {
  const watchdog = spawn(
    'sh',
    ['-c', 'read _ignored; kill -KILL "$1" 2>/dev/null', 'gateway-watchdog', String(pid)],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    },
  );
  watchdog.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as Socket | null)?.unref();
  return watchdog;
}

/** Ids of the Redis clients consuming each queue (BullMQ names its workers' connections). */
async function consumers(queues: Queue[]): Promise<Set<string>[]> {
  return Promise.all(queues.map(async (q) => new Set((await q.getWorkers()).map((w) => String(w.id)))));
}

/** Status of GET /health/ready, or undefined while nothing answers; no keep-alive socket stays behind. */
function readyStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/health/ready`, { agent: false, timeout: 3_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The gateway as it runs in production: `node dist/src/main.js` (and optionally the worker) as child
 * processes, configured only through the environment. Needs `npm run build` first (bench.sh does it).
 */
export class GatewayProcess {
  readonly port: number;
  readonly url: string;
  /** `Authorization` header value of the bootstrap admin: send it with requests made outside request(). */
  readonly authorization = `Bearer ${BENCH_ADMIN_TOKEN}`;
  private readonly apiLog: string;
  private readonly workerLog: string;
  private api?: Child;
  private worker?: Child;

  private constructor(
    private readonly opts: GatewayProcessOptions,
    port: number,
  ) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    const name = opts.name ?? 'gateway';
    this.apiLog = join(BENCH_DATA_DIR, 'logs', `${name}-api.log`);
    this.workerLog = join(BENCH_DATA_DIR, 'logs', `${name}-worker.log`);
  }

  static async start(opts: GatewayProcessOptions): Promise<GatewayProcess> {
    for (const entry of [API_ENTRY, ...(opts.worker ? [WORKER_ENTRY] : [])]) {
      if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first`);
    }
    await mkdir(join(BENCH_DATA_DIR, 'logs'), { recursive: true });
    // An auto-picked port can be taken between probing and listening; then try another one.
    const attempts = opts.port === undefined ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      const gateway = new GatewayProcess(opts, opts.port ?? (await freePort()));
      try {
        await gateway.launch();
        return gateway;
      } catch (err) {
        await gateway.stop();
        if (!/EADDRINUSE/.test(String(err)) || attempt >= attempts) throw err;
      }
    }
  }

  /** Pid of the API process (for /proc readings), while it runs. */
  get apiPid(): number | undefined {
    return this.api?.child.pid;
  }

  get workerPid(): number | undefined {
    return this.worker?.child.pid;
  }

  /**
   * One request to the API on a connection of its own; throws unless the status is 2xx. Returns the
   * body as text (JSON.parse it when needed), e.g. request('POST', '/api/v1/registries', { name, url }).
   */
  async request(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<string> {
    const res = await undiciRequest(`${this.url}${path}`, {
      method,
      headers: {
        authorization: this.authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      reset: true,
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) {
      throw new Error(`${method} ${path} answered ${res.statusCode}: ${text.slice(0, 500)}`);
    }
    return text;
  }

  /** Kills the worker without warning (SIGKILL): no shutdown hook runs, its jobs stay locked until they stall. */
  async killWorker(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.kill();
  }

  /** Starts a worker process (again), on the same environment; resolves once it takes jobs. */
  async startWorker(): Promise<void> {
    if (this.worker?.running) throw new Error('the worker is already running');
    const env = this.env();
    const queues = Object.values(Queues).map(
      (name) => new Queue(name, { connection: redisOptions(env.REDIS_URL!), prefix: env.REDIS_PREFIX }),
    );
    try {
      const before = await consumers(queues);
      this.worker = await Child.spawn(
        [...(this.opts.nodeArgs ?? []), WORKER_ENTRY],
        env,
        this.workerLog,
        'worker',
      );
      // A worker has no HTTP endpoint: it is ready when every queue has a consumer that was not there before.
      const deadline = Date.now() + WORKER_READY_TIMEOUT_MS;
      for (;;) {
        if (!this.worker.running) throw await this.worker.exitedEarly();
        const now = await consumers(queues);
        const waiting = queues.filter((_, i) => ![...now[i]].some((id) => !before[i].has(id)));
        if (!waiting.length) return;
        if (Date.now() > deadline)
          throw new Error(
            `the worker did not consume ${waiting.map((q) => q.name).join(', ')} within ${WORKER_READY_TIMEOUT_MS} ms; see ${this.workerLog}`,
          );
        await sleep(50);
      }
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
  }

  /** Same port, same database: a fresh process with empty in-memory caches and connection pools. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** SIGTERM (the gateway closes its pools and queues), SIGKILL when it does not exit in time. */
  async stop(): Promise<void> {
    const worker = this.worker;
    const api = this.api;
    this.worker = undefined;
    this.api = undefined;
    await Promise.all([worker?.stop(), api?.stop()]);
  }

  private env(): NodeJS.ProcessEnv {
    return childEnv({
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      BULL_BOARD: 'false',
      HOST: '127.0.0.1',
      PORT: String(this.port),
      GATEWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      // The per-principal limit stays on (its Redis call is part of what is measured), out of reach.
      RATE_LIMIT_REQUESTS: '1000000000',
      ...this.opts.env,
    });
  }

  private async launch(): Promise<void> {
    const env = this.env();
    const nodeArgs = this.opts.nodeArgs ?? [];
    this.api = await Child.spawn([...nodeArgs, API_ENTRY], env, this.apiLog, `API on ${this.url}`);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let status: number | undefined;
    for (;;) {
      if (!this.api.running) throw await this.api.exitedEarly();
      status = await readyStatus(this.url);
      if (status === 200 && this.api.running) break;
      if (Date.now() > deadline) {
        throw new Error(
          `gateway API on ${this.url} not ready within ${READY_TIMEOUT_MS} ms (last status ${status}); ` +
            `log tail:\n${await this.api.logTail()}`,
        );
      }
      await sleep(status === undefined ? 100 : 250);
    }
    if (this.opts.worker) await this.startWorker();
  }
}

/**
 * The caller's environment without any gateway variable (a developer's shell must not change the
 * measurement) and without NODE_OPTIONS (tsx's loader must not reach the compiled gateway).
 */
function childEnv(gateway: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(envSchema.shape)) delete env[key];
  delete env.NODE_OPTIONS;
  return { ...env, ...gateway };
}

class Child {
  private readonly exited: Promise<void>;
  private watchdog?: ChildProcess;
  private spawnError?: Error;

  private constructor(
    readonly child: ChildProcess,
    private readonly logPath: string,
    private readonly what: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('error', (err) => (this.spawnError = err));
    if (child.pid !== undefined) this.watchdog = startWatchdog(child.pid);
  }

  static async spawn(args: string[], env: NodeJS.ProcessEnv, logPath: string, what: string): Promise<Child> {
    await appendFile(logPath, `--- ${what} starting at ${new Date().toISOString()}\n`);
    const fd = openSync(logPath, 'a');
    try {
      const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env, stdio: ['ignore', fd, fd] });
      track(child);
      return new Child(child, logPath, what);
    } finally {
      closeSync(fd);
    }
  }

  get running(): boolean {
    return !this.spawnError && this.child.exitCode === null && this.child.signalCode === null;
  }

  async exitedEarly(): Promise<Error> {
    if (this.spawnError)
      return new Error(`cannot start the gateway ${this.what}: ${this.spawnError.message}`);
    await sleep(50); // let the log receive the last write
    return new Error(
      `gateway ${this.what} exited early (code ${this.child.exitCode}, signal ${this.child.signalCode}); ` +
        `log tail:\n${await this.logTail()}`,
    );
  }

  async kill(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    this.watchdog?.kill('SIGKILL');
    this.watchdog = undefined;
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        sleep(STOP_TIMEOUT_MS).then(() => true),
      ]);
      if (timedOut) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    this.watchdog?.kill('SIGKILL');
    this.watchdog = undefined;
  }

  async logTail(lines = 40): Promise<string> {
    try {
      const handle = await open(this.logPath, 'r');
      try {
        const { size } = await handle.stat();
        const length = Math.min(size, 16_384);
        const buffer = Buffer.alloc(length);
        await handle.read(buffer, 0, length, size - length);
        return buffer
          .toString('utf8')
          .split('\n')
          .slice(-lines - 1)
          .join('\n')
          .trim();
      } finally {
        await handle.close();
      }
    } catch {
      return '';
    }
  }
}
