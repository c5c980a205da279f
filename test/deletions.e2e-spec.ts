import type { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeletionProcessor } from '../src/deletions/deletion.processor.js';
import type { DeletionRequestView } from '../src/deletions/deletion.dto.js';
import { Queues } from '../src/queue/queue.constants.js';
import { Redis } from 'ioredis';
import {
  adminRequest,
  TEST_REDIS_URL,
  TestEnvironment,
  TestGateway,
  startApi,
  startWorker,
} from './support/gateway.js';
import { ImagePusher, PushedImage, sha256 } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

const FAST_RETRIES = { DELETE_BACKOFF_MS: '100', DELETE_BACKOFF_MAX_MS: '500', DELETE_MAX_ITEMS: '40' };

describe('deletions on real registries', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let worker: INestApplicationContext;
  let registry: RegistryProcess;
  let noDelete: RegistryProcess;
  let readOnly: RegistryProcess;
  let pusher: ImagePusher;
  const http = () => adminRequest(gw.server);

  async function tagsOf(repository: string): Promise<string[]> {
    const res = await fetch(`${registry.url}/v2/${repository}/tags/list`);
    if (res.status === 404) return [];
    return (((await res.json()) as { tags: string[] | null }).tags ?? []).sort();
  }

  async function settled(id: string, timeoutMs = 30_000): Promise<DeletionRequestView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const body = (await http().get(`/api/v1/deletions/${id}`).expect(200)).body;
      if (!['queued', 'running'].includes(body.status)) return body;
      if (Date.now() > deadline)
        throw new Error(`deletion ${id} still ${body.status}: ${JSON.stringify(body.counts)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function expectIntact(image: PushedImage) {
    for (const blob of [image.config, ...image.layers]) {
      const bytes = await pusher.pullBlob(image.repository, blob.digest);
      expect(sha256(bytes)).toBe(blob.digest);
    }
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('deletions');
    [registry, noDelete, readOnly] = await Promise.all([
      RegistryProcess.start(),
      RegistryProcess.start({ deleteEnabled: false }),
      RegistryProcess.start({ readOnly: true }),
    ]);
    pusher = new ImagePusher(registry.url);
    gw = await startApi(env, FAST_RETRIES);
    worker = await startWorker(env, FAST_RETRIES);
    for (const [name, r] of [
      ['main', registry],
      ['no-delete', noDelete],
      ['frozen', readOnly],
    ] as const)
      await http().post('/api/v1/registries').send({ name, url: r.url }).expect(201);
  });

  afterAll(async () => {
    await worker?.close();
    await gw?.close();
    await pusher?.close();
    await Promise.all([registry?.cleanup(), noDelete?.cleanup(), readOnly?.cleanup()]);
    await env?.destroy();
  });

  it('deletes an image by tag with every tag sharing its digest, and says so up front', async () => {
    const shared = await pusher.pushImage('team-a/api', ['v1', 'latest', 'stable'], {
      seed: 'shared',
      layers: 2,
    });
    const other = await pusher.pushImage('team-a/api', ['v2'], { seed: 'other' });

    const res = await http()
      .delete('/api/v1/registries/main/repositories/team-a/api/manifests/v1')
      .expect(202);
    expect(res.body).toMatchObject({ registry: 'main', status: 'queued', dryRun: false, itemCount: 1 });
    expect(res.body.items).toEqual([
      expect.objectContaining({
        repository: 'team-a/api',
        reference: 'v1',
        kind: 'manifest',
        digest: shared.digest,
        mediaType: shared.mediaType,
        tags: ['latest', 'stable', 'v1'],
        estimatedBytes: shared.totalSize + shared.manifestSize,
        status: 'pending',
      }),
    ]);
    const done = await settled(res.body.id);
    expect(done.status).toBe('succeeded');
    expect(done.items?.[0]).toMatchObject({
      status: 'succeeded',
      upstreamStatus: 202,
      alreadyGone: false,
      method: 'manifest-delete',
    });
    expect(await tagsOf('team-a/api')).toEqual(['v2']);
    await expectIntact(other);
  });

  it('dry run returns the same plan and changes nothing', async () => {
    const image = await pusher.pushImage('team-a/dry', ['a', 'b'], { seed: 'dry' });
    const res = await http()
      .delete(`/api/v1/registries/main/repositories/team-a/dry/manifests/${image.digest}?dryRun=true`)
      .expect(201);
    expect(res.body).toMatchObject({ status: 'planned', dryRun: true, counts: { planned: 1 } });
    expect(res.body.items[0]).toMatchObject({ digest: image.digest, tags: ['a', 'b'], status: 'planned' });
    expect(await tagsOf('team-a/dry')).toEqual(['a', 'b']);
  });

  it('removes only the tag on a tag delete, keeping the image for its other tags', async () => {
    const image = await pusher.pushImage('team-a/tagged', ['keep', 'drop'], { seed: 'tagged', layers: 2 });
    const res = await http()
      .delete('/api/v1/registries/main/repositories/team-a/tagged/tags/drop')
      .expect(202);
    expect(res.body.items[0]).toMatchObject({
      kind: 'tag',
      tags: ['drop'],
      digest: image.digest,
      estimatedBytes: 0,
    });
    const done = await settled(res.body.id);
    expect(done.items?.[0]).toMatchObject({ status: 'succeeded', method: 'throwaway-manifest' });
    expect(await tagsOf('team-a/tagged')).toEqual(['keep']);
    const head = await fetch(`${registry.url}/v2/team-a/tagged/manifests/keep`, {
      method: 'HEAD',
      headers: { accept: image.mediaType },
    });
    expect(head.headers.get('docker-content-digest')).toBe(image.digest);
    await expectIntact(image);
  });

  it('refuses to delete a platform manifest of a multi-arch image, and deletes the index by its tag', async () => {
    const index = await pusher.pushIndex(
      'team-a/multi',
      ['1.0'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    const child = index.children[0].digest;
    const refused = await http()
      .delete(`/api/v1/registries/main/repositories/team-a/multi/manifests/${child}`)
      .expect(409);
    expect(refused.body.error.code).toBe('MANIFEST_IN_USE');
    expect(refused.body.error.message).toContain('1.0');

    const res = await http()
      .delete('/api/v1/registries/main/repositories/team-a/multi/manifests/1.0')
      .expect(202);
    expect(res.body.items[0]).toMatchObject({
      digest: index.digest,
      mediaType: index.mediaType,
      tags: ['1.0'],
    });
    const bytes = index.manifestSize + index.children.reduce((n, c) => n + c.manifestSize + c.totalSize, 0);
    expect(res.body.items[0].estimatedBytes).toBe(bytes);
    expect((await settled(res.body.id)).status).toBe('succeeded');
    expect(await tagsOf('team-a/multi')).toEqual([]);
  });

  it('executes exactly the stored plan, and refuses a plan the registry has outgrown', async () => {
    const [x1, x2, x3] = [
      await pusher.pushImage('team-b/app', ['x1'], { seed: 'x1' }),
      await pusher.pushImage('team-b/app', ['x2'], { seed: 'x2' }),
      await pusher.pushImage('team-b/app', ['x3'], { seed: 'x3' }),
    ];
    const plan = await http()
      .post('/api/v1/deletions')
      .send({
        registry: 'main',
        dryRun: true,
        reason: 'nightly cleanup',
        items: [
          { repository: 'team-b/app', reference: 'x1' },
          { repository: 'team-b/app', reference: x2.digest },
          { repository: 'team-b/app', reference: 'x2' },
          { repository: 'team-b/app', reference: 'gone' },
        ],
      })
      .expect(201);
    expect(plan.body).toMatchObject({
      status: 'planned',
      reason: 'nightly cleanup',
      counts: { planned: 2, skipped: 2 },
    });
    expect(
      plan.body.items.map((i: { status: string; error: { code: string } | null }) => [
        i.status,
        i.error?.code ?? null,
      ]),
    ).toEqual([
      ['planned', null],
      ['planned', null],
      ['skipped', 'DUPLICATE_ITEM'],
      ['skipped', 'MANIFEST_UNKNOWN'],
    ]);
    expect(plan.body.estimatedBytes).toBe(x1.totalSize + x1.manifestSize + x2.totalSize + x2.manifestSize);

    // Someone tags x1's image again: executing now would delete more than the plan showed.
    await pusher.tag('team-b/app', 'x1-release', x1.digest);
    const stale = await http().post(`/api/v1/deletions/${plan.body.id}/execute`).expect(409);
    expect(stale.body.error.code).toBe('PLAN_STALE');
    expect(stale.body.error.details.mismatches).toEqual([
      expect.objectContaining({ position: 0, addedTags: ['x1-release'] }),
    ]);
    expect(await tagsOf('team-b/app')).toEqual(['x1', 'x1-release', 'x2', 'x3']);

    const again = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', dryRun: true, items: [{ repository: 'team-b/app', reference: 'x2' }] })
      .expect(201);
    const x4 = await pusher.pushImage('team-b/app', ['x4'], { seed: 'x4' });
    const executed = await http().post(`/api/v1/deletions/${again.body.id}/execute`).expect(202);
    expect(executed.body.status).toBe('queued');
    expect((await settled(again.body.id)).status).toBe('succeeded');
    expect(await tagsOf('team-b/app')).toEqual(['x1', 'x1-release', 'x3', 'x4']);
    await expectIntact(x3);
    await expectIntact(x4);
    const twice = await http().post(`/api/v1/deletions/${again.body.id}/execute`).expect(409);
    expect(twice.body.error.code).toBe('DELETION_NOT_PLANNED');
  });

  it('cancels a plan, which then cannot run', async () => {
    await pusher.pushImage('team-b/cancel', ['c1'], { seed: 'c1' });
    const plan = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', dryRun: true, items: [{ repository: 'team-b/cancel', reference: 'c1' }] })
      .expect(201);
    const cancelled = await http().post(`/api/v1/deletions/${plan.body.id}/cancel`).expect(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', counts: { cancelled: 1 } });
    expect((await http().post(`/api/v1/deletions/${plan.body.id}/execute`).expect(409)).body.error.code).toBe(
      'DELETION_NOT_PLANNED',
    );
    expect((await http().post(`/api/v1/deletions/${plan.body.id}/cancel`).expect(409)).body.error.code).toBe(
      'DELETION_FINISHED',
    );
    expect(await tagsOf('team-b/cancel')).toEqual(['c1']);
  });

  it('refuses to execute a plan whose every item was skipped, as it refuses such a request', async () => {
    const plan = await http()
      .post('/api/v1/deletions')
      .send({
        registry: 'main',
        dryRun: true,
        items: [
          { repository: 'team-b/none', reference: 'gone-1' },
          { repository: 'team-b/none', reference: 'gone-2' },
        ],
      })
      .expect(201);
    expect(plan.body).toMatchObject({ status: 'planned', counts: { planned: 0, skipped: 2 } });

    const rest = await http().post(`/api/v1/deletions/${plan.body.id}/execute`).expect(422);
    expect(rest.body.error).toMatchObject({
      code: 'NOTHING_TO_DELETE',
      details: {
        items: [
          { position: 0, code: 'MANIFEST_UNKNOWN' },
          { position: 1, code: 'MANIFEST_UNKNOWN' },
        ],
      },
    });
    const gql = await http()
      .post('/graphql')
      .send({
        query: 'mutation($id: ID!) { executeDeletion(id: $id) { id status } }',
        variables: { id: plan.body.id },
      })
      .expect(200);
    expect(gql.body.errors?.[0]?.extensions?.code).toBe('NOTHING_TO_DELETE');

    // Left as it was: still a plan, never executed, and nothing in the trail says it was.
    const after = (await http().get(`/api/v1/deletions/${plan.body.id}`).expect(200)).body;
    expect(after).toMatchObject({ status: 'planned', executedAt: null, counts: { planned: 0, skipped: 2 } });
    const actions = await env.query<{ action: string }>(
      `SELECT action FROM audit_events WHERE subject_id = $1 ORDER BY seq`,
      [plan.body.id],
    );
    expect(actions.map((a) => a.action)).toEqual(['deletion.planned']);
  });

  it('refuses oversized requests before reading the registry', async () => {
    const items = Array.from({ length: 3 }, (_, i) => ({ repository: 'team-c/none', reference: `t${i}` }));
    const res = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', items, maxDeletions: 2 })
      .expect(422);
    expect(res.body.error).toMatchObject({
      code: 'TOO_MANY_DELETIONS',
      details: { items: 3, limit: 2, limitedBy: 'maxDeletions' },
    });
    const many = Array.from({ length: 41 }, (_, i) => ({ repository: 'team-c/none', reference: `t${i}` }));
    const global = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', items: many, maxDeletions: 1000 })
      .expect(422);
    expect(global.body.error.details).toMatchObject({ limit: 40, limitedBy: 'DELETE_MAX_ITEMS' });
  });

  it('answers bad input with stable codes', async () => {
    const post = (body: unknown) =>
      http()
        .post('/api/v1/deletions')
        .send(body as object);
    expect(
      (await post({ registry: 'main', items: [{ repository: 'Bad/Name', reference: 'x' }] }).expect(400)).body
        .error,
    ).toMatchObject({
      code: 'NAME_INVALID',
      details: { item: 0 },
    });
    expect(
      (await post({ registry: 'main', items: [{ repository: 'a/b', reference: 'sha256:abc' }] }).expect(400))
        .body.error.code,
    ).toBe('DIGEST_INVALID');
    expect(
      (
        await post({
          registry: 'main',
          items: [{ repository: 'a/b', reference: `sha256:${'a'.repeat(64)}`, kind: 'tag' }],
        }).expect(400)
      ).body.error.code,
    ).toBe('VALIDATION_FAILED');
    expect((await post({ registry: 'main', items: [] }).expect(400)).body.error.code).toBe(
      'VALIDATION_FAILED',
    );
    expect(
      (await post({ registry: 'nope', items: [{ repository: 'a/b', reference: 'x' }] }).expect(404)).body
        .error.code,
    ).toBe('REGISTRY_NOT_FOUND');
    expect(
      (await post({ registry: 'main', items: [{ repository: 'a/b', reference: 'x' }] }).expect(422)).body
        .error.code,
    ).toBe('NOTHING_TO_DELETE');
    expect(
      (await http().delete('/api/v1/registries/main/repositories/team-a/api/manifests/nope').expect(404)).body
        .error.code,
    ).toBe('MANIFEST_UNKNOWN');
    expect((await http().get('/api/v1/deletions/not-a-uuid').expect(400)).body.error.code).toBe(
      'VALIDATION_FAILED',
    );
    expect(
      (await http().get('/api/v1/deletions/00000000-0000-4000-8000-000000000000').expect(404)).body.error
        .code,
    ).toBe('DELETION_NOT_FOUND');
    expect((await http().get('/api/v1/deletions?status=exploded').expect(400)).body.error.code).toBe(
      'VALIDATION_FAILED',
    );
  });

  it('answers 400 to a maxDeletions beyond its column and to times Date cannot read', async () => {
    const before = await env.query<{ n: number }>('SELECT count(*)::int AS n FROM deletion_requests');
    const items = [{ repository: 'team-c/bounds', reference: 'v1' }];
    const huge = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', dryRun: true, items, maxDeletions: 10_000_000_000 })
      .expect(400);
    expect(huge.body.error.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(huge.body.error.details)).toContain('maxDeletions');
    // Refused by validation, before the registry is looked up: an unknown one answers the same.
    const unknown = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'nope', items, maxDeletions: 2 ** 31 })
      .expect(400);
    expect(unknown.body.error.code).toBe('VALIDATION_FAILED');
    await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', dryRun: true, items, maxDeletions: 2 ** 31 - 1 })
      .expect(201);
    expect((await env.query<{ n: number }>('SELECT count(*)::int AS n FROM deletion_requests'))[0].n).toBe(
      before[0].n + 1,
    );

    // ISO 8601 week dates pass the validator but are no Date: a 400, as on the audit list.
    for (const q of ['from=2026-W01', 'to=2026-W01-1']) {
      const res = await http().get(`/api/v1/deletions?${q}`).expect(400);
      expect(res.body.error).toMatchObject({
        code: 'VALIDATION_FAILED',
        details: { field: q.split('=')[0] },
      });
    }
  });

  it('fails fast, before anything is queued, on registries that refuse deletes', async () => {
    const queue = worker.get<Queue>(getQueueToken(Queues.deletions));
    const before = await queue.count();
    const disabled = await http()
      .delete('/api/v1/registries/no-delete/repositories/a/b/manifests/latest')
      .expect(409);
    expect(disabled.body.error.code).toBe('DELETE_DISABLED');
    const frozen = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'frozen', items: [{ repository: 'a/b', reference: 'latest' }] })
      .expect(409);
    expect(frozen.body.error.code).toBe('REGISTRY_READ_ONLY');
    expect(await queue.count()).toBe(before);
    const rows = await env.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM deletion_requests WHERE registry IN ('no-delete', 'frozen')`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('fails an item at once, with the registry answer, when deletes were turned off after the probe', async () => {
    const flip = await RegistryProcess.start();
    try {
      const flipPusher = new ImagePusher(flip.url);
      await flipPusher.pushImage('team-e/app', ['1'], { seed: 'flip' });
      await flipPusher.close();
      await http().post('/api/v1/registries').send({ name: 'flip', url: flip.url }).expect(201);
      await flip.restart({ deleteEnabled: false });
      const res = await http()
        .delete('/api/v1/registries/flip/repositories/team-e/app/manifests/1')
        .expect(202);
      const done = await settled(res.body.id);
      expect(done.status).toBe('failed');
      expect(done.items?.[0]).toMatchObject({
        status: 'failed',
        attempts: 1,
        upstreamStatus: 405,
        error: { code: 'DELETE_DISABLED' },
      });
      const failed = (
        await http()
          .get(`/api/v1/audit-events?subjectId=${res.body.id}&action=deletion.item.failed`)
          .expect(200)
      ).body.items;
      expect(failed).toEqual([
        expect.objectContaining({ outcome: 'failure', upstreamStatus: 405, repository: 'team-e/app' }),
      ]);
    } finally {
      await flip.cleanup();
    }
  });

  it('does not delete an image that gained a tag after the plan: the delete would have taken that tag too', async () => {
    const old = await pusher.pushImage('team-g/retag', ['old'], { seed: 'retag-old' });
    await pusher.pushImage('team-g/retag', ['new', 'latest'], { seed: 'retag-new' });
    await pusher.pushImage('team-g/other', ['1'], { seed: 'retag-other' });
    // The request waits for a worker (behind a GC, retries or the rate limit, in real life).
    await worker.close();
    const res = await http()
      .post('/api/v1/deletions')
      .send({
        registry: 'main',
        items: [
          { repository: 'team-g/retag', reference: 'old' },
          { repository: 'team-g/other', reference: '1' },
        ],
      })
      .expect(202);
    expect(res.body.items.map((i: { tags: string[] }) => i.tags)).toEqual([['old'], ['1']]);
    // Meanwhile a rollback points latest at the old image.
    await pusher.tag('team-g/retag', 'latest', old.digest);
    worker = await startWorker(env, FAST_RETRIES);
    const done = await settled(res.body.id);
    expect(done.status).toBe('partially_failed');
    expect(done.items?.[0]).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { code: 'TAG_ADDED', message: expect.stringContaining('team-g/retag:latest now points at') },
    });
    expect(done.items?.[1]).toMatchObject({ status: 'succeeded' });
    expect(await tagsOf('team-g/retag')).toEqual(['latest', 'new', 'old']);
    await expectIntact(old);
    expect(await tagsOf('team-g/other')).toEqual([]);
  });

  it('queues committed requests whose jobs never reached the queue', async () => {
    await pusher.pushImage('team-d/outbox', ['o1'], { seed: 'o1' });
    await worker.close();
    const res = await http()
      .delete('/api/v1/registries/main/repositories/team-d/outbox/manifests/o1')
      .expect(202);
    // As if the API had died between the commit and the queue: no job, never stamped as queued.
    const queue = gw.app.get<Queue>(getQueueToken(Queues.deletions));
    await queue.obliterate({ force: true });
    await env.query(
      "UPDATE deletion_requests SET enqueued_at = NULL, updated_at = now() - interval '1 minute' WHERE id = $1",
      [res.body.id],
    );
    worker = await startWorker(env, FAST_RETRIES);
    const done = await settled(res.body.id, 30_000);
    expect(done.status).toBe('succeeded');
    expect(await tagsOf('team-d/outbox')).toEqual([]);
  });

  it('lists requests by registry, repository, status and actor, newest first, by cursor', async () => {
    const all = (await http().get('/api/v1/deletions?registry=main&limit=2').expect(200)).body;
    expect(all.items).toHaveLength(2);
    expect(all.items[0].items).toBeUndefined();
    expect(Date.parse(all.items[0].createdAt)).toBeGreaterThanOrEqual(Date.parse(all.items[1].createdAt));
    const next = (
      await http().get(`/api/v1/deletions?registry=main&limit=2&cursor=${all.nextCursor}`).expect(200)
    ).body;
    expect(next.items.map((i: { id: string }) => i.id)).not.toContain(all.items[0].id);
    const byRepo = (await http().get('/api/v1/deletions?repository=team-b/cancel').expect(200)).body;
    expect(byRepo.items).toHaveLength(1);
    expect(byRepo.items[0]).toMatchObject({ status: 'cancelled', counts: { cancelled: 1 } });
    const planned = (await http().get('/api/v1/deletions?status=planned').expect(200)).body;
    expect(planned.items.every((i: { status: string }) => i.status === 'planned')).toBe(true);
    expect(planned.items.length).toBeGreaterThan(0);
    expect((await http().get('/api/v1/deletions?actor=someone-else').expect(200)).body.items).toEqual([]);
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect((await http().get(`/api/v1/deletions?from=${future}`).expect(200)).body.items).toEqual([]);
    expect(
      (await http().get(`/api/v1/deletions?to=${future}&registry=main`).expect(200)).body.items.length,
    ).toBeGreaterThan(0);
    expect((await http().get('/api/v1/deletions?cursor=garbage').expect(400)).body.error.code).toBe(
      'VALIDATION_FAILED',
    );
  });

  it('audits every state change in a chain that verifies, and the database refuses edits', async () => {
    const first = (await http().get('/api/v1/deletions?repository=team-a/api').expect(200)).body.items[0];
    const trail = (await http().get(`/api/v1/audit-events?subjectId=${first.id}`).expect(200)).body.items;
    expect(trail.map((e: { action: string }) => e.action).reverse()).toEqual([
      'deletion.requested',
      'deletion.item.succeeded',
      'deletion.completed',
    ]);
    const item = trail.find((e: { action: string }) => e.action === 'deletion.item.succeeded');
    expect(item).toMatchObject({
      registry: 'main',
      repository: 'team-a/api',
      tags: ['latest', 'stable', 'v1'],
      outcome: 'success',
      upstreamStatus: 202,
      actor: { type: 'service', id: 'bootstrap-admin', name: 'bootstrap-admin' },
      requestId: first.requestId,
      sourceIp: expect.stringMatching(/127\.0\.0\.1/),
    });
    expect(item.digest).toMatch(/^sha256:/);
    const planned = (await http().get('/api/v1/audit-events?action=deletion.planned').expect(200)).body.items;
    expect(planned.length).toBeGreaterThanOrEqual(3);
    expect(
      (await http().get('/api/v1/audit-events?action=deletion.executed').expect(200)).body.items,
    ).toHaveLength(1);
    expect(
      (await http().get('/api/v1/audit-events?action=deletion.cancelled').expect(200)).body.items,
    ).toHaveLength(1);

    const verified = (await http().get('/api/v1/audit/verify').expect(200)).body;
    expect(verified.ok).toBe(true);
    await expect(
      env.query(`UPDATE audit_events SET outcome = 'failure' WHERE action = 'deletion.item.succeeded'`),
    ).rejects.toThrow(/append-only/);
    await expect(env.query('DELETE FROM audit_events')).rejects.toThrow(/append-only/);
  });

  it('lists requests page by page without losing those created within the same millisecond', async () => {
    const ids: string[] = [];
    for (const t of ['.500100', '.500200', '.500300', '.500400', '.501000']) {
      const [row] = await env.query<{ id: string }>(
        `INSERT INTO deletion_requests (registry, registry_id, status, dry_run, actor_type, item_count, created_at)
         VALUES ('ms-paging', gen_random_uuid(), 'succeeded', false, 'system', 0, $1) RETURNING id`,
        [`2026-01-01T00:00:00${t}Z`],
      );
      ids.push(row.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (
        await http()
          .get(`/api/v1/deletions?registry=ms-paging&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
          .expect(200)
      ).body as { items: { id: string }[]; nextCursor: string | null };
      seen.push(...page.items.map((r) => r.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it('pages the items of a request, filtered by status', async () => {
    const images = await Promise.all(
      ['p1', 'p2', 'p3'].map((tag) => pusher.pushImage('team-b/paged', [tag], { seed: `paged-${tag}` })),
    );
    const res = await http()
      .post('/api/v1/deletions')
      .send({
        registry: 'main',
        dryRun: true,
        items: [
          ...images.map((i) => ({ repository: 'team-b/paged', reference: i.digest })),
          { repository: 'team-b/paged', reference: 'no-such-tag' },
        ],
      })
      .expect(201);
    const first = (await http().get(`/api/v1/deletions/${res.body.id}/items?limit=2`).expect(200)).body;
    expect(first.items.map((i: { position: number }) => i.position)).toEqual([0, 1]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const rest = (
      await http()
        .get(`/api/v1/deletions/${res.body.id}/items?limit=2&cursor=${first.nextCursor}`)
        .expect(200)
    ).body;
    expect(rest).toMatchObject({ nextCursor: null });
    expect(rest.items.map((i: { position: number }) => i.position)).toEqual([2, 3]);
    const skipped = (await http().get(`/api/v1/deletions/${res.body.id}/items?status=skipped`).expect(200))
      .body;
    expect(skipped.items).toMatchObject([
      { position: 3, status: 'skipped', error: { code: 'MANIFEST_UNKNOWN' } },
    ]);
    await http().get(`/api/v1/deletions/${res.body.id}/items?status=gone`).expect(400);
    await http().get('/api/v1/deletions/00000000-0000-4000-8000-000000000000/items').expect(404);
  });

  it('records one completion however often a settled chunk job runs again (recovery, stalls)', async () => {
    const image = await pusher.pushImage('team-b/rerun', ['r1'], { seed: 'rerun' });
    const res = await http()
      .post('/api/v1/deletions')
      .send({ registry: 'main', items: [{ repository: 'team-b/rerun', reference: image.digest }] })
      .expect(202);
    expect((await settled(res.body.id)).status).toBe('succeeded');
    const processor = worker.get(DeletionProcessor);
    for (let i = 0; i < 2; i++)
      await processor.process({
        name: 'delete-chunk',
        data: { requestId: res.body.id, chunk: 0 },
        attemptsMade: 0,
        opts: { attempts: 12 },
      } as unknown as Job);
    const completions = await env.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1 AND action = 'deletion.completed'`,
      [res.body.id],
    );
    expect(completions).toEqual([{ n: 1 }]);
    expect((await http().get(`/api/v1/deletions/${res.body.id}`).expect(200)).body.status).toBe('succeeded');
  });

  it('gives every item of a chunk its outcome when the rate limit fails in Redis for one of them', async () => {
    const images = await Promise.all(
      ['q1', 'q2'].map((tag) => pusher.pushImage('team-e/rate', [tag], { seed: `rate-${tag}` })),
    );
    // One delete a second: the first item is admitted at once, the second waits about a second.
    await http()
      .post('/api/v1/registries')
      .send({ name: 'throttled', url: registry.url, deletes: { concurrency: 4, ratePerSecond: 1 } })
      .expect(201);
    const [{ id }] = await env.query<{ id: string }>(`SELECT id FROM registries WHERE name = 'throttled'`);
    const key = `${env.redisPrefix}:delete-rate:${id}`;
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const res = await http()
        .post('/api/v1/deletions')
        .send({
          registry: 'throttled',
          items: images.map((i) => ({ repository: 'team-e/rate', reference: i.digest })),
        })
        .expect(202);
      // Once the first item has been admitted, its counter becomes a value Redis cannot count on: the
      // second item's admission fails with a Redis error (while the first item's delete runs), until it
      // expires.
      const deadline = Date.now() + 10_000;
      while (!(await redis.exists(key))) {
        if (Date.now() > deadline) throw new Error('no delete was admitted');
        await new Promise((r) => setTimeout(r, 2));
      }
      await redis.set(key, 'not-a-counter', 'PX', 1500);

      const done = await settled(res.body.id);
      expect(done).toMatchObject({ status: 'succeeded', counts: { succeeded: 2 } });
      // Each image was deleted by its own DELETE: none was found already gone by a retry.
      expect(done.items!.map((i) => [i.status, i.alreadyGone, i.upstreamStatus])).toEqual([
        ['succeeded', false, 202],
        ['succeeded', false, 202],
      ]);
      expect(done.items!.map((i) => i.attempts)).toEqual([1, expect.any(Number)]);
      expect(done.items![1].attempts).toBeGreaterThan(1);
      const perItem = await env.query<{ action: string; position: string }>(
        `SELECT action, details->>'position' AS position FROM audit_events
          WHERE subject_id = $1 AND action LIKE 'deletion.item.%' ORDER BY seq`,
        [res.body.id],
      );
      expect(perItem.map((e) => [e.action, e.position]).sort()).toEqual([
        ['deletion.item.succeeded', '0'],
        ['deletion.item.succeeded', '1'],
      ]);
      expect(await tagsOf('team-e/rate')).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });
});
