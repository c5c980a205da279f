import { execFileSync } from 'node:child_process';
import type { INestApplicationContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminRequest,
  TEST_REDIS_URL,
  TestEnvironment,
  TestGateway,
  startApi,
  startWorker,
} from './support/gateway.js';
import { ImagePusher, sha256, uploadOrphanBlob, type PushedImage } from './support/image-pusher.js';
import { WorkerMetricsServer } from '../src/common/worker-metrics.js';
import { GcProcessor } from '../src/gc/gc.processor.js';
import { flushRedisCache } from '../src/gc/gc-verifier.js';
import { RegistryThrottle } from '../src/deletions/registry-throttle.js';
import type { RegistryEntity } from '../src/registries/registry.entity.js';
import type { GcVerification } from '../src/gc/gc.entity.js';
import { RegistryProcess } from './support/registry-process.js';
import { RegistryService, type RegistryServiceOptions } from './support/registry-service.js';
import { SshServer } from './support/sshd.js';

const MiB = 1024 * 1024;
const FAST = {
  WORKER_METRICS_PORT: '0',
  METRICS_TOKEN: 'gc-suite-metrics-token',
  DELETE_BACKOFF_MS: '100',
  DELETE_BACKOFF_MAX_MS: '500',
  GC_HEARTBEAT_MS: '200',
  GC_SWEEP_EVERY_MS: '1000',
};
/** The registries' Redis cache database: not the one the gateway's keys live in. */
const CACHE_DB = 7;
/**
 * Empties the registries' blob descriptor keys in CACHE_DB (what the gateway's own flush deletes), and only
 * those: the database may be a developer's, whose other keys are left alone.
 */
const clearRegistryCache = () =>
  flushRedisCache(
    { type: 'redis', addr: new URL(TEST_REDIS_URL).host, db: CACHE_DB },
    decodeURIComponent(new URL(TEST_REDIS_URL).password) || undefined,
  );

interface RunView {
  id: string;
  status: string;
  phase: string;
  outputRemovedAt?: string | null;
  trigger: string;
  dryRun: boolean;
  blobsDeleted: number | null;
  manifestsDeleted: number | null;
  bytesBefore: number | null;
  bytesAfter: number | null;
  bytesFreed: number | null;
  bytesEstimated: number | null;
  exitCode?: number | null;
  fence?: string;
  phaseMs?: Record<string, number>;
  verification: GcVerification | null;
  error: { code: string; message: string; details: Record<string, unknown> | null } | null;
}

/** Every file under dir with its size: what "nothing changed on disk" compares. */
async function snapshot(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(path, (await stat(path)).size);
  }
  return out;
}
const bytesOf = (s: Map<string, number>) => [...s.values()].reduce((n, v) => n + v, 0);

