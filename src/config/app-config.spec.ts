import { describe, expect, it } from 'vitest';
import { dataSourceOptions } from '../database/data-source.js';
import { ConfigError, loadConfig } from './app-config.js';

const base = {
  DATABASE_URL: 'postgres://u@127.0.0.1:5432/db',
  REDIS_URL: 'redis://127.0.0.1:6379',
  SECRETS_KEY: 'a'.repeat(64),
};

describe('loadConfig', () => {
  it('builds a typed config with defaults', () => {
    const c = loadConfig(base);
    expect(c.http.port).toBe(8080);
    expect(c.secretsKey).toHaveLength(32);
    expect(c.redis.prefix).toBe('rg');
  });

  it('names every bad or missing variable', () => {
    try {
      loadConfig({ PORT: 'eighty', REDIS_URL: 'http://x', SECRETS_KEY: 'short' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const msg = (e as Error).message;
      expect(msg).toContain('DATABASE_URL: is required');
      expect(msg).toContain('PORT:');
      expect(msg).toContain('REDIS_URL: must be a redis:// URL');
      expect(msg).toContain('SECRETS_KEY: must be 32 bytes');
    }
  });

  it('keeps DATABASE_POOL_MIN connections open (2 by default), never more than the pool holds', () => {
    const c = loadConfig(base);
    expect(c.database).toMatchObject({ poolSize: 10, poolMin: 2 });
    const extra = (o: ReturnType<typeof dataSourceOptions>) =>
      (o as { extra: { max: number; min: number } }).extra;
    expect(extra(dataSourceOptions(c.database.url, c.database.poolSize, c.database.poolMin))).toEqual({
      max: 10,
      min: 2,
    });
    const small = loadConfig({ ...base, DATABASE_POOL_SIZE: '1', DATABASE_POOL_MIN: '4' }).database;
    expect(extra(dataSourceOptions(small.url, small.poolSize, small.poolMin))).toEqual({ max: 1, min: 1 });
    expect(() => loadConfig({ ...base, DATABASE_POOL_MIN: '-1' })).toThrow(/DATABASE_POOL_MIN/);
  });

  it("keeps 1 MiB of a GC run's output by default; GC_OUTPUT_CAP_BYTES between 1 KiB and 64 MiB", () => {
    expect(loadConfig(base).gc.outputCapBytes).toBe(1024 * 1024);
    expect(loadConfig({ ...base, GC_OUTPUT_CAP_BYTES: '4096' }).gc.outputCapBytes).toBe(4096);
    expect(() => loadConfig({ ...base, GC_OUTPUT_CAP_BYTES: '100' })).toThrow(/GC_OUTPUT_CAP_BYTES/);
    expect(() => loadConfig({ ...base, GC_OUTPUT_CAP_BYTES: String(65 * 1024 * 1024) })).toThrow(
      /GC_OUTPUT_CAP_BYTES/,
    );
  });

  it('takes an empty variable for an unset one, and refuses a delay no timer can wait', () => {
    const c = loadConfig({
      ...base,
      PORT: '',
      RATE_LIMIT_REQUESTS: '',
      REGISTRIES_FILE_POLL_MS: '',
      QUEUE_LOCK_MS: '',
    });
    expect(c.http.port).toBe(8080);
    expect(c).toEqual(loadConfig(base));
    expect(() => loadConfig({ ...base, REGISTRIES_FILE_POLL_MS: String(2 ** 31) })).toThrow(
      /REGISTRIES_FILE_POLL_MS/,
    );
    expect(() => loadConfig({ ...base, GRAPHQL_SUBSCRIPTION_POLL_MS: '1e10' })).toThrow(
      /GRAPHQL_SUBSCRIPTION_POLL_MS/,
    );
  });

  it('accepts a base64 key', () => {
    const c = loadConfig({ ...base, SECRETS_KEY: Buffer.alloc(32, 7).toString('base64') });
    expect(c.secretsKey.equals(Buffer.alloc(32, 7))).toBe(true);
  });
});
