import { Env, decodeKey, envSchema } from './config.schema.js';

/** The one typed configuration object; built once from the environment and injected everywhere. */
export class AppConfig {
  readonly env: Env['NODE_ENV'];
  readonly http: { host: string; port: number };
  readonly log: { level: Env['LOG_LEVEL']; pretty: boolean };
  readonly database: { url: string; poolSize: number; migrationsRun: boolean };
  readonly redis: { url: string; prefix: string };
  readonly secretsKey: Buffer;
  readonly registriesFile: { path: string | undefined; pollMs: number };
  readonly upstream: { timeoutMs: number; connections: number; concurrency: number; catalogPageSize: number };
  readonly cache: { maxEntries: number };
  readonly bullBoard: boolean;
  readonly queue: { lockMs: number };
  readonly deletions: {
    maxItems: number;
    chunkSize: number;
    attempts: number;
    backoffMs: number;
    backoffMaxMs: number;
    workerConcurrency: number;
    recoverEveryMs: number;
  };

  constructor(e: Env) {
    this.env = e.NODE_ENV;
    this.http = { host: e.HOST, port: e.PORT };
    this.log = { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY };
    this.database = {
      url: e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      migrationsRun: e.DATABASE_MIGRATIONS_RUN,
    };
    this.redis = { url: e.REDIS_URL, prefix: e.REDIS_PREFIX };
    this.secretsKey = decodeKey(e.SECRETS_KEY)!;
    this.registriesFile = { path: e.REGISTRIES_FILE || undefined, pollMs: e.REGISTRIES_FILE_POLL_MS };
    this.upstream = {
      timeoutMs: e.UPSTREAM_TIMEOUT_MS,
      connections: e.UPSTREAM_CONNECTIONS,
      concurrency: e.UPSTREAM_CONCURRENCY,
      catalogPageSize: e.CATALOG_PAGE_SIZE,
    };
    this.cache = { maxEntries: e.CACHE_MAX_ENTRIES };
    this.bullBoard = e.BULL_BOARD;
    this.queue = { lockMs: e.QUEUE_LOCK_MS };
    this.deletions = {
      maxItems: e.DELETE_MAX_ITEMS,
      chunkSize: e.DELETE_CHUNK_SIZE,
      attempts: e.DELETE_ATTEMPTS,
      backoffMs: e.DELETE_BACKOFF_MS,
      backoffMaxMs: e.DELETE_BACKOFF_MAX_MS,
      workerConcurrency: e.DELETE_WORKER_CONCURRENCY,
      recoverEveryMs: e.DELETE_RECOVER_EVERY_MS,
    };
  }
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses and validates the environment; throws a ConfigError that names every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const name = i.path.join('.');
        return env[name] === undefined && i.code === 'invalid_type'
          ? `${name}: is required`
          : `${name}: ${i.message}`;
      }),
    );
  }
  return new AppConfig(parsed.data);
}
