import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayProcess } from '../bench/support/gateway-process.js';
import { TestEnvironment } from './support/environment.js';
import { ImagePusher, uploadOrphanBlob } from './support/image-pusher.js';
import { RegistryService } from './support/registry-service.js';

interface RunView {
  id: string;
  status: string;
  phase: string;
  error: { code: string; message: string } | null;
}

/**
 * The built API and worker as child processes: the worker is killed while a GC run holds a registry in
 * read-only mode. Another worker must restore the registry, drop the fence and fail the run.
 */
describe('GC survives a crashed worker', () => {
  let env: TestEnvironment;
  let service: RegistryService;
  let gateway: GatewayProcess;
  const api = async <T = RunView>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> =>
    JSON.parse(await gateway.request(method, path, body)) as T;

  async function waitRun(id: string, done: (r: RunView) => boolean, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await api('GET', `/api/v1/gc-runs/${id}`);
      if (done(r)) return r;
      if (Date.now() > deadline) throw new Error(`GC run ${id} is ${r.status}/${r.phase}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('gc_resilience');
    service = await RegistryService.create();
    gateway = await GatewayProcess.start({
      name: 'test-gc-resilience',
      worker: true,
      env: { ...env.gatewayEnv(), QUEUE_LOCK_MS: '2000', GC_HEARTBEAT_MS: '200', GC_SWEEP_EVERY_MS: '1000' },
    });
    await api('POST', '/api/v1/registries', { name: 'main', url: service.url });
    await api('PUT', '/api/v1/registries/main/gc-settings', {
      executor: service.localExecutor,
      fence: 'readonly',
      // A fresh orphan blob keeps the run waiting, fenced, long enough to kill its worker.
      graceSeconds: 30,
      maxGraceWaitSeconds: 120,
    });
  });

  afterAll(async () => {
    await gateway?.stop();
    await service?.cleanup();
    await env?.destroy();
  });

  it('restores the registry, releases the fence and fails the run when its worker is killed', async () => {
    const pusher = new ImagePusher(service.url);
    const image = await pusher.pushImage('team/app', ['1.0']);
    await uploadOrphanBlob(service.url, 'team/app', 512);

    const run = await api('POST', '/api/v1/registries/main/gc', {});
    await waitRun(run.id, (r) => r.phase === 'waiting-grace');
    expect(await service.isReadOnly()).toBe(true);
    await expect(
      gateway.request('POST', '/api/v1/deletions', {
        registry: 'main',
        items: [{ repository: 'team/app', reference: '1.0' }],
      }),
    ).rejects.toThrow(/423/);

    await gateway.killWorker();
    await gateway.startWorker();
    const failed = await waitRun(run.id, (r) => r.status === 'failed');
    expect(failed.error?.code).toBe('WORKER_LOST');
    expect(failed.error?.message).toContain('waiting-grace');
    expect(await service.isReadOnly()).toBe(false);
    // Writable again, and the gateway deletes again.
    await pusher.pushImage('team/app', ['2.0']);
    const deletion = await api<{ id: string; status: string }>('POST', '/api/v1/deletions', {
      registry: 'main',
      items: [{ repository: 'team/app', reference: image.digest }],
    });
    expect(deletion.status).toBe('queued');
    const actions = await env.query<{ action: string }>(
      `SELECT action FROM audit_events WHERE subject_id = $1 ORDER BY seq`,
      [run.id],
    );
    expect(actions.map((a) => a.action)).toEqual(['gc.requested', 'gc.started', 'gc.failed']);
    await pusher.close();
  });
});
