import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { INestApplicationContext } from '@nestjs/common';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createApiApp, createWorkerApp } from '../../src/app.module.js';
import { AppConfig, loadConfig } from '../../src/config/app-config.js';

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const TEST_SECRETS_KEY = 'ab'.repeat(32);

/** A database of its own and a Redis prefix of its own, for one test suite. */
export class TestEnvironment {
  private constructor(
    readonly name: string,
    readonly databaseUrl: string,
    readonly redisPrefix: string,
  ) {}

  static async create(suite: string): Promise<TestEnvironment> {
    const name = `rg_test_${suite.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${process.pid}`;
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminQuery(`CREATE DATABASE ${name}`);
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${name}`;
    const env = new TestEnvironment(name, url.toString(), `rgtest:${name}`);
    await env.flushRedis();
    return env;
  }

  config(overrides: Record<string, string> = {}): AppConfig {
    return loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: this.redisPrefix,
      SECRETS_KEY: TEST_SECRETS_KEY,
      ...overrides,
    });
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

export interface TestGateway {
  app: NestFastifyApplication;
  /** The Node http.Server, for supertest. */
  server: ReturnType<NestFastifyApplication['getHttpServer']>;
  close(): Promise<void>;
}

/** The real API application, in process, on the suite's own database and Redis prefix. */
export async function startApi(
  env: TestEnvironment,
  overrides: Record<string, string> = {},
): Promise<TestGateway> {
  const app = await createApiApp(env.config(overrides));
  return { app, server: app.getHttpServer(), close: () => app.close() };
}

export async function startWorker(
  env: TestEnvironment,
  overrides: Record<string, string> = {},
): Promise<INestApplicationContext> {
  return createWorkerApp(env.config(overrides));
}
