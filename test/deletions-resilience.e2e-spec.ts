import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayProcess } from '../bench/support/gateway-process.js';
import type { DeletionRequestView } from '../src/deletions/deletion.dto.js';
import { TestEnvironment } from './support/environment.js';
import { ImagePusher, seedManyRepositories } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

/**
 * The gateway as it runs in production (built API and worker as child processes), against a real
 * registry, while the worker is killed or the registry goes away in the middle of a batch.
 */
describe('deletions survive crashes and outages', () => {
  let env: TestEnvironment;
  let registry: RegistryProcess;
  let gateway: GatewayProcess;
  let crashRepos: string[];
  let outageRepos: string[];

  const api = async <T = DeletionRequestView>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<T> => JSON.parse(await gateway.request(method, path, body)) as T;

  async function waitFor(id: string, done: (r: DeletionRequestView) => boolean, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await api('GET', `/api/v1/deletions/${id}`);
      if (done(r)) return r;
      if (Date.now() > deadline)
        throw new Error(`deletion ${id} is ${r.status}: ${JSON.stringify(r.counts)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function remainingTags(repositories: string[]): Promise<number> {
    let n = 0;
    for (const repo of repositories) {
      const res = await fetch(`${registry.url}/v2/${repo}/tags/list`);
      if (res.status === 200) n += ((await res.json()) as { tags: string[] | null }).tags?.length ?? 0;
    }
    return n;
  }

  const itemsOf = (repositories: string[]) =>
    repositories.flatMap((repository) =>
      Array.from({ length: 10 }, (_, t) => ({ repository, reference: `v${t + 1}` })),
    );

  beforeAll(async () => {
    env = await TestEnvironment.create('deletions_resilience');
    registry = await RegistryProcess.start({ logLevel: 'info' });
    const pusher = new ImagePusher(registry.url);
    crashRepos = (
      await seedManyRepositories(pusher, { prefix: 'crash', repositories: 20, tagsPerRepository: 10 })
    ).repositories;
    outageRepos = (
      await seedManyRepositories(pusher, { prefix: 'outage', repositories: 10, tagsPerRepository: 10 })
    ).repositories;
    await pusher.close();
    gateway = await GatewayProcess.start({
      name: 'test-deletions-resilience',
      worker: true,
      env: {
        ...env.gatewayEnv(),
        QUEUE_LOCK_MS: '2000',
        DELETE_CHUNK_SIZE: '10',
        DELETE_BACKOFF_MS: '200',
        DELETE_BACKOFF_MAX_MS: '1000',
        DELETE_RECOVER_EVERY_MS: '2000',
      },
    });
    // Slow enough that the batch is surely half-way when the worker dies.
    await api('POST', '/api/v1/registries', {
      name: 'ci',
      url: registry.url,
      deletes: { concurrency: 4, ratePerSecond: 40 },
    });
  }, 180_000);

  afterAll(async () => {
    await gateway?.stop();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('a worker killed mid-batch of 200, then restarted, ends with all 200 deleted exactly once', async () => {
    const created = await api('POST', '/api/v1/deletions', {
      registry: 'ci',
      items: itemsOf(crashRepos),
      reason: 'crash test',
    });
    expect(created.itemCount).toBe(200);
    const midway = await waitFor(created.id, (r) => r.counts.succeeded >= 40, 60_000);
    await gateway.killWorker();
    const atKill = await api('GET', `/api/v1/deletions/${created.id}`);
    expect(atKill.counts.succeeded).toBeLessThan(200);
    expect(midway.counts.succeeded).toBeGreaterThanOrEqual(40);

    await gateway.startWorker();
    const done = await waitFor(created.id, (r) => !['queued', 'running'].includes(r.status), 120_000);
    expect(done.status).toBe('succeeded');
    expect(done.counts.succeeded).toBe(200);
    expect(await remainingTags(crashRepos)).toBe(0);

    // One outcome per item in the trail, and the registry answered 202 to exactly 200 manifest DELETEs:
    // a DELETE repeated after the crash finds the manifest gone (404), which counts as done.
    const perItem = await env.query<{ position: string; n: number }>(
      `SELECT details->>'position' AS position, count(*)::int AS n FROM audit_events
        WHERE subject_id = $1 AND action LIKE 'deletion.item.%' GROUP BY 1`,
      [created.id],
    );
    expect(perItem).toHaveLength(200);
    expect(perItem.every((r) => r.n === 1)).toBe(true);
    const log = await readFile(registry.logPath, 'utf8');
    const accepted = log
      .split('\n')
      .filter(
        (l) =>
          l.includes('http.request.method=DELETE') &&
          /http\.request\.uri="\/v2\/crash\/[^"]+\/manifests\/sha256:/.test(l) &&
          l.includes('http.response.status=202'),
      );
    expect(accepted).toHaveLength(200);
    expect((await api<{ ok: boolean }>('GET', '/api/v1/audit/verify')).ok).toBe(true);
  }, 240_000);

  it('a registry stopped during a batch and restarted ends with everything deleted', async () => {
    // 10 deletes a second: the registry is surely gone while most of the batch still waits.
    const patched = await gateway.request('PATCH', '/api/v1/registries/ci', {
      deletes: { ratePerSecond: 10 },
    });
    expect(JSON.parse(patched).deletes).toEqual({ concurrency: 4, ratePerSecond: 10 });
    const created = await api('POST', '/api/v1/deletions', { registry: 'ci', items: itemsOf(outageRepos) });
    await waitFor(created.id, (r) => r.counts.succeeded >= 20, 60_000);
    await registry.stop();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await registry.restart();
    const during = await api('GET', `/api/v1/deletions/${created.id}`);
    expect(during.counts.succeeded).toBeLessThan(100);
    const done = await waitFor(created.id, (r) => !['queued', 'running'].includes(r.status), 120_000);
    expect(done.status).toBe('succeeded');
    expect(done.counts.succeeded).toBe(100);
    // The outage was felt: some items needed more than one attempt.
    expect(done.items!.some((i) => i.attempts > 1)).toBe(true);
    expect(await remainingTags(outageRepos)).toBe(0);
  }, 240_000);
});
