import type { GroupRoleMapping } from '../auth/scope.js';
import { Cidr, Env, decodeKey, envSchema } from './config.schema.js';

export interface OidcConfig {
  issuer: string;
  audience: string[];
  jwksUrl: string | undefined;
  algorithms: string[];
  clockToleranceSeconds: number;
  usernameClaim: string;
  groupsClaim: string;
  groupRoles: GroupRoleMapping;
}

/** The one typed configuration object; built once from the environment and injected everywhere. */
export class AppConfig {
  readonly env: Env['NODE_ENV'];
  readonly http: { host: string; port: number };
  readonly log: { level: Env['LOG_LEVEL']; pretty: boolean };
  readonly database: { url: string; poolSize: number; poolMin: number; migrationsRun: boolean };
  readonly redis: { url: string; prefix: string };
  readonly secretsKey: Buffer;
  readonly registriesFile: { path: string | undefined; pollMs: number };
  readonly upstream: {
    timeoutMs: number;
    connections: number;
    concurrency: number;
    catalogPageSize: number;
    /** A registry's client is closed once no call has used it for this long; the next call opens a new one. */
    clientIdleMs: number;
  };
  readonly cache: { maxEntries: number };
  readonly bullBoard: boolean;
  readonly graphql: { maxDepth: number; maxComplexity: number; subscriptionPollMs: number };
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
  readonly workerMetrics: { port: number | undefined; host: string };
  readonly gc: {
    drainTimeoutMs: number;
    heartbeatMs: number;
    sweepEveryMs: number;
    /** A finished run's output is dropped after this many days. */
    outputRetentionDays: number;
    /** Bytes of a run's output kept (head and tail); the parse reads the whole stream. */
    outputCapBytes: number;
    readyTimeoutMs: number;
    verifyConcurrency: number;
    verifySample: number;
    verifySampleImages: number;
  };
  readonly webhooks: {
    timeoutMs: number;
    attempts: number;
    backoffMs: number;
    backoffMaxMs: number;
    workerConcurrency: number;
    sweepEveryMs: number;
    retentionDays: number;
    /** Registry notification ids are forgotten after this many days. */
    registryEventsDedupDays: number;
    allowPrivateTargets: boolean;
    allowedCidrs: Cidr[];
  };
  readonly auth: {
    adminToken: string | undefined;
    /** null: OIDC/JWT bearer tokens are not accepted. */
    oidc: OidcConfig | null;
    rateLimit: { requests: number; windowSeconds: number; authFailures: number };
    metricsToken: string | undefined;
  };

  constructor(e: Env) {
    this.env = e.NODE_ENV;
    this.http = { host: e.HOST, port: e.PORT };
    this.log = { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY };
    this.database = {
      url: e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      poolMin: e.DATABASE_POOL_MIN,
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
      clientIdleMs: e.UPSTREAM_CLIENT_IDLE_MS,
    };
    this.cache = { maxEntries: e.CACHE_MAX_ENTRIES };
    this.bullBoard = e.BULL_BOARD;
    this.graphql = {
      maxDepth: e.GRAPHQL_MAX_DEPTH,
      maxComplexity: e.GRAPHQL_MAX_COMPLEXITY,
      subscriptionPollMs: e.GRAPHQL_SUBSCRIPTION_POLL_MS,
    };
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
    this.workerMetrics = { port: e.WORKER_METRICS_PORT, host: e.WORKER_METRICS_HOST };
    this.gc = {
      drainTimeoutMs: e.GC_DRAIN_TIMEOUT_MS,
      heartbeatMs: e.GC_HEARTBEAT_MS,
      sweepEveryMs: e.GC_SWEEP_EVERY_MS,
      outputRetentionDays: e.GC_OUTPUT_RETENTION_DAYS,
      outputCapBytes: e.GC_OUTPUT_CAP_BYTES,
      readyTimeoutMs: e.GC_READY_TIMEOUT_MS,
      verifyConcurrency: e.GC_VERIFY_CONCURRENCY,
      verifySample: e.GC_VERIFY_SAMPLE,
      verifySampleImages: e.GC_VERIFY_SAMPLE_IMAGES,
    };
    this.webhooks = {
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      attempts: e.WEBHOOK_ATTEMPTS,
      backoffMs: e.WEBHOOK_BACKOFF_MS,
      backoffMaxMs: e.WEBHOOK_BACKOFF_MAX_MS,
      workerConcurrency: e.WEBHOOK_WORKER_CONCURRENCY,
      sweepEveryMs: e.WEBHOOK_SWEEP_EVERY_MS,
      retentionDays: e.WEBHOOK_RETENTION_DAYS,
      registryEventsDedupDays: e.REGISTRY_EVENTS_DEDUP_DAYS,
      allowPrivateTargets: e.WEBHOOK_ALLOW_PRIVATE_TARGETS,
      allowedCidrs: e.WEBHOOK_ALLOWED_CIDRS,
    };
    const audience = (e.OIDC_AUDIENCE ?? '')
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    if (e.OIDC_ISSUER && !audience.length)
      throw new ConfigError(['OIDC_AUDIENCE: is required when OIDC_ISSUER is set']);
    this.auth = {
      adminToken: e.GATEWAY_ADMIN_TOKEN || undefined,
      oidc: e.OIDC_ISSUER
        ? {
            issuer: e.OIDC_ISSUER,
            audience,
            jwksUrl: e.OIDC_JWKS_URL,
            algorithms: e.OIDC_ALGORITHMS,
            clockToleranceSeconds: e.OIDC_CLOCK_TOLERANCE_SECONDS,
            usernameClaim: e.OIDC_USERNAME_CLAIM,
            groupsClaim: e.OIDC_GROUPS_CLAIM,
            groupRoles: e.OIDC_GROUP_ROLES,
          }
        : null,
      rateLimit: {
        requests: e.RATE_LIMIT_REQUESTS,
        windowSeconds: e.RATE_LIMIT_WINDOW_SECONDS,
        authFailures: e.RATE_LIMIT_AUTH_FAILURES,
      },
      metricsToken: e.METRICS_TOKEN || undefined,
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
export function loadConfig(given: Record<string, string | undefined> = process.env): AppConfig {
  // An empty variable is an unset one (`${VAR}` of an unset VAR in compose or a chart gives ""), not a
  // value: z.coerce.number() would read "" as 0 (RATE_LIMIT_REQUESTS= turning rate limiting off, PORT= a
  // random port).
  const env = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== ''));
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
