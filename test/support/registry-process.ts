import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { appendFile, lstat, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { freePort } from './ports.js';

/** The Debian package's binary name; the upstream image calls it `registry`. */
const REGISTRY_BINARY = 'docker-registry';
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_LINES = 40;

export interface RegistryProcessOptions {
  /** htpasswd auth; distribution 2.8 only accepts bcrypt hashes. */
  basicAuth?: { username: string; password: string };
  /**
   * auth.token: clients need a JWT from the token server at `realm`, issued by `issuer` for `service` and
   * signed by a key whose certificate chains to the PEM bundle at `rootCertBundle`. Excludes basicAuth.
   */
  tokenAuth?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** http.tls: serve HTTPS with this certificate and key (PEM files). */
  tls?: { certPath: string; keyPath: string };
  /** storage.delete.enabled; default true. */
  deleteEnabled?: boolean;
  /** storage.maintenance.readonly.enabled. */
  readOnly?: boolean;
  /** storage.cache.blobdescriptor; default 'inmemory', the upstream default config. */
  cache?: 'inmemory' | 'redis' | 'none';
  /** Used when cache is 'redis'. */
  redis?: { addr: string; db?: number };
  /** proxy.remoteurl: makes the registry a pull-through cache. */
  proxyRemoteUrl?: string;
  /** notifications.endpoints[0].url */
  notificationsUrl?: string;
  notificationsHeaders?: Record<string, string[]>;
  /** Storage folder to reuse; default a fresh temp dir that cleanup() removes. */
  rootDir?: string;
  /** Default: a free loopback port. */
  port?: number;
  /** `info` logs a "response completed" line for every request (tests count upstream calls with it). */
  logLevel?: 'info' | 'warn';
}

type RestartOverrides = Partial<Omit<RegistryProcessOptions, 'port' | 'rootDir'>>;

// A test process that dies without calling cleanup() must not leave registries behind; 'exit'
// covers normal and error exits, the per-child watchdog below covers signals and SIGKILL.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

function track(child: ChildProcess): void {
  installExitHook();
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/**
 * A shell that blocks reading a pipe from this process: the pipe closes however this process dies
 * (even SIGKILL, where no 'exit' handler runs), and the shell then kills the registry.
 */
function startWatchdog(pid: number): ChildProcess {
  const watchdog = spawn(
    'sh',
    ['-c', 'read _ignored; kill -KILL "$1" 2>/dev/null', 'registry-watchdog', String(pid)],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
      // Its own process group, so a Ctrl-C to the test run does not kill the watchdog before the registry.
      detached: true,
    },
  );
  watchdog.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as Socket | null)?.unref();
  return watchdog;
}

/**
 * The readiness probe cannot tell our registry from another server on the same port, so a taken
 * port must fail here rather than look like a successful start.
 */
