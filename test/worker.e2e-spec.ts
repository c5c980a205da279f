import type { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Jobs, Queues } from '../src/queue/queue.constants.js';
import { adminRequest, TestEnvironment, TestGateway, startApi, startWorker } from './support/gateway.js';
import { RegistryProcess } from './support/registry-process.js';

describe('worker process', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let workers: INestApplicationContext[] = [];
  let registry: RegistryProcess;

  beforeAll(async () => {
    env = await TestEnvironment.create('worker');
    registry = await RegistryProcess.start();
    gw = await startApi(env);
    await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'flaky', url: registry.url })
      .expect(201);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('re-probes registries on a schedule that exists once however many workers run', async () => {
    const before = await adminRequest(gw.server).get('/api/v1/registries/flaky').expect(200);
    expect(before.body.probe.reachable).toBe(true);
    await registry.stop();

    workers = await Promise.all([startWorker(env), startWorker(env)]);
    const queue = workers[0].get<Queue>(getQueueToken(Queues.maintenance));
    const schedulers = await queue.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toEqual([Jobs.probeRegistries]);

    // The scheduler's first run starts at once; wait for it to record the outage.
    const deadline = Date.now() + 30_000;
    let probe: { reachable: boolean; error: { code: string } | null } | undefined;
    while (Date.now() < deadline) {
      probe = (await adminRequest(gw.server).get('/api/v1/registries/flaky').expect(200)).body.probe;
      if (probe && !probe.reachable) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(probe).toMatchObject({ reachable: false, error: { code: 'REGISTRY_UNREACHABLE' } });
    const completed = await queue.getJobs(['completed']);
    expect(completed.length).toBeGreaterThanOrEqual(1);
    expect(completed[0].returnvalue).toEqual({ probed: 1, unreachable: ['flaky'] });
  });
});
