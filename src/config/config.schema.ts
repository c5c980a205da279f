import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Every environment variable the gateway reads. Nothing outside src/config touches process.env. */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.default(false),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// URL' }),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
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
  REGISTRIES_FILE_POLL_MS: z.coerce.number().int().min(0).default(5000),
  UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  UPSTREAM_CONNECTIONS: z.coerce.number().int().min(1).max(1024).default(32),
  UPSTREAM_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(32),
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
  DELETE_BACKOFF_MS: z.coerce.number().int().min(10).default(1000),
  DELETE_BACKOFF_MAX_MS: z.coerce.number().int().min(10).default(60_000),
  DELETE_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  DELETE_RECOVER_EVERY_MS: z.coerce.number().int().min(1000).default(30_000),
  QUEUE_LOCK_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .default(30_000)
    .describe('how long a job stays locked to a worker that stopped answering before another takes it'),
});

export type Env = z.infer<typeof envSchema>;

export function decodeKey(value: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  const b = Buffer.from(value, 'base64');
  return b.length === 32 ? b : null;
}