async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${port} on 127.0.0.1 is already in use`) : err),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}

/**
 * Status of GET /v2/, or undefined while nothing listens, or while what answers is not this registry
 * (its X-Registry-Instance header differs: another server got the port first). No pooling: a probe
 * must not keep sockets.
 */
function probe(url: string, instance: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    // The readiness probe only asks whether something answers; trust is what the tests check.
    const req = send(
      `${url}/v2/`,
      { method: 'GET', agent: false, timeout: 1_000, rejectUnauthorized: false },
      (res) => {
        res.resume();
        const mine = res.headers['x-registry-instance'] === instance;
        res.on('end', () => resolve(mine ? res.statusCode : undefined));
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A real CNCF Distribution registry on a loopback port, with its own config and storage. */
export class RegistryProcess {
  readonly port: number;
  readonly url: string;
  readonly rootDir: string;
  readonly configPath: string;
  readonly logPath: string;
  private readonly workDir: string;
  private readonly httpSecret = randomBytes(24).toString('hex');
  private readonly instance = randomBytes(8).toString('hex');
  private currentOptions: RegistryProcessOptions;
  private child?: ChildProcess;
  private watchdog?: ChildProcess;
  private exited?: Promise<void>;

  private constructor(workDir: string, port: number, rootDir: string, opts: RegistryProcessOptions) {
    this.workDir = workDir;
    this.port = port;
    this.url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    this.rootDir = rootDir;
    this.configPath = join(workDir, 'config.yml');
    this.logPath = join(workDir, 'registry.log');
    this.currentOptions = { ...opts, port, rootDir };
  }

  static async start(opts: RegistryProcessOptions = {}): Promise<RegistryProcess> {
    const workDir = await mkdtemp(join(tmpdir(), 'registry-gateway-registry-'));
    const rootDir = opts.rootDir ?? join(workDir, 'data');
    // An auto-picked port can be taken between probing and listening; then try another one.
    const attempts = opts.port === undefined ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort());
      const registry = new RegistryProcess(workDir, port, rootDir, opts);
      try {
        await registry.launch();
        return registry;
      } catch (err) {
        const portTaken = /already in use/.test(String(err));
        if (!portTaken || attempt >= attempts) {
          await registry.stop().catch(() => undefined);
          await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
          throw err;
        }
      }
    }
  }

  /** The options the registry currently runs with (port and rootDir resolved). */
  get options(): Readonly<RegistryProcessOptions> {
    return this.currentOptions;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM, wait for the exit, SIGKILL when it does not come. */
  async stop(): Promise<void> {
    const child = this.child;
    const exited = this.exited;
    this.child = undefined;
    this.exited = undefined;
    if (child && exited && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timedOut = await Promise.race([
        exited.then(() => false),
        sleep(STOP_TIMEOUT_MS).then(() => true),
      ]);
      if (timedOut) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    this.watchdog?.kill('SIGKILL');
    this.watchdog = undefined;
  }

  /** Same port and storage; the config is rewritten with the overrides applied. */
  async restart(overrides: RestartOverrides = {}): Promise<void> {
    await this.stop();
    this.currentOptions = { ...this.currentOptions, ...overrides, port: this.port, rootDir: this.rootDir };
    await this.launch();
  }

  /**
   * Runs `docker-registry garbage-collect` on this registry's config. It does not stop the registry:
   * tests that need a fenced GC call stop() or restart({ readOnly: true }) themselves.
   */
  async garbageCollect(
    args: { dryRun?: boolean; deleteUntagged?: boolean } = {},
  ): Promise<{ code: number; output: string }> {
    const argv = ['garbage-collect'];
    if (args.dryRun) argv.push('--dry-run');
    if (args.deleteUntagged) argv.push('--delete-untagged');
    argv.push(this.configPath);
    const child = spawn(REGISTRY_BINARY, argv, { env: registryEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
    });
    return { code, output };
  }

  /** Apparent size in bytes of every file under rootDir, like `du -sb`. */
  async diskUsage(): Promise<number> {
    let entries;
    try {
      entries = await readdir(this.rootDir, { recursive: true, withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let total = 0;
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      try {
        total += (await lstat(join(entry.parentPath, entry.name))).size;
      } catch (err) {
        // a purge running concurrently may remove files between listing and stat
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return total;
  }

  /** stop() and remove the temp dirs this instance created (never a caller-provided rootDir). */
  async cleanup(): Promise<void> {
    await this.stop();
    // The default rootDir lives inside workDir; a caller's rootDir is elsewhere and survives.
    await rm(this.workDir, { recursive: true, force: true });
  }

  /** The last lines of the registry's log, for error messages. */
  async logTail(lines = LOG_TAIL_LINES): Promise<string> {
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

  private async launch(): Promise<void> {
    await assertPortFree(this.port);
    await this.writeConfig();
    await appendFile(this.logPath, `--- starting on ${this.url} at ${new Date().toISOString()}\n`);
    const logFd = openSync(this.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(REGISTRY_BINARY, ['serve', this.configPath], {
        env: registryEnv(),
        stdio: ['ignore', logFd, logFd],
      });
    } finally {
      closeSync(logFd);
    }
    // A forgotten cleanup() must not keep the test worker alive; the exit hook still kills it.
    child.unref();
    track(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    this.child = child;
    this.exited = exited;
    if (child.pid !== undefined) this.watchdog = startWatchdog(child.pid);

    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (spawnError) throw new Error(`cannot run ${REGISTRY_BINARY}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        await sleep(50); // let the log file receive the last write
        throw new Error(
          `registry on ${this.url} exited early (code ${child.exitCode}, signal ${child.signalCode}); ` +
            `config ${this.configPath}; log tail:\n${await this.logTail()}`,
        );
      }
      const status = await probe(this.url, this.instance);
      if ((status === 200 || status === 401) && this.running) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(
          `registry on ${this.url} did not answer GET /v2/ within ${START_TIMEOUT_MS} ms (last status ${status}); ` +
            `log tail:\n${await this.logTail()}`,
        );
      }
      await sleep(status === undefined ? 50 : 200);
    }
  }

  private async writeConfig(): Promise<void> {
    const opts = this.currentOptions;
    const cache = opts.cache ?? 'inmemory';
    const storage: Record<string, unknown> = {
      filesystem: { rootdirectory: this.rootDir },
      delete: { enabled: opts.deleteEnabled ?? true },
      maintenance: {
        // The purger would delete uploads of slow tests and its timer is noise in the log.
        uploadpurging: { enabled: false },
        readonly: { enabled: opts.readOnly ?? false },
      },
    };
    if (cache !== 'none') storage.cache = { blobdescriptor: cache };

    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: opts.logLevel ?? 'warn', formatter: 'text', accesslog: { disabled: true } },
      storage,
      http: {
        addr: `127.0.0.1:${this.port}`,
        // Fixed per instance: upload state signed before a restart stays valid after it.
        secret: this.httpSecret,
        headers: { 'X-Content-Type-Options': ['nosniff'], 'X-Registry-Instance': [this.instance] },
        // no http.debug: the debug server stays off
        ...(opts.tls ? { tls: { certificate: opts.tls.certPath, key: opts.tls.keyPath } } : {}),
      },
    };

    if (cache === 'redis') {
      if (!opts.redis) throw new Error("cache 'redis' needs the redis option");
      config.redis = { addr: opts.redis.addr, db: opts.redis.db ?? 0, dialtimeout: '1s' };
    }

    if (opts.basicAuth && opts.tokenAuth) throw new Error('basicAuth and tokenAuth exclude each other');
    if (opts.tokenAuth) {
      config.auth = {
        token: {
          realm: opts.tokenAuth.realm,
          service: opts.tokenAuth.service,
          issuer: opts.tokenAuth.issuer,
          rootcertbundle: opts.tokenAuth.rootCertBundle,
        },
      };
    }

    if (opts.basicAuth) {
      const htpasswdPath = join(this.workDir, 'htpasswd');
      // Cost 4 (bcrypt's minimum): the registry checks the hash on every request.
      const hash = bcrypt.hashSync(opts.basicAuth.password, 4);
      await writeFile(htpasswdPath, `${opts.basicAuth.username}:${hash}\n`, { mode: 0o600 });
      config.auth = { htpasswd: { realm: 'registry-gateway-test', path: htpasswdPath } };
    }

    if (opts.proxyRemoteUrl) config.proxy = { remoteurl: opts.proxyRemoteUrl };

    if (opts.notificationsUrl) {
      config.notifications = {
        events: { includereferences: true },
        endpoints: [
          {
            name: 'gateway',
            url: opts.notificationsUrl,
            headers: opts.notificationsHeaders ?? {},
            timeout: '2s',
            threshold: 5,
            backoff: '1s',
          },
        ],
      };
    }

    await writeFile(this.configPath, stringify(config));
  }
}

/** REGISTRY_* variables override the config file; a developer's shell must not change a test. */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('REGISTRY_')) env[key] = value;
  }
  return env;
}
