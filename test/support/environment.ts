import { Redis } from 'ioredis';
import pg from 'pg';

// The servers `npm test` and `npm run bench` make sure answer (scripts/test.sh, scripts/bench.sh).
export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Fixed: these databases are thrown away, so the secrets they encrypt need no protection. */
export const TEST_SECRETS_KEY = 'ab'.repeat(32);

/**
 * A Postgres database and a Redis key prefix of their own, for one test suite or benchmark; recreated
 * empty on create(), so a crashed run leaves nothing that changes the next one. Plain TS (no Nest), so
 * the benchmarks can use it under tsx.
 */
export class TestEnvironment {
  private constructor(
    readonly name: string,
    readonly databaseUrl: string,
    readonly redisPrefix: string,
  ) {}

  /** `rg_test_<suite>_<pid>` (parallel test files never meet) or, with `kind: 'bench'`, `rg_bench_<suite>`. */
  static async create(suite: string, kind: 'test' | 'bench' = 'test'): Promise<TestEnvironment> {
    const slug = suite.replace(/[^a-z0-9]/gi, '_').toLowerCase();
    const name = kind === 'test' ? `rg_test_${slug}_${process.pid}` : `rg_bench_${slug}`;
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminQuery(`CREATE DATABASE ${name}`);
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${name}`;
    const env = new TestEnvironment(name, url.toString(), `rg${kind}:${name}`);
    await env.flushRedis();
    return env;
  }

  /** The variables a gateway process needs to run on this environment. */
  gatewayEnv(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: this.redisPrefix,
      SECRETS_KEY: TEST_SECRETS_KEY,
    };
  }

  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: this.databaseUrl });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  async flushRedis(): Promise<void> {
    const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${this.redisPrefix}:*`, 'COUNT', 1000);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  }

  async destroy(): Promise<void> {
    await this.flushRedis();
    await adminQuery(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
  }
}

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
