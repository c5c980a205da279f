import { Redis } from 'ioredis';
import pg from 'pg';

// The same servers and variables as the tests (scripts/test.sh); bench.sh makes sure they answer.
export const BENCH_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BENCH_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Fixed: bench databases are thrown away, so the secrets they encrypt need no protection. */
export const BENCH_SECRETS_KEY = 'be'.repeat(32);

/**
 * A database `rg_bench_<name>` and a Redis prefix `rgbench:<name>` of one benchmark, recreated empty
 * on create(), so a crashed run leaves nothing that changes the next one.
 */
export class BenchEnvironment {
  private constructor(
    readonly database: string,
    readonly databaseUrl: string,
    readonly redisUrl: string,
    readonly redisPrefix: string,
  ) {}

  static async create(name: string): Promise<BenchEnvironment> {
    const slug = name.replace(/[^a-z0-9]/gi, '_').toLowerCase();
    const database = `rg_bench_${slug}`;
    await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await adminQuery(`CREATE DATABASE ${database}`);
    const url = new URL(BENCH_DATABASE_URL);
    url.pathname = `/${database}`;
    const env = new BenchEnvironment(database, url.toString(), BENCH_REDIS_URL, `rgbench:${slug}`);
    await env.flushRedis();
    return env;
  }

  /** The variables a gateway process needs to run on this environment. */
  gatewayEnv(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.redisUrl,
      REDIS_PREFIX: this.redisPrefix,
      SECRETS_KEY: BENCH_SECRETS_KEY,
    };
  }

  async flushRedis(): Promise<void> {
    const redis = new Redis(this.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
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
    await adminQuery(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
  }
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_DATABASE_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
