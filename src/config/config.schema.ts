import { isIP } from 'node:net';
import { z } from 'zod';
import { groupRolesSchema } from '../auth/scope.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Every environment variable the gateway reads. Nothing outside src/config touches process.env. */
/** The longest delay a Node timer takes; longer ones fire at once (every millisecond, for an interval). */
const MAX_TIMER_MS = 2_147_483_647;

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.default(false),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// URL' }),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  DATABASE_POOL_MIN: z.coerce.number().int().min(0).max(200).default(2),
  DATABASE_MIGRATIONS_RUN: bool.default(true),
  REDIS_URL: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// URL' }),
  REDIS_PREFIX: z
    .string()
    .regex(/^[a-zA-Z0-9:_-]+$/, 'letters, digits, ":", "_" and "-" only')
    .default('rg'),
  SECRETS_KEY: z
    .string()
    .refine((v) => decodeKey(v) !== null, 'must be 32 bytes, as 64 hex characters or base64')
    .describe('AES-256-GCM key that encrypts registry passwords and webhook secrets at rest'),
  REGISTRIES_FILE: z.string().optional(),
  REGISTRIES_FILE_POLL_MS: z.coerce.number().int().min(0).max(MAX_TIMER_MS).default(5000),
  UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(100).max(MAX_TIMER_MS).default(30_000),
  UPSTREAM_CONNECTIONS: z.coerce.number().int().min(1).max(1024).default(32),
  UPSTREAM_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(32),
  UPSTREAM_CLIENT_IDLE_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(MAX_TIMER_MS)
    .default(300_000)
    .describe(
      "a registry's client (its connections, token cache and credentials) is closed once unused this long",
    ),
  CATALOG_PAGE_SIZE: z.coerce.number().int().min(1).max(1000).default(1000),
  CACHE_MAX_ENTRIES: z.coerce.number().int().min(0).default(50_000),
  BULL_BOARD: bool.default(true),
  DELETE_MAX_ITEMS: z.coerce
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(10_000)
    .describe('global cap on the manifests and tags one deletion request may delete'),
  DELETE_CHUNK_SIZE: z.coerce.number().int().min(1).max(1000).default(50),
  DELETE_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(12),
  DELETE_BACKOFF_MS: z.coerce.number().int().min(10).max(MAX_TIMER_MS).default(1000),
  DELETE_BACKOFF_MAX_MS: z.coerce.number().int().min(10).max(MAX_TIMER_MS).default(60_000),
  DELETE_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  DELETE_RECOVER_EVERY_MS: z.coerce.number().int().min(1000).max(MAX_TIMER_MS).default(30_000),
  WORKER_METRICS_PORT: z
    .preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).max(65535).optional())
    .describe(
      'when set, each worker serves GET /metrics on this port (0: any free port); unset: no metrics server',
    ),
  WORKER_METRICS_HOST: z
    .string()
    .default('127.0.0.1')
    .describe('address the worker metrics server listens on'),
  GC_DRAIN_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .max(MAX_TIMER_MS)
    .default(15 * 60_000)
    .describe('how long a GC run waits for the deletes in flight on its registry to finish before it fails'),
  GC_HEARTBEAT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(MAX_TIMER_MS)
    .default(5000)
    .describe('how often a GC run records progress'),
  GC_SWEEP_EVERY_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .max(MAX_TIMER_MS)
    .default(30_000)
    .describe('how often workers look for GC runs to queue or to recover from a crashed worker'),
  GC_OUTPUT_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(36_500)
    .default(90)
    .describe(
      "a finished GC run's output is dropped after this many days; the run and its audit events stay",
    ),
  GC_OUTPUT_CAP_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024)
    .describe(
      "how much of a GC run's output is kept (its first and last halves, the cut marked); the counts and digests are read from all of it",
    ),
  GC_READY_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .max(MAX_TIMER_MS)
    .default(120_000)
    .describe('how long a GC run waits for a restarted registry to answer /v2/'),
  GC_VERIFY_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(256)
    .default(16)
    .describe('requests in flight while a GC run verifies the registry'),
  GC_VERIFY_SAMPLE: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(16)
    .describe('verification `sample`: how many of the deleted blobs a run asks the registry about (HEAD)'),
  GC_VERIFY_SAMPLE_IMAGES: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(4)
    .describe(
      'verification `sample`: how many tagged images a run reads through the registry (manifest and every blob)',
    ),
  QUEUE_LOCK_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .max(MAX_TIMER_MS)
    .default(30_000)
    .describe('how long a job stays locked to a worker that stopped answering before another takes it'),
  WEBHOOK_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(300_000)
    .default(10_000)
    .describe('how long one webhook delivery attempt may take (connect, headers and body)'),
  WEBHOOK_ATTEMPTS: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(17)
    .describe('attempts per webhook delivery before it is dead-lettered (the defaults span about 25 h)'),
  WEBHOOK_BACKOFF_MS: z.coerce
    .number()
    .int()
    .min(10)
    .max(MAX_TIMER_MS)
    .default(30_000)
    .describe('delay before the second attempt; doubles with each failure'),
  WEBHOOK_BACKOFF_MAX_MS: z.coerce
    .number()
    .int()
    .min(10)
    .max(MAX_TIMER_MS)
    .default(3 * 3600_000)
    .describe('the longest delay between two attempts'),
  WEBHOOK_WORKER_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(256)
    .default(8)
    .describe('subscriptions one worker delivers to at the same time (each one in order)'),
  WEBHOOK_SWEEP_EVERY_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .max(MAX_TIMER_MS)
    .default(30_000)
    .describe('how often workers queue subscriptions with waiting deliveries whose job is missing'),
  WEBHOOK_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe('delivered and dead deliveries (and their attempts) are deleted after this many days'),
  REGISTRY_EVENTS_DEDUP_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe(
      "how long the id of a registry notification is remembered, so that the registry's redelivery of it is skipped",
    ),
  WEBHOOK_ALLOW_PRIVATE_TARGETS: bool
    .default(false)
    .describe(
      'allow webhook URLs on private, loopback, link-local and reserved addresses (cloud metadata addresses still need WEBHOOK_ALLOWED_CIDRS)',
    ),
  WEBHOOK_ALLOWED_CIDRS: z
    .string()
    .default('')
    .transform((v, ctx) => {
      const cidrs = v
        .split(',')
        .map((c) => c.trim())
        .filter(Boolean);
      for (const c of cidrs)
        if (!parseCidr(c))
          ctx.issues.push({ code: 'custom', message: `${c} is not an address or CIDR`, input: v });
      return cidrs.map((c) => parseCidr(c)!);
    })
    .describe('comma-separated addresses or CIDRs webhooks may target although they are not public'),
  GATEWAY_ADMIN_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe(
      'bootstrap bearer token: a service principal "bootstrap-admin" with global admin, for the first start',
    ),
  OIDC_ISSUER: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe('issuer of the OIDC/JWT bearer tokens (the `iss` claim); unset: only API tokens are accepted'),
  OIDC_AUDIENCE: z
    .string()
    .optional()
    .describe('comma-separated audiences a token must name (the `aud` claim); required with OIDC_ISSUER'),
  OIDC_JWKS_URL: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe("the issuer's key set; unset: jwks_uri from <issuer>/.well-known/openid-configuration"),
  OIDC_ALGORITHMS: z
    .string()
    .default('RS256,PS256,ES256,EdDSA')
    .transform((v, ctx) => {
      const algs = v
        .split(',')
        .map((a) => a.trim())
        .filter(Boolean);
      for (const a of algs)
        if (!ASYMMETRIC_ALGS.includes(a))
          ctx.issues.push({ code: 'custom', message: `${a} is not an asymmetric JWS algorithm`, input: v });
      if (!algs.length) ctx.issues.push({ code: 'custom', message: 'name at least one algorithm', input: v });
      return algs;
    })
    .describe('JWS algorithms accepted for OIDC tokens; asymmetric only (none and HS* are refused)'),
  OIDC_CLOCK_TOLERANCE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(300)
    .default(30)
    .describe('leeway for exp and nbf'),
  OIDC_USERNAME_CLAIM: z.string().min(1).default('preferred_username').describe('display name of users'),
  OIDC_GROUPS_CLAIM: z
    .string()
    .min(1)
    .default('groups')
    .describe('claim (dotted path for nested ones, e.g. realm_access.roles) holding the groups'),
  OIDC_GROUP_ROLES: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return {};
      let json: unknown;
      try {
        json = JSON.parse(v);
      } catch {
        ctx.issues.push({ code: 'custom', message: 'must be JSON', input: v });
        return z.NEVER;
      }
      const parsed = groupRolesSchema.safeParse(json);
      if (parsed.success) return parsed.data;
      for (const i of parsed.error.issues)
        ctx.issues.push({ code: 'custom', message: `${i.path.join('.')}: ${i.message}`, input: v });
      return z.NEVER;
    })
    .describe('JSON: OIDC group -> role, {role, registry?, repository?} or a list of them'),
  RATE_LIMIT_REQUESTS: z.coerce
    .number()
    .int()
    .min(0)
    .default(3000)
    .describe(
      'requests one principal may make per RATE_LIMIT_WINDOW_SECONDS, across all replicas; 0: no limit',
    ),
  RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  RATE_LIMIT_AUTH_FAILURES: z.coerce
    .number()
    .int()
    .min(0)
    .default(60)
    .describe(
      'failed authentications one client address may make per window before it gets 429; 0: no limit',
    ),
  METRICS_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('when set, /metrics requires Authorization: Bearer <METRICS_TOKEN>; unset: /metrics is public'),
  GRAPHQL_MAX_DEPTH: z.coerce
    .number()
    .int()
    .min(2)
    .max(100)
    .default(10)
    .describe('deepest GraphQL operation accepted (fields nested in fields); deeper ones get QUERY_TOO_DEEP'),
  GRAPHQL_MAX_COMPLEXITY: z.coerce
    .number()
    .int()
    .min(10)
    .default(25_000)
    .describe('most expensive GraphQL operation accepted (page sizes multiply); above it QUERY_TOO_COMPLEX'),
  GRAPHQL_SUBSCRIPTION_POLL_MS: z.coerce
    .number()
    .int()
    .min(500)
    .max(MAX_TIMER_MS)
    .default(10_000)
    .describe('subscriptions also re-read their row this often, besides reacting to Postgres notifications'),
});

const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `fd12::/16`, or a single address (`/32`, `/128`). */
export function parseCidr(value: string): Cidr | null {
  const [address, prefixText, ...rest] = value.split('/');
  const version = isIP(address);
  if (rest.length || version === 0) return null;
  const max = version === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export type Env = z.infer<typeof envSchema>;

export function decodeKey(value: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  const b = Buffer.from(value, 'base64');
  return b.length === 32 ? b : null;
}