describe('garbage collection through the gateway, on real registries', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let worker: INestApplicationContext;
  const services: RegistryService[] = [];
  const pushers: ImagePusher[] = [];
  const http = () => adminRequest(gw.server);

  async function registry(
    name: string,
    settings: Record<string, unknown> | ((service: RegistryService) => Record<string, unknown>) = {},
    opts: RegistryServiceOptions = {},
  ): Promise<{ service: RegistryService; pusher: ImagePusher }> {
    const service = await RegistryService.create(opts);
    services.push(service);
    const pusher = new ImagePusher(service.url);
    pushers.push(pusher);
    await http().post('/api/v1/registries').send({ name, url: service.url }).expect(201);
    await http()
      .put(`/api/v1/registries/${name}/gc-settings`)
      .send({
        executor: service.localExecutor,
        fence: 'readonly',
        graceSeconds: 0,
        ...(typeof settings === 'function' ? settings(service) : settings),
      })
      .expect(200);
    return { service, pusher };
  }

  async function waitRun(id: string, until = (r: RunView) => ['succeeded', 'failed'].includes(r.status)) {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const run = (await http().get(`/api/v1/gc-runs/${id}`).expect(200)).body as RunView;
      if (until(run)) return run;
      if (Date.now() > deadline) throw new Error(`GC run ${id} still ${run.status}/${run.phase}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A run's output, apart from the run (text/plain). */
  async function outputOf(id: string): Promise<string> {
    const res = await http().get(`/api/v1/gc-runs/${id}/output`).expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    return res.text;
  }

  async function deleteThroughGateway(name: string, images: PushedImage[]) {
    const res = await http()
      .post('/api/v1/deletions')
      .send({ registry: name, items: images.map((i) => ({ repository: i.repository, reference: i.digest })) })
      .expect(202);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const d = (await http().get(`/api/v1/deletions/${res.body.id}`).expect(200)).body as { status: string };
      if (d.status === 'succeeded') return;
      if (!['queued', 'running'].includes(d.status) || Date.now() > deadline)
        throw new Error(`deletion ended ${d.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * A run held in `waiting-grace` (read-only fence): an image pushed and a blob no manifest names uploaded
   * just before, younger than `graceSeconds`.
   */
  async function heldByGrace(
    name: string,
    repository: string,
    grace: { graceSeconds: number; maxGraceWaitSeconds: number },
    orphanBytes: number,
  ) {
    const { service, pusher } = await registry(name, grace);
    const image = await pusher.pushImage(repository, ['1.0']);
    await uploadOrphanBlob(service.url, repository, orphanBytes);
    const { id } = (await http().post(`/api/v1/registries/${name}/gc`).send({}).expect(202)).body as RunView;
    await waitRun(id, (r) => r.phase === 'waiting-grace');
    return { service, image, id };
  }

  async function expectIntact(pusher: ImagePusher, image: PushedImage) {
    for (const blob of [image.config, ...image.layers]) {
      const bytes = await pusher.pullBlob(image.repository, blob.digest);
      expect(sha256(bytes), `${image.repository}@${blob.digest}`).toBe(blob.digest);
    }
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('gc');
    gw = await startApi(env, FAST);
    worker = await startWorker(env, FAST);
  });

  afterAll(async () => {
    await worker?.close();
    await gw?.close();
    await Promise.all(pushers.map((p) => p.close()));
    await Promise.all(services.map((s) => s.cleanup()));
    await env?.destroy();
  });

  it('collects what deletions left: a dry run changes nothing, the real run frees the space and verifies', async () => {
    const { service, pusher } = await registry('seed');
    const doomed = await Promise.all(
      ['v1', 'v2', 'v3'].map((tag) => pusher.pushImage('team/app', [tag], { layerSize: 4 * MiB, layers: 2 })),
    );
    const kept = await pusher.pushImage('team/app', ['stable'], { layerSize: MiB });
    await deleteThroughGateway('seed', doomed);
    const before = await snapshot(service.storagePath);

    const dry = await http().post('/api/v1/registries/seed/gc').send({ dryRun: true }).expect(202);
    const planned = await waitRun(dry.body.id);
    expect(planned).toMatchObject({ status: 'succeeded', dryRun: true, error: null, bytesAfter: null });
    // Six 4 MiB layers, three configs and the three manifests (stored as blobs too) only the deleted images used.
    expect(planned.blobsDeleted).toBe(12);
    expect(planned.bytesEstimated).toBeGreaterThan(24 * MiB);
    expect(planned).not.toHaveProperty('output'); // read apart: GET /gc-runs/:id/output
    // No fence, so no time spent fencing: a dry run starts measuring.
    expect(Object.keys(planned.phaseMs ?? {})).not.toContain('fencing');
    expect(planned.fence).toBe('none');
    expect(await outputOf(planned.id)).toContain('blob eligible for deletion');
    // Outputs are stored lz4-compressed where the server has it (this one does).
    const [column] = await env.query<{ attcompression: string }>(
      `SELECT attcompression FROM pg_attribute WHERE attrelid = 'gc_runs'::regclass AND attname = 'output'`,
    );
    expect(column.attcompression).toBe('l');
    expect(await snapshot(service.storagePath)).toEqual(before);

    const res = await http().post('/api/v1/registries/seed/gc').send({}).expect(202);
    expect(res.body.status).toBe('queued');
    // Long poll: one GET answers once the run has finished.
    const waited = (await http().get(`/api/v1/gc-runs/${res.body.id}?wait=60`).expect(200)).body as RunView;
    expect(waited).toMatchObject({ id: res.body.id, status: 'succeeded', phase: 'done' });
    const run = await waitRun(res.body.id);
    expect(run.error).toBeNull();
    expect(run).toMatchObject({ status: 'succeeded', phase: 'done', dryRun: false, blobsDeleted: 12 });
    expect(run.verification).toMatchObject({ ok: true, deletedBlobsChecked: 9 }); // manifests are not layer links
    expect(run.verification!.manifestsChecked).toBeGreaterThanOrEqual(1);
    const after = await snapshot(service.storagePath);
    expect(bytesOf(before) - bytesOf(after)).toBeGreaterThan(24 * MiB);
    expect(run.bytesFreed).toBeGreaterThan(24 * MiB);
    expect(run.bytesBefore! - run.bytesAfter!).toBe(run.bytesFreed);
    expect(Math.abs(run.bytesEstimated! - run.bytesFreed!)).toBeLessThan(MiB);
    // The dry run estimated the same blobs in the same unit (disk usage, as du measures the storage).
    expect(planned.bytesEstimated).toBe(run.bytesEstimated);

    await expectIntact(pusher, kept);
    expect(await service.isReadOnly()).toBe(false);
    const history = (await http().get('/api/v1/gc-runs?registry=seed').expect(200)).body;
    expect(history.items.map((r: RunView) => r.id)).toEqual([run.id, planned.id]);
    const actions = await env.query<{ action: string }>(
      `SELECT action FROM audit_events WHERE subject_id = $1 ORDER BY seq`,
      [run.id],
    );
    expect(actions.map((a) => a.action)).toEqual(['gc.requested', 'gc.started', 'gc.succeeded']);

    // The worker's own metrics endpoint counts what it did, behind METRICS_TOKEN.
    const metricsUrl = `http://127.0.0.1:${worker.get(WorkerMetricsServer).port}/metrics`;
    expect((await fetch(metricsUrl)).status).toBe(401);
    const metrics = await (
      await fetch(metricsUrl, { headers: { authorization: 'Bearer gc-suite-metrics-token' } })
    ).text();
    expect(metrics).toMatch(
      /registry_gateway_gc_runs_total\{registry="seed",status="succeeded",dry_run="false"\} 1\b/,
    );
    expect(metrics).toMatch(
      /registry_gateway_gc_runs_total\{registry="seed",status="succeeded",dry_run="true"\} 1\b/,
    );
    expect(metrics).toMatch(
      /registry_gateway_deletion_items_total\{registry="seed",outcome="succeeded"\} 3\b/,
    );
    expect(metrics).toMatch(/registry_gateway_gc_bytes_freed_total\{registry="seed"\} [1-9]/);
    expect(metrics).toContain('process_cpu_user_seconds_total');

    // The same through GraphQL.
    const gql = await http()
      .post('/graphql')
      .send({
        query: `query($id: ID!) { gcRun(id: $id) { id status bytesFreed verification { ok deletedBlobsChecked } phaseMs output }
                 gcRuns(registry: "seed") { items { id dryRun output } } }`,
        variables: { id: run.id },
      })
      .expect(200);
    expect(gql.body.errors).toBeUndefined();
    expect(gql.body.data.gcRun).toMatchObject({
      id: run.id,
      status: 'succeeded',
      verification: { ok: true },
    });
    expect(gql.body.data.gcRun.phaseMs.collecting).toBeGreaterThan(0);
    // The output only when asked for; the runs of a page in one query.
    expect(gql.body.data.gcRun.output).toBe(await outputOf(run.id));
    expect(gql.body.data.gcRuns.items[1].output).toBe(await outputOf(planned.id));
    expect(gql.body.data.gcRuns.items.map((r: { dryRun: boolean }) => r.dryRun)).toEqual([false, true]);
    const again = await http()
      .post('/graphql')
      .send({ query: 'mutation { runGc(registry: "seed", input: { dryRun: true }) { id status dryRun } }' })
      .expect(200);
    expect(again.body.data.runGc).toMatchObject({ dryRun: true });
    await waitRun(again.body.data.runGc.id);
  });

  it('gives concurrent requests one run, and refuses writes while the registry is fenced', async () => {
    const { service, pusher } = await registry('busy', { graceSeconds: 2, maxGraceWaitSeconds: 60 });
    const image = await pusher.pushImage('team/busy', ['1.0']);
    // An upload whose manifest never came: the run waits until it is older than the grace window.
    await uploadOrphanBlob(service.url, 'team/busy', 1024);

    const answers = await Promise.all(
      [1, 2, 3].map(() => http().post('/api/v1/registries/busy/gc').send({})),
    );
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 202]);
    const id = answers[0].body.id as string;

    const waiting = await waitRun(
      id,
      (r) => r.phase === 'waiting-grace' || (r.status !== 'queued' && r.status !== 'running'),
    );
    expect(waiting.phase).toBe('waiting-grace');
    const refused = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'busy', items: [{ repository: 'team/busy', reference: '1.0' }] })
      .expect(423);
    expect(refused.body.error).toMatchObject({ code: 'REGISTRY_FENCED', details: { gcRunId: id } });
    expect(await service.isReadOnly()).toBe(true);
    await expect(pusher.pushImage('team/busy', ['2.0'])).rejects.toThrow();

    const run = await waitRun(id);
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect(run.blobsDeleted).toBeGreaterThanOrEqual(1);
    expect(await service.isReadOnly()).toBe(false);
    await expectIntact(pusher, image);
    await http()
      .post('/api/v1/deletions')
      .send({ registry: 'busy', items: [{ repository: 'team/busy', reference: '1.0' }] })
      .expect(202);
  });

  it('fails a fence whose deletes in flight do not finish in time with GC_DRAIN_TIMEOUT, and drops it', async () => {
    const throttle = worker.get(RegistryThrottle);
    const registry = { id: randomUUID(), name: 'draining', deleteConcurrency: 2 } as RegistryEntity;
    // A delete worker holding one of the registry's slots, as a chunk in flight does.
    let finish: (() => void) | undefined;
    const inFlight = throttle.withSlots(registry, 1, () => new Promise<void>((r) => (finish = r)));
    while (!finish) await new Promise((r) => setTimeout(r, 10));
    await expect(throttle.fence(registry, 'a-run', 300)).rejects.toMatchObject({
      code: 'GC_DRAIN_TIMEOUT',
      details: { registry: 'draining' },
    });
    expect(await throttle.fencedBy(registry.id)).toBeNull();
    finish();
    await inFlight;
    await (await throttle.fence(registry, 'a-run', 1_000)).release();
  });

  it('protects an upload that finished while the fence drained deletes: the grace window is read after it', async () => {
    const { service, pusher } = await registry('lateupload', { graceSeconds: 300, maxGraceWaitSeconds: 1 });
    await pusher.pushImage('team/late', ['1.0']);
    // Nothing in the storage is young when the run starts.
    execFileSync('find', [service.storagePath, '-exec', 'touch', '-d', '2 hours ago', '{}', '+']);
    const [row] = await env.query<{ id: string }>(`SELECT id FROM registries WHERE name = 'lateupload'`);
    const throttle = worker.get(RegistryThrottle);
    let finish: (() => void) | undefined;
    // A delete in flight on the registry: the run's fence waits for it.
    const inFlight = throttle.withSlots(
      { id: row.id, name: 'lateupload' } as RegistryEntity,
      1,
      () => new Promise<void>((r) => (finish = r)),
    );
    while (!finish) await new Promise((r) => setTimeout(r, 10));
    const { id } = (await http().post('/api/v1/registries/lateupload/gc').send({}).expect(202))
      .body as RunView;
    await waitRun(id, (r) => r.status === 'running');
    // Meanwhile an upload finishes whose manifest is still to come.
    const orphan = await uploadOrphanBlob(service.url, 'team/late', 2048);
    expect((await waitRun(id, () => true)).phase).toBe('fencing');
    finish();
    await inFlight;
    const run = await waitRun(id);
    expect(run).toMatchObject({ status: 'failed', error: { code: 'GRACE_WINDOW_BLOCKED' } });
    expect(run.error!.message).toMatch(
      /^1 blob\(s\) the collector would delete were written less than 300 s ago/,
    );
    const head = await fetch(`${service.url}/v2/team/late/blobs/${orphan}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
  });

  it('stops a run another worker recovered meanwhile (its lock lapsed): no collection without the fence', async () => {
    const { service, image, id } = await heldByGrace(
      'takenover',
      'team/t',
      { graceSeconds: 300, maxGraceWaitSeconds: 600 },
      256,
    );
    // What another worker's recovery writes when it takes over a run whose job lock lapsed.
    await env.query(
      `UPDATE gc_runs SET status = 'failed', error_code = 'WORKER_LOST', finished_at = now() WHERE id = $1`,
      [id],
    );
    // The worker still waiting in the run stops at its next heartbeat, puts the registry back (it is down
    // for a moment while it restarts) and drops the fence.
    const [{ id: registryId }] = await env.query<{ id: string }>(
      `SELECT id FROM registries WHERE name = 'takenover'`,
    );
    const throttle = worker.get(RegistryThrottle);
    const restored = async () =>
      !(await throttle.fencedBy(registryId)) && !(await service.isReadOnly().catch(() => true));
    const deadline = Date.now() + 10_000;
    while (!(await restored()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await service.isReadOnly()).toBe(false);
    expect(await throttle.fencedBy(registryId)).toBeNull();
    await http()
      .post('/api/v1/deletions')
      .send({ registry: 'takenover', items: [{ repository: 'team/t', reference: image.digest }] })
      .expect(202);
    expect((await waitRun(id, () => true)).error?.code).toBe('WORKER_LOST');
  });

  it('probes the registry again after a run: a probe taken while it was read-only does not outlive the run', async () => {
    const { image, id } = await heldByGrace(
      'reprobe',
      'team/p',
      { graceSeconds: 2, maxGraceWaitSeconds: 60 },
      512,
    );
    // The scheduled probe, had it run now.
    expect((await http().get('/api/v1/registries/reprobe/health').expect(200)).body.deletes).toBe(
      'read-only',
    );
    expect((await waitRun(id)).status).toBe('succeeded');
    const deadline = Date.now() + 10_000;
    const deletes = async () =>
      (await http().get('/api/v1/registries/reprobe').expect(200)).body.probe.deletes;
    while ((await deletes()) !== 'enabled' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await deletes()).toBe('enabled');
    await http()
      .post('/api/v1/deletions')
      .send({ registry: 'reprobe', items: [{ repository: 'team/p', reference: image.digest }] })
      .expect(202);
  });

  it('cancels a running run: the registry leaves read-only mode and the gateway deletes again', async () => {
    const { service, image, id } = await heldByGrace(
      'cancel',
      'team/c',
      { graceSeconds: 300, maxGraceWaitSeconds: 600 },
      256,
    );
    expect(await service.isReadOnly()).toBe(true);
    const asked = await http().post(`/api/v1/gc-runs/${id}/cancel`).expect(202);
    expect(asked.body).toMatchObject({ id, cancelRequested: true });
    const run = await waitRun(id, (r) => r.status !== 'running' && r.status !== 'queued');
    expect(run).toMatchObject({ status: 'cancelled', error: { code: 'GC_CANCELLED' } });
    expect(await service.isReadOnly()).toBe(false);
    const again = await http().post(`/api/v1/gc-runs/${id}/cancel`).expect(409);
    expect(again.body.error.code).toBe('GC_RUN_FINISHED');
    await http()
      .post('/api/v1/deletions')
      .send({ registry: 'cancel', items: [{ repository: 'team/c', reference: image.digest }] })
      .expect(202);
  });

  it('cancels a run while its collector runs: cancelled (not failed), the registry out of read-only mode', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gc-slow-'));
    try {
      const wrapper = join(dir, 'collector.sh');
      await writeFile(wrapper, 'echo "marking slowly" >&2; sleep 30; exec docker-registry "$@"\n');
      const { service, pusher } = await registry('cancelcollect', (s) => ({
        executor: { ...s.localExecutor, command: ['bash', wrapper] },
      }));
      const image = await pusher.pushImage('team/c', ['1.0']);
      await deleteThroughGateway('cancelcollect', [image]);
      const { id } = (await http().post('/api/v1/registries/cancelcollect/gc').send({}).expect(202))
        .body as RunView;
      await waitRun(id, (r) => r.phase === 'collecting');
      expect(await service.isReadOnly()).toBe(true);
      await http().post(`/api/v1/gc-runs/${id}/cancel`).expect(202);
      const run = await waitRun(id, (r) => r.status !== 'running' && r.status !== 'queued');
      expect(run).toMatchObject({ status: 'cancelled', error: { code: 'GC_CANCELLED' } });
      expect(await service.isReadOnly()).toBe(false);
      const [ended] = await env.query<{ details: { status: string; error: { code: string } } }>(
        `SELECT details FROM audit_events WHERE action = 'gc.failed' AND subject_id = $1`,
        [id],
      );
      expect(ended.details).toMatchObject({ status: 'cancelled', error: { code: 'GC_CANCELLED' } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('starts a stopped registry again when its Redis cache cannot be emptied, and fails the run saying so', async () => {
    // Nothing listens on port 1: the flush after the collection fails.
    const { service, pusher } = await registry('noflush', {
      fence: 'stop',
      cache: { type: 'redis', addr: '127.0.0.1:1' },
    });
    const image = await pusher.pushImage('team/f', ['1.0']);
    await deleteThroughGateway('noflush', [image]);
    const run = await waitRun(
      (await http().post('/api/v1/registries/noflush/gc').send({}).expect(202)).body.id,
    );
    expect(run).toMatchObject({ status: 'failed', error: { code: 'CACHE_FLUSH_FAILED' } });
    expect(run.blobsDeleted).toBeGreaterThan(0);
    expect((await fetch(`${service.url}/v2/`)).status).toBe(200);
  });

  it('the sweep restores the registry of a run whose worker vanished, and queues runs that never reached the queue', async () => {
    const { service } = await registry('orphaned');
    const [{ id: registryId }] = await env.query<{ id: string }>(
      `SELECT id FROM registries WHERE name = 'orphaned'`,
    );
    // A run left mid-collection by a worker that is gone: the registry still read-only, no job anywhere.
    await service.restart(true);
    const [{ id }] = await env.query<{ id: string }>(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, dry_run, delete_untagged, fence, executor,
         status, phase, started_at, heartbeat_at)
       VALUES ('orphaned', $1, 'manual', 'system', false, false, 'readonly', 'local', 'running', 'collecting',
         now() - interval '10 minutes', now() - interval '10 minutes')
       RETURNING id`,
      [registryId],
    );
    // The scheduled sweep (every second here) may get to a run first; the call then finds it taken. What
    // a sweep did is asserted by its outcome.
    const sweep = () => worker.get(GcProcessor).sweep();
    expect((await sweep()).recovered.filter((r) => r !== id)).toEqual([]);
    const run = await waitRun(id);
    expect(run).toMatchObject({ status: 'failed', error: { code: 'WORKER_LOST' } });
    expect(run.error!.message).toContain('collecting');
    expect(await service.isReadOnly()).toBe(false);

    // Committed, never queued (the API died between commit and queue): the sweep queues it.
    const [{ id: lost }] = await env.query<{ id: string }>(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, dry_run, delete_untagged, fence, executor,
         status, phase, created_at)
       VALUES ('orphaned', $1, 'manual', 'system', true, false, 'none', 'local', 'queued', 'queued', now() - interval '1 minute')
       RETURNING id`,
      [registryId],
    );
    expect((await sweep()).queued.filter((q) => q !== lost)).toEqual([]);
    const finished = await waitRun(lost);
    expect(finished).toMatchObject({ error: null, status: 'succeeded', dryRun: true, outputRemovedAt: null });
    expect(await outputOf(lost)).toContain('garbage collect');

    // Outputs are dropped GC_OUTPUT_RETENTION_DAYS (90) after a run ended; the run itself stays.
    await env.query(`UPDATE gc_runs SET finished_at = now() - interval '91 days' WHERE id = $1`, [id]);
    await env.query(
      `UPDATE gc_runs SET output = 'kept for the record', finished_at = now() - interval '89 days' WHERE id = $1`,
      [lost],
    );
    await env.query(`UPDATE gc_runs SET output = 'old output' WHERE id = $1`, [id]);
    expect((await sweep()).outputsRemoved).toBeLessThanOrEqual(1);
    const old = (await http().get(`/api/v1/gc-runs/${id}`).expect(200)).body as RunView;
    expect(old).toMatchObject({ status: 'failed', error: { code: 'WORKER_LOST' } });
    expect(old.outputRemovedAt).not.toBeNull();
    const gone = await http().get(`/api/v1/gc-runs/${id}/output`).expect(410);
    expect(gone.body.error).toMatchObject({ code: 'GC_OUTPUT_REMOVED' });
    expect((await http().get(`/api/v1/gc-runs/${lost}`).expect(200)).body).toMatchObject({
      outputRemovedAt: null,
    });
    expect(await outputOf(lost)).toBe('kept for the record');
  });

  describe('the corruption case: push, delete, GC, push the same image again, pull every layer', () => {
    async function rePushAndPull(url: string, image: PushedImage, seed: string) {
      // A fresh client, like a CI job: it HEADs each blob and skips the upload when the registry says 200.
      const again = new ImagePusher(url);
      pushers.push(again);
      const pushed = await again.pushImage(image.repository, ['1.0'], { seed, layerSize: 256 * 1024 });
      expect(pushed.digest).toBe(image.digest);
      await expectIntact(again, pushed);
    }

    it('stays intact with the default in-memory cache: the gateway restarts the registry', async () => {
      const { pusher, service } = await registry('cached', { fence: 'gateway' });
      const image = await pusher.pushImage('team/img', ['1.0'], { seed: 'same', layerSize: 256 * 1024 });
      await deleteThroughGateway('cached', [image]);
      const run = await waitRun(
        (await http().post('/api/v1/registries/cached/gc').send({}).expect(202)).body.id,
      );
      expect(run).toMatchObject({ status: 'succeeded', error: null });
      expect(run.blobsDeleted).toBe(image.layers.length + 2);
      await rePushAndPull(service.url, image, 'same');
    });

    it('stays intact with a redis cache: the gateway deletes its keys', async () => {
      const cache = new Redis(`${TEST_REDIS_URL}/${CACHE_DB}`);
      try {
        await clearRegistryCache();
        const { pusher, service } = await registry(
          'rediscache',
          { fence: 'gateway', cache: { type: 'redis', addr: new URL(TEST_REDIS_URL).host, db: CACHE_DB } },
          { cache: 'redis', redis: { addr: new URL(TEST_REDIS_URL).host, db: CACHE_DB } },
        );
        const image = await pusher.pushImage('team/img', ['1.0'], {
          seed: 'same-redis',
          layerSize: 256 * 1024,
        });
        await pusher.pullBlob(image.repository, image.layers[0].digest);
        expect((await cache.keys('blobs::*')).length).toBeGreaterThan(0);
        await deleteThroughGateway('rediscache', [image]);
        const run = await waitRun(
          (await http().post('/api/v1/registries/rediscache/gc').send({}).expect(202)).body.id,
        );
        expect(run).toMatchObject({ status: 'succeeded', error: null });
        await rePushAndPull(service.url, image, 'same-redis');
      } finally {
        await clearRegistryCache();
        cache.disconnect();
      }
    });

    it('is broken by the bare command on a running registry: the case the gateway prevents', async () => {
      const bare = await RegistryProcess.start();
      try {
        const pusher = new ImagePusher(bare.url);
        pushers.push(pusher);
        const image = await pusher.pushImage('team/img', ['1.0'], { seed: 'bare', layerSize: 256 * 1024 });
        await pusher.pullBlob(image.repository, image.layers[0].digest);
        const del = await fetch(`${bare.url}/v2/team/img/manifests/${image.digest}`, { method: 'DELETE' });
        expect(del.status).toBe(202);
        expect((await bare.garbageCollect()).code).toBe(0);
        const again = new ImagePusher(bare.url);
        pushers.push(again);
        await again.pushImage('team/img', ['1.0'], { seed: 'bare', layerSize: 256 * 1024 });
        await expect(expectIntact(again, image)).rejects.toThrow();
      } finally {
        await bare.cleanup();
      }
    });
  });

  describe('verification fails the run when something is wrong', () => {
    /** GC settings: fence `gateway`, the registry's local executor with its command or storage changed. */
    const fencedByGateway = (
      service: RegistryService,
      executor: { command?: string[]; storagePath?: string },
    ) => ({ fence: 'gateway', executor: { ...service.localExecutor, ...executor } });

    /** Two images in one repository, the one tagged `old` deleted (after a pull put it in the cache), then a GC. */
    async function collectAfterDeleting(
      name: string,
      settings: Parameters<typeof registry>[1],
      beforeGc: (
        kept: PushedImage,
        service: RegistryService,
        doomed: PushedImage,
      ) => Promise<void> = async () => undefined,
      request: { dryRun?: boolean } = {},
    ) {
      const { service, pusher } = await registry(name, settings);
      const doomed = await pusher.pushImage('team/app', ['old'], {
        seed: `${name}-old`,
        layerSize: 64 * 1024,
      });
      const kept = await pusher.pushImage('team/app', ['stable'], {
        seed: `${name}-kept`,
        layerSize: 64 * 1024,
      });
      await pusher.pullBlob(doomed.repository, doomed.layers[0].digest);
      await deleteThroughGateway(name, [doomed]);
      await beforeGc(kept, service, doomed);
      const res = await http().post(`/api/v1/registries/${name}/gc`).send(request).expect(202);
      return {
        service,
        doomed,
        kept,
        run: (await waitRun(res.body.id)) as RunView & { verification: GcVerification },
      };
    }

    /**
     * collectAfterDeleting with the real collector wrapped: `lines` gives the shell lines a real (not dry)
     * run runs before the collector starts and once it is done, inside the collector's command.
     */
    async function collectWithWrapper(
      name: string,
      lines: (
        kept: PushedImage,
        service: RegistryService,
        doomed: PushedImage,
      ) => { before?: string[]; after?: string[] },
    ) {
      const dir = await mkdtemp(join(tmpdir(), 'gc-wrapper-'));
      const wrapper = join(dir, 'collector.sh');
      try {
        return await collectAfterDeleting(
          name,
          (service) => fencedByGateway(service, { command: ['bash', wrapper] }),
          (kept, service, doomed) => {
            const { before = [], after = [] } = lines(kept, service, doomed);
            const real = (l: string[]) => ['case " $* " in *" --dry-run "*) ;; *)', ...l, ';; esac'];
            return writeFile(
              wrapper,
              [...real(before), 'docker-registry "$@"; rc=$?', ...real(after), 'exit $rc', ''].join('\n'),
            );
          },
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }

    it('a collector that deleted a blob a tagged image needs: found on the storage and through the API', async () => {
      // The real collector, then the bug: the data of a layer the `stable` image needs is removed too.
      const { kept, run } = await collectWithWrapper('brokencollector', (image, service) => {
        const hex = image.layers[0].digest.slice('sha256:'.length);
        return {
          after: [
            `rm -f '${join(service.storagePath, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')}'`,
          ],
        };
      });
      expect(run).toMatchObject({ status: 'failed', error: { code: 'GC_VERIFICATION_FAILED' } });
      expect(run.error!.message).toContain('blob data missing');
      expect(run.verification).toMatchObject({ ok: false, mode: 'sample' });
      expect(run.verification.storage.problems).toEqual([
        expect.objectContaining({
          repository: 'team/app',
          tag: 'stable',
          digest: kept.digest,
          blob: kept.layers[0].digest,
          problem: 'blob data missing',
        }),
      ]);
      // Two tags, well inside the sample: the API check reads the broken image too.
      expect(run.verification.missing).toEqual([
        expect.objectContaining({ repository: 'team/app', tag: 'stable', blob: kept.layers[0].digest }),
      ]);
    });

    it('a manifest pushed while the collector ran, naming what it deleted: repositories is read again', async () => {
      // The real collector, then what a push landing late in the run writes (the gateway fence lets
      // pushes through): the deleted image's manifest again, tagged `again`, whose blobs are gone.
      const { doomed, run } = await collectWithWrapper('pushduringgc', (_kept, service, image) => {
        const repo = join(service.storagePath, 'docker/registry/v2/repositories/team/app/_manifests');
        const hex = image.digest.slice('sha256:'.length);
        return {
          after: [
            `mkdir -p '${repo}/revisions/sha256/${hex}' '${repo}/tags/again/current'`,
            `printf %s '${image.digest}' > '${repo}/revisions/sha256/${hex}/link'`,
            `printf %s '${image.digest}' > '${repo}/tags/again/current/link'`,
          ],
        };
      });
      expect(run).toMatchObject({ status: 'failed', error: { code: 'GC_VERIFICATION_FAILED' } });
      expect(run.verification.storage.problems).toEqual([
        expect.objectContaining({
          repository: 'team/app',
          tag: 'again',
          digest: doomed.digest,
          problem: 'manifest data missing',
        }),
      ]);
    });

    it('a collector the probe took for 2.x that removes layer links: repositories is read again, not taken as read beside it', async () => {
      // The real collector, then what a 3.x one does on top: a layer link removed and listed, here one the
      // `stable` image needs.
      const { kept, run } = await collectWithWrapper('removedlink', (image, service) => {
        const hex = image.layers[0].digest.slice('sha256:'.length);
        const link = join(
          service.storagePath,
          'docker/registry/v2/repositories/team/app/_layers/sha256',
          hex,
        );
        return {
          after: [
            `rm -rf '${link}'`,
            `echo 'team/app: layer link eligible for deletion: ${image.layers[0].digest}'`,
          ],
        };
      });
      expect(run).toMatchObject({ status: 'failed', error: { code: 'GC_VERIFICATION_FAILED' } });
      expect(run.verification.storage.problems).toEqual([
        expect.objectContaining({
          repository: 'team/app',
          tag: 'stable',
          digest: kept.digest,
          blob: kept.layers[0].digest,
          problem: 'blob not linked in the repository',
        }),
      ]);
      expect(run.verification.storage.preexisting).toEqual([]);
    });

    it('a blob the collector deleted before the storage walk beside it saw it: bytesBefore unknown, not wrong', async () => {
      // What an upload finishing between the walk of `blobs` and the collector's own listing leaves: a blob
      // the walk never saw, which the collector deletes (nothing references it).
      const stray = `sha256:${'e'.repeat(64)}`;
      const { run } = await collectWithWrapper('unseenblob', (_kept, service) => {
        const dir = join(service.storagePath, 'docker/registry/v2/blobs/sha256/ee', 'e'.repeat(64));
        return { before: [`mkdir -p '${dir}'`, `head -c 70000 /dev/zero > '${dir}/data'`] };
      });
      expect(run).toMatchObject({ status: 'succeeded', bytesBefore: null, bytesFreed: null });
      expect(run.bytesAfter).toBeGreaterThan(0);
      expect(await outputOf(run.id)).toContain(`blob eligible for deletion: ${stray}`);
      expect(run.verification).toMatchObject({ ok: true });
    });

    it('a cache that was not emptied: the registry still claims the deleted blobs', async () => {
      // The registry caches in memory; the settings wrongly say it has no cache, so nothing restarts it.
      const { doomed, run } = await collectAfterDeleting('stalecache', {
        fence: 'gateway',
        cache: { type: 'none' },
      });
      expect(run).toMatchObject({ status: 'failed', error: { code: 'GC_VERIFICATION_FAILED' } });
      expect(run.verification.storage.problems).toEqual([]); // the storage is right: the cache is what lies
      expect(run.verification.stillServed).toContainEqual(
        expect.objectContaining({ repository: 'team/app', digest: doomed.layers[0].digest, status: 200 }),
      );
      expect(run.error!.message).toContain('still claimed by the registry');
    });

    it('an executor that reads another storage than the registry’s: refused while it holds nothing, failed after', async () => {
      const elsewhere = await mkdtemp(join(tmpdir(), 'gc-elsewhere-'));
      const settings = (service: RegistryService) => fencedByGateway(service, { storagePath: elsewhere });
      try {
        // Nothing there (what a registry on an object store looks like from the executor): refused before
        // the collector runs, the registry's own storage untouched.
        const empty = await collectAfterDeleting('elsewhere', settings);
        expect(empty.run).toMatchObject({ status: 'failed', error: { code: 'STORAGE_NOT_FOUND' } });
        expect(empty.run.error!.message).toContain('team/app');
        expect(empty.run.blobsDeleted).toBeNull();
        const hex = empty.doomed.layers[0].digest.slice('sha256:'.length);
        const data = join(
          empty.service.storagePath,
          'docker/registry/v2/blobs/sha256',
          hex.slice(0, 2),
          hex,
          'data',
        );
        expect((await stat(data)).isFile()).toBe(true);

        // Another storage with a blob in it: the collector runs on the registry's, and the run says what
        // does not add up.
        const stray = join(elsewhere, 'docker/registry/v2/blobs/sha256/ee', 'e'.repeat(64));
        await mkdir(stray, { recursive: true });
        await writeFile(join(stray, 'data'), 'stray');
        const other = await collectAfterDeleting('elsewhere2', settings);
        expect(other.run).toMatchObject({ status: 'failed', error: { code: 'GC_VERIFICATION_FAILED' } });
        expect(other.run.verification.storage.problems.map((p) => p.problem)).toEqual([
          expect.stringMatching(/none of the \d+ blob\(s\) the collector deleted .*executor.storagePath/),
          expect.stringMatching(/the registry lists the repository/),
        ]);
      } finally {
        await rm(elsewhere, { recursive: true, force: true });
      }
    });

    it('damage that was there before the run does not fail it: listed apart, on the storage and through the API', async () => {
      // A layer of the kept image lost before the run (what a pull-through cache holds of a layer it never
      // fetched, or an old accident): the run did not do that, and must not fail for it every time.
      let lost = '';
      const { kept, run } = await collectAfterDeleting(
        'damagedbefore',
        { fence: 'gateway' },
        async (image, service) => {
          lost = image.layers[0].digest;
          const hex = lost.slice('sha256:'.length);
          await rm(join(service.storagePath, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex), {
            recursive: true,
          });
        },
      );
      expect(run).toMatchObject({ status: 'succeeded', error: null });
      expect(run.blobsDeleted).toBeGreaterThan(0);
      expect(run.verification).toMatchObject({ ok: true, outputComplete: true, missing: [] });
      expect(run.verification.storage.problems).toEqual([]);
      expect(run.verification.storage.preexisting).toEqual([
        {
          repository: 'team/app',
          tag: 'stable',
          digest: kept.digest,
          blob: lost,
          problem: 'blob data missing',
        },
      ]);
      expect(run.verification.preexisting).toEqual([
        expect.objectContaining({ repository: 'team/app', tag: 'stable', blob: lost }),
      ]);
      // GraphQL reads the same lists.
      const gql = await http()
        .post('/graphql')
        .send({
          query: `{ gcRun(id: "${run.id}") { verification { ok outputComplete preexisting { blob } storage { preexisting { blob problem } } } } }`,
        })
        .expect(200);
      expect(gql.body.data.gcRun.verification).toEqual({
        ok: true,
        outputComplete: true,
        preexisting: [{ blob: lost }],
        storage: { preexisting: [{ blob: lost, problem: 'blob data missing' }] },
      });
    });

    /**
     * collectAfterDeleting with a collector whose output loses every `blob eligible` line but the first
     * (what a full disk under the output does: the collector ignores failed writes and goes on deleting).
     */
    async function collectWithLossyOutput(name: string, request: { dryRun?: boolean } = {}) {
      const dir = await mkdtemp(join(tmpdir(), 'gc-lossy-'));
      const wrapper = join(dir, 'collector.sh');
      await writeFile(
        wrapper,
        [
          'set -o pipefail',
          `docker-registry "$@" | awk '!/^blob eligible for deletion: / || !seen++'`,
          '',
        ].join('\n'),
      );
      try {
        return await collectAfterDeleting(
          name,
          (service) => fencedByGateway(service, { command: ['bash', wrapper] }),
          undefined,
          request,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }

    it('a collector whose output lost lines: what it deleted is taken from the storage, and the run says so', async () => {
      const { doomed, run } = await collectWithLossyOutput('lossyoutput');
      expect(run).toMatchObject({ status: 'succeeded', error: null });
      // The count its summary announced: manifest, config and layers.
      expect(run.blobsDeleted).toBe(doomed.layers.length + 2);
      expect(run.bytesEstimated).toBeGreaterThan(doomed.layers.length * 64 * 1024);
      expect(run.verification).toMatchObject({
        ok: true,
        outputComplete: false,
        // Every deleted blob a repository linked, not the one line that came through.
        deletedBlobsChecked: doomed.layers.length + 1,
        stillServed: [],
      });
      expect((await outputOf(run.id)).match(/blob eligible for deletion/g)).toHaveLength(1);
    });

    it('a dry run whose output lost lines fails with GC_OUTPUT_INCOMPLETE: its report would be short', async () => {
      const { run } = await collectWithLossyOutput('lossydryrun', { dryRun: true });
      expect(run).toMatchObject({ status: 'failed', error: { code: 'GC_OUTPUT_INCOMPLETE' } });
      expect(run.error!.message).toMatch(/announced \d+ blob\(s\).*listed 1 and 0: lines were lost/);
      expect(run.blobsDeleted).toBeNull();
    });

    it('full mode asks the registry about every deleted blob and every tag', async () => {
      const { run, doomed } = await collectAfterDeleting('fullverify', {
        fence: 'gateway',
        verification: 'full',
      });
      expect(run).toMatchObject({ status: 'succeeded', error: null });
      expect(run.verification).toMatchObject({
        ok: true,
        mode: 'full',
        deletedBlobsChecked: doomed.layers.length + 1, // layers and config: the manifest is no layer link
        manifestsChecked: 1,
        storage: {
          tagsChecked: 1,
          manifestsChecked: 1,
          deletedBlobsChecked: doomed.layers.length + 2,
          problems: [],
        },
      });
      const settings = (await http().get('/api/v1/registries/fullverify/gc-settings').expect(200)).body;
      expect(settings.verification).toBe('full');
    });
  });

  it('collects around a manifest that lost its data: the collector skips it, the run lists it as damage from before', async () => {
    const { service, pusher } = await registry('brokenrevision', { fence: 'gateway' });
    const images = [];
    for (const tag of ['a', 'b', 'c'])
      images.push(
        await pusher.pushImage('team/app', [tag], { seed: `brokenrevision-${tag}`, layerSize: 32 * 1024 }),
      );
    // The manifest in the middle (by digest, the order the collector marks a repository in) loses its data.
    images.sort((x, y) => x.digest.localeCompare(y.digest));
    const broken = images[1];
    const hex = broken.digest.slice('sha256:'.length);
    await rm(join(service.storagePath, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex), {
      recursive: true,
    });
    const res = await http().post('/api/v1/registries/brokenrevision/gc').send({}).expect(202);
    const run = (await waitRun(res.body.id)) as RunView & { verification: GcVerification };
    expect(run).toMatchObject({ status: 'succeeded', error: null });
    // Its config and layer, which nothing else uses: unmarked, so swept.
    expect(run.blobsDeleted).toBe(2);
    expect(run.verification.storage.problems).toEqual([]);
    expect(run.verification.storage.preexisting).toEqual([
      expect.objectContaining({
        repository: 'team/app',
        tag: broken.tags[0],
        blob: broken.digest,
        problem: 'manifest data missing',
      }),
    ]);
    for (const image of [images[0], images[2]]) await expectIntact(pusher, image);
  });

  it('refuses --delete-untagged where it would break a multi-arch image, and allows it where nothing references the candidates', async () => {
    const { pusher } = await registry('untagged', { fence: 'gateway' });
    const index = await pusher.pushIndex(
      'team/multi',
      ['1.0'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    const refused = await waitRun(
      (await http().post('/api/v1/registries/untagged/gc').send({ deleteUntagged: true }).expect(202)).body
        .id,
    );
    expect(refused.status).toBe('failed');
    expect(refused.error?.code).toBe('DELETE_UNTAGGED_UNSAFE');
    // Which manifests it would have taken: kept with the run, over REST, GraphQL and in the audit trail.
    const unsafe = index.children.map((c) =>
      expect.objectContaining({ repository: 'team/multi', digest: c.digest }),
    );
    expect(refused.error?.details).toEqual({ manifests: expect.arrayContaining(unsafe), manifestsTotal: 2 });
    const viaGraphql = await http()
      .post('/graphql')
      .send({
        query: `query($id: ID!) { gcRun(id: $id) { error { code details } } }`,
        variables: { id: refused.id },
      })
      .expect(200);
    expect(viaGraphql.body.data.gcRun.error).toEqual(
      refused.error && { code: refused.error.code, details: refused.error.details },
    );
    const [failed] = (await http().get(`/api/v1/audit-events?action=gc.failed&registry=untagged`).expect(200))
      .body.items as { details: { error: unknown } }[];
    expect(failed.details.error).toMatchObject({
      code: 'DELETE_UNTAGGED_UNSAFE',
      details: { manifestsTotal: 2 },
    });
    for (const child of index.children) await expectIntact(pusher, child);

    await deleteThroughGateway('untagged', [index as unknown as PushedImage]);
    // (2.8's --delete-untagged fails on a repository without any tag, so this one has a tagged image too.)
    await pusher.pushImage('team/loose', ['kept']);
    const loose = await pusher.pushImage('team/loose', [], { pushByDigestOnly: true });
    const run = await waitRun(
      (await http().post('/api/v1/registries/untagged/gc').send({ deleteUntagged: true }).expect(202)).body
        .id,
    );
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect(run.manifestsDeleted).toBeGreaterThanOrEqual(1);
    const gone = await fetch(
      `${(await http().get('/api/v1/registries/untagged').expect(200)).body.url}/v2/team/loose/manifests/${loose.digest}`,
      {
        method: 'HEAD',
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      },
    );
    expect(gone.status).toBe(404);
  });

  it('runs over ssh with the registry stopped for the run (fence stop), and never returns the key', async () => {
    const sshd = await SshServer.start();
    try {
      const { service, pusher } = await registry('remote', (service0) => ({
        executor: {
          type: 'ssh',
          host: sshd.host,
          port: sshd.port,
          username: sshd.username,
          hostKeySha256: sshd.hostKey.fingerprint,
          command: ['docker-registry'],
          configPath: service0.configPath,
          storagePath: service0.storagePath,
          lifecycle: service0.lifecycle,
        },
        secrets: { privateKey: sshd.clientKey.privateKey },
        fence: 'stop',
      }));
      const doomed = await pusher.pushImage('team/remote', ['old'], { layerSize: 2 * MiB });
      const kept = await pusher.pushImage('team/remote', ['new']);
      await deleteThroughGateway('remote', [doomed]);
      const before = bytesOf(await snapshot(service.storagePath));
      const run = await waitRun(
        (await http().post('/api/v1/registries/remote/gc').send({}).expect(202)).body.id,
      );
      expect(run).toMatchObject({
        error: null,
        status: 'succeeded',
        fence: 'stop',
        executor: 'ssh',
        blobsDeleted: 3,
      });
      expect(before - bytesOf(await snapshot(service.storagePath))).toBeGreaterThan(2 * MiB);
      expect(await service.running()).toBe(true);
      await expectIntact(pusher, kept);
      const settings = (await http().get('/api/v1/registries/remote/gc-settings').expect(200)).body;
      expect(settings.secrets).toMatchObject({ hasPrivateKey: true });
      expect(JSON.stringify(settings)).not.toContain('PRIVATE KEY');
      const stored = await env.query<{ sealed: string }>(
        `SELECT executor_secrets_sealed AS sealed FROM gc_settings s JOIN registries r ON r.id = s.registry_id WHERE r.name = 'remote'`,
      );
      expect(stored[0].sealed).not.toContain('PRIVATE KEY');
    } finally {
      await sshd.stop();
    }
  });

  it('pages the history without losing runs created within the same millisecond', async () => {
    const times = ['.123100', '.123200', '.123300', '.123400', '.124000'];
    const ids: string[] = [];
    for (const t of times) {
      const [row] = await env.query<{ id: string }>(
        `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, dry_run, delete_untagged, fence, executor,
           status, phase, created_at)
         VALUES ('ms-paging', gen_random_uuid(), 'manual', 'system', true, false, 'none', 'local', 'succeeded',
           'done', $1) RETURNING id`,
        [`2026-01-01T00:00:00${t}Z`],
      );
      ids.push(row.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (
        await http()
          .get(`/api/v1/gc-runs?registry=ms-paging&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
          .expect(200)
      ).body as { items: RunView[]; nextCursor: string | null };
      seen.push(...page.items.map((r) => r.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it('says clearly what it will not do', async () => {
    const service = await RegistryService.create();
    services.push(service);
    await http().post('/api/v1/registries').send({ name: 'plain', url: service.url }).expect(201);
    const none = await http().post('/api/v1/registries/plain/gc').send({}).expect(409);
    expect(none.body.error.code).toBe('GC_NOT_CONFIGURED');
    const executor = {
      type: 'local',
      command: ['docker-registry'],
      configPath: service.configPath,
      storagePath: service.storagePath,
    };
    const noReadOnly = await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({ executor, fence: 'readonly' })
      .expect(400);
    expect(noReadOnly.body.error.code).toBe('FENCE_UNSUPPORTED');
    // Its commands run inside the registry's container: a stopped container takes none.
    const dockerStop = await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({
        executor: { type: 'docker', container: 'registry', configPath: '/etc/docker/registry/config.yml' },
        fence: 'stop',
      })
      .expect(400);
    expect(dockerStop.body.error).toMatchObject({
      code: 'FENCE_UNSUPPORTED',
      details: { executor: 'docker' },
    });
    const badCron = await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({ executor, fence: 'none', cache: { type: 'none' }, schedule: 'every sunday' })
      .expect(400);
    expect(badCron.body.error.code).toBe('VALIDATION_FAILED');
    await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({ executor, fence: 'none', cache: { type: 'none' } })
      .expect(200);
    const noExecutor = await http().put('/api/v1/registries/plain/gc-settings').send({}).expect(400);
    expect(noExecutor.body.error).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(noExecutor.body.error.message).toContain('executor is required');
    // A zone the job scheduler would refuse is refused before anything is stored.
    const badZone = await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({
        executor,
        fence: 'none',
        cache: { type: 'none' },
        schedule: '30 1 * * *',
        scheduleTimezone: 'Mars/Olympus',
      })
      .expect(400);
    expect(badZone.body.error).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: { field: 'scheduleTimezone' },
    });
    expect((await http().get('/api/v1/registries/plain/gc-settings').expect(200)).body).toMatchObject({
      schedule: null,
      scheduleTimezone: null,
    });
    const unconfirmed = await http().post('/api/v1/registries/plain/gc').send({}).expect(409);
    expect(unconfirmed.body.error.code).toBe('GC_UNFENCED_NOT_CONFIRMED');
    const run = await waitRun(
      (await http().post('/api/v1/registries/plain/gc').send({ allowUnfenced: true }).expect(202)).body.id,
    );
    expect(run).toMatchObject({ error: null, status: 'succeeded', fence: 'none', unfencedAllowed: true });
    // A finished run answers a long poll at once; a wait beyond 60 s is refused.
    expect((await http().get(`/api/v1/gc-runs/${run.id}?wait=30`).expect(200)).body.status).toBe('succeeded');
    for (const wait of ['61', '-1', 'soon'])
      expect((await http().get(`/api/v1/gc-runs/${run.id}?wait=${wait}`).expect(400)).body.error.code).toBe(
        'VALIDATION_FAILED',
      );
    await http().get('/api/v1/gc-runs/00000000-0000-4000-8000-000000000000').expect(404);
    await http().get('/api/v1/gc-runs/not-a-uuid').expect(400);
    // A collector that cannot be run fails a dry run with what a real run would show: exit code and output.
    await http()
      .put('/api/v1/registries/plain/gc-settings')
      .send({
        executor: { ...executor, command: ['no-such-registry-binary'] },
        fence: 'none',
        cache: { type: 'none' },
      })
      .expect(200);
    const missing = await waitRun(
      (await http().post('/api/v1/registries/plain/gc').send({ dryRun: true }).expect(202)).body.id,
    );
    expect(missing).toMatchObject({ status: 'failed', exitCode: 127, error: { code: 'GC_COMMAND_FAILED' } });
    expect(missing.error?.details).toEqual({ exitCode: 127 });
    expect(await outputOf(missing.id)).toContain('no-such-registry-binary');
    // What the command printed is the run's output, not in its error: the audit trail gets the same.
    const audited = (
      await http().get('/api/v1/audit-events').query({ action: 'gc.failed', registry: 'plain' }).expect(200)
    ).body.items as { subject: { id: string }; details: { error: { details: Record<string, unknown> } } }[];
    const event = audited.find((e) => e.subject.id === missing.id);
    expect(event?.details.error.details).toEqual({ exitCode: 127 });
  });

  it('runs on a schedule once across workers, and after deletions settle', async () => {
    const second = await startWorker(env, FAST);
    try {
      const { pusher } = await registry('timed', { fence: 'gateway', schedule: '*/2 * * * * *' });
      const first = await waitRunOf('timed', 'schedule');
      expect(first).toMatchObject({ error: null, status: 'succeeded' });
      await http()
        .put('/api/v1/registries/timed/gc-settings')
        .send({
          executor: (await http().get('/api/v1/registries/timed/gc-settings').expect(200)).body.executor,
          fence: 'gateway',
          schedule: null,
          afterDeletions: true,
          afterDeletionsDelaySeconds: 0,
          graceSeconds: 0,
        })
        .expect(200);
      const image = await pusher.pushImage('team/timed', ['1.0']);
      await deleteThroughGateway('timed', [image]);
      const auto = await waitRunOf('timed', 'after_deletions');
      expect(auto).toMatchObject({ error: null, status: 'succeeded' });
      expect(auto.blobsDeleted).toBeGreaterThanOrEqual(1);
    } finally {
      await second.close();
    }
  });

  it('after deletions: waits out an active dry run, and runs nothing once the option is off', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gc-slowdry-'));
    try {
      const wrapper = join(dir, 'collector.sh');
      await writeFile(wrapper, 'case " $* " in *" --dry-run "*) sleep 3;; esac\nexec docker-registry "$@"\n');
      const { pusher } = await registry('afterdry', (s) => ({
        executor: { ...s.localExecutor, command: ['bash', wrapper] },
        fence: 'gateway',
        afterDeletions: true,
        afterDeletionsDelaySeconds: 0,
      }));
      const [doomed, spare] = await Promise.all(
        ['1.0', '2.0'].map((tag) => pusher.pushImage('team/dry', [tag], { seed: `afterdry-${tag}` })),
      );
      const dry = (await http().post('/api/v1/registries/afterdry/gc').send({ dryRun: true }).expect(202))
        .body as RunView;
      await waitRun(dry.id, (r) => r.status === 'running');
      // Settled while the dry run runs (it takes no fence): the automatic run comes after it, not never.
      await deleteThroughGateway('afterdry', [doomed]);
      const auto = await waitRunOf('afterdry', 'after_deletions');
      expect(auto).toMatchObject({ status: 'succeeded', dryRun: false });
      expect(auto.blobsDeleted).toBeGreaterThanOrEqual(1);
      expect((await waitRun(dry.id)).status).toBe('succeeded');

      // A job queued before the option was turned off does not run.
      const settings = (await http().get('/api/v1/registries/afterdry/gc-settings').expect(200)).body;
      await http()
        .put('/api/v1/registries/afterdry/gc-settings')
        .send({
          executor: settings.executor,
          fence: 'gateway',
          afterDeletions: true,
          afterDeletionsDelaySeconds: 2,
        })
        .expect(200);
      await deleteThroughGateway('afterdry', [spare]);
      await http()
        .put('/api/v1/registries/afterdry/gc-settings')
        .send({ executor: settings.executor, fence: 'gateway', afterDeletions: false })
        .expect(200);
      await new Promise((r) => setTimeout(r, 3_500));
      const runs = (await http().get('/api/v1/gc-runs?registry=afterdry').expect(200)).body
        .items as RunView[];
      expect(runs.filter((r) => r.trigger === 'after_deletions').map((r) => r.id)).toEqual([auto.id]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  async function waitRunOf(registryName: string, trigger: string): Promise<RunView> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const page = (await http().get(`/api/v1/gc-runs?registry=${registryName}`).expect(200)).body as {
        items: RunView[];
      };
      const found = page.items.find((r) => r.trigger === trigger);
      if (found) return waitRun(found.id);
      if (Date.now() > deadline) throw new Error(`no ${trigger} run on ${registryName}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
});

describe('a run whose output is longer than what is kept (GC_OUTPUT_CAP_BYTES)', () => {
  it('counts and verifies from the whole output, and keeps its head and tail', async () => {
    const env = await TestEnvironment.create('gc_cap');
    const service = await RegistryService.create();
    const pusher = new ImagePusher(service.url);
    const cap = { ...FAST, GC_OUTPUT_CAP_BYTES: '2048' };
    let gw: TestGateway | undefined;
    let worker: INestApplicationContext | undefined;
    try {
      gw = await startApi(env, cap);
      worker = await startWorker(env, cap);
      const http = () => adminRequest(gw!.server);
      await http().post('/api/v1/registries').send({ name: 'chatty', url: service.url }).expect(201);
      await http()
        .put('/api/v1/registries/chatty/gc-settings')
        .send({
          executor: service.localExecutor,
          fence: 'gateway',
          graceSeconds: 0,
        })
        .expect(200);
      // Six images of five blobs each (config, three layers, manifest); four deleted: 20 blobs of garbage,
      // whose `blob eligible for deletion` lines (and the registry's `Deleting blob` log lines) are several
      // KiB: the middle of the output, cut out of the 2 KiB kept, holds most of them and the summary.
      const images = await Promise.all(
        ['a', 'b', 'c', 'd', 'e', 'f'].map((tag) =>
          pusher.pushImage('noisy/app', [tag], { layers: 3, layerSize: 8 * 1024 }),
        ),
      );
      for (const image of images.slice(0, 4)) {
        const res = await fetch(`${service.url}/v2/noisy/app/manifests/${image.digest}`, {
          method: 'DELETE',
        });
        await res.arrayBuffer();
        expect(res.status).toBe(202);
      }
      const finished = async (id: string) =>
        (await http().get(`/api/v1/gc-runs/${id}?wait=60`).expect(200)).body as RunView & {
          outputTruncated: boolean;
          blobsMarked: number | null;
        };

      const dry = await finished(
        (await http().post('/api/v1/registries/chatty/gc').send({ dryRun: true }).expect(202)).body.id,
      );
      expect(dry).toMatchObject({
        status: 'succeeded',
        blobsDeleted: 20,
        blobsMarked: 10,
        outputTruncated: true,
      });
      const kept = await http().get(`/api/v1/gc-runs/${dry.id}/output`).expect(200);
      expect(kept.headers['x-output-truncated']).toBe('true');
      expect(kept.text.length).toBeLessThan(2048 + 200);
      expect(kept.text).toMatch(/marking [^]*bytes of output omitted here[^]*blob eligible for deletion: /);

      const run = await finished(
        (await http().post('/api/v1/registries/chatty/gc').send({}).expect(202)).body.id,
      );
      expect(run.error).toBeNull();
      expect(run).toMatchObject({
        status: 'succeeded',
        blobsDeleted: 20,
        blobsMarked: 10,
        outputTruncated: true,
      });
      // Every deleted blob was looked for on the storage, and the estimate counts every one of them.
      expect(run.verification).toMatchObject({ ok: true, storage: { deletedBlobsChecked: 20 } });
      expect(run.bytesEstimated).toBe(dry.bytesEstimated);
      // Twelve layers of 8 KiB at least; what is freed adds the blobs' folders.
      expect(run.bytesEstimated).toBeGreaterThanOrEqual(12 * 8 * 1024);
      expect(run.bytesFreed).toBeGreaterThanOrEqual(run.bytesEstimated!);
      for (const image of images.slice(4))
        for (const blob of [image.config, ...image.layers])
          expect(sha256(await pusher.pullBlob('noisy/app', blob.digest))).toBe(blob.digest);
    } finally {
      await worker?.close();
      await gw?.close();
      await pusher.close();
      await service.cleanup();
      await env.destroy();
    }
  });
});

describe('GC settings from the registries file', () => {
  it('applies each registry’s gc section at start, and the API cannot change what the file owns', async () => {
    const env = await TestEnvironment.create('gc_file');
    const service = await RegistryService.create();
    const dir = await mkdtemp(join(tmpdir(), 'gc-file-'));
    let gw: TestGateway | undefined;
    try {
      await writeFile(join(dir, 'redis-password'), 'from-a-file\n');
      const file = join(dir, 'registries.yaml');
      await writeFile(
        file,
        stringify({
          registries: [
            {
              name: 'declared',
              url: service.url,
              gc: {
                executor: service.localExecutor,
                fence: 'readonly',
                cache: { type: 'redis', addr: '127.0.0.1:6379', db: CACHE_DB },
                cachePasswordFile: join(dir, 'redis-password'),
                schedule: '0 3 * * 0',
              },
            },
          ],
        }),
      );
      gw = await startApi(env, { REGISTRIES_FILE: file, REGISTRIES_FILE_POLL_MS: '0' });
      const http = adminRequest(gw.server);
      const settings = (await http.get('/api/v1/registries/declared/gc-settings').expect(200)).body;
      expect(settings).toMatchObject({
        source: 'file',
        fence: 'readonly',
        schedule: '0 3 * * 0',
        hasCachePassword: true,
        cache: { type: 'redis', db: CACHE_DB },
      });
      const refused = await http
        .put('/api/v1/registries/declared/gc-settings')
        .send({ executor: settings.executor, fence: 'gateway' })
        .expect(409);
      expect(refused.body.error.code).toBe('GC_SETTINGS_MANAGED_BY_FILE');
      await http.delete('/api/v1/registries/declared/gc-settings').expect(409);

      // Every start of every replica applies the file again: unchanged settings are not written again.
      const audited = () =>
        env.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM audit_events WHERE action LIKE 'gc.settings.%'`,
        );
      expect(await audited()).toEqual([{ n: 1 }]);
      const replica = await startApi(env, { REGISTRIES_FILE: file, REGISTRIES_FILE_POLL_MS: '0' });
      await replica.close();
      expect(await audited()).toEqual([{ n: 1 }]);
    } finally {
      await gw?.close();
      await service.cleanup();
      await rm(dir, { recursive: true, force: true });
      await env.destroy();
    }
  });
});

describe('the shipped compose configuration', () => {
  it('has gc sections the gateway accepts', async () => {
    const { plainToInstance } = await import('class-transformer');
    const { validate } = await import('class-validator');
    const { GcSettingsDto } = await import('../src/gc/gc-settings.dto.js');
    const { assertWorkable } = await import('../src/gc/gc-settings.service.js');
    const { toExecutorConfig } = await import('../src/gc/executors/gc-executor.dto.js');
    const { parse } = await import('yaml');
    const { readFile } = await import('node:fs/promises');
    const file = parse(
      await readFile(join(__dirname, '..', 'deploy', 'compose', 'registries.yml'), 'utf8'),
    ) as {
      registries: { name: string; gc?: unknown }[];
    };
    const sections = file.registries.filter((r) => r.gc);
    expect(sections.length).toBeGreaterThan(0);
    for (const r of sections) {
      const dto = plainToInstance(GcSettingsDto, r.gc);
      expect(await validate(dto, { whitelist: true, forbidNonWhitelisted: true }), r.name).toEqual([]);
      await expect(
        assertWorkable(
          toExecutorConfig(dto.executor),
          {},
          dto.fence ?? 'gateway',
          dto.cache?.type ?? 'inmemory',
        ),
        r.name,
      ).resolves.toBeUndefined();
    }
  });
});
