import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './environment.js';

/** Fails the run at once, with the reason, when a real dependency of the e2e suites is missing. */
export default async function (): Promise<void> {
  const problems: string[] = [];
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
  } catch (e) {
    problems.push(
      `Postgres at ${TEST_DATABASE_URL} is not reachable (${(e as Error).message}); run the tests with \`npm test\`, which starts it`,
    );
  } finally {
    await c.end().catch(() => undefined);
  }
  const r = new Redis(TEST_REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    retryStrategy: () => null,
  });
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    problems.push(
      `Redis at ${TEST_REDIS_URL} is not reachable (${(e as Error).message}); run the tests with \`npm test\`, which starts it`,
    );
  } finally {
    r.disconnect();
  }
  try {
    execFileSync('docker-registry', ['--version'], { stdio: 'ignore' });
  } catch {
    problems.push(
      'the `docker-registry` binary (Debian package docker-registry) is missing; `npm test` installs it',
    );
  }
  if (problems.length) throw new Error(`e2e prerequisites missing:\n- ${problems.join('\n- ')}`);
}
