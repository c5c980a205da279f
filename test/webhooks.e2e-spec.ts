import { randomBytes, randomUUID } from 'node:crypto';
import type { INestApplicationContext } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAudit } from '../src/audit/audit-event.js';
import { WebhookDeliveryProcessor } from '../src/webhooks/webhook-delivery.processor.js';
import { adminRequest, TestEnvironment, TestGateway, startApi, startWorker } from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';
import { WebhookReceiver } from './support/webhook-receiver.js';

const EVENTS_TYPE = 'application/vnd.docker.distribution.events.v1+json';
// Retries every 100-400 ms, dead after 8 attempts (about 2.5 s); loopback receivers allowed.
const CONFIG = {
  WEBHOOK_BACKOFF_MS: '100',
  WEBHOOK_BACKOFF_MAX_MS: '400',
  WEBHOOK_ATTEMPTS: '8',
  WEBHOOK_TIMEOUT_MS: '2000',
  WEBHOOK_SWEEP_EVERY_MS: '1000',
  WEBHOOK_ALLOWED_CIDRS: '127.0.0.0/8',
  DELETE_BACKOFF_MS: '100',
  DELETE_BACKOFF_MAX_MS: '500',
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Delivery {
  id: string;
  eventType: string;
  status: string;
  attemptCount: number;
  redeliveries: number;
  payload: { type: string; data: { subject: { id: string } } };
  attempts: {
    attempt: number;
    redelivery: number;
    statusCode: number | null;
    durationMs: number;
    responseBody: string | null;
    error: { code: string; message: string } | null;
    succeeded: boolean;
  }[];
}

describe('webhooks: subscriptions, signed deliveries, retries, ordering', () => {
  const eventsToken = randomBytes(32).toString('hex');
  let env: TestEnvironment;
  let gw: TestGateway;
  let worker: INestApplicationContext;
  let registry: RegistryProcess;
  let receiver: WebhookReceiver;
  const http = () => adminRequest(gw.server);

  /** A delete made directly on registry "main", as its notifications report it: one registry.* event. */
  async function registryDelete(repository: string, registryName = 'main'): Promise<string> {
    const id = randomUUID();
    await request(gw.server)
      .post(`/api/v1/registries/${registryName}/events`)
      .set('content-type', EVENTS_TYPE)
      .set('authorization', `Bearer ${eventsToken}`)
      .send(
        JSON.stringify({
          events: [
            {
              id,
              timestamp: new Date().toISOString(),
              action: 'delete',
              target: { repository, digest: `sha256:${randomBytes(32).toString('hex')}` },
              request: {
                id: randomUUID(),
                addr: '192.0.2.10:4000',
                method: 'DELETE',
                useragent: 'curl/8.5.0',
              },
              actor: { name: 'ci' },
            },
          ],
        }),
      )
      .expect(200);
    return id;
  }

  async function subscribe(body: Record<string, unknown>): Promise<{ id: string; secret: string }> {
    const res = await http().post('/api/v1/webhooks').send(body).expect(201);
    return { id: res.body.id, secret: res.body.secret };
  }

  const deliveries = async (webhook: string, query = ''): Promise<Delivery[]> =>
    (await http().get(`/api/v1/webhooks/${webhook}/deliveries?limit=200${query}`).expect(200)).body.items;
  const delivery = async (webhook: string, id: string): Promise<Delivery> =>
    (await http().get(`/api/v1/webhooks/${webhook}/deliveries/${id}`).expect(200)).body;
  const audits = (subjectId: string) =>
    env.query<{ action: string; actor_type: string; details: Record<string, unknown> }>(
      'SELECT action, actor_type, details FROM audit_events WHERE subject_id = $1 ORDER BY seq',
      [subjectId],
    );

  beforeAll(async () => {
    env = await TestEnvironment.create('webhooks');
    registry = await RegistryProcess.start();
    receiver = await WebhookReceiver.start();
    gw = await startApi(env, CONFIG);
    worker = await startWorker(env, CONFIG);
    await http()
      .post('/api/v1/registries')
      .send({ name: 'main', url: registry.url, eventsToken })
      .expect(201);
  }, 120_000);

  afterAll(async () => {
    await worker?.close();
    await gw?.close();
    await receiver?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('creates, reads, updates, rotates and deletes subscriptions; the secret is shown once and sealed at rest', async () => {
    const created = await http()
      .post('/api/v1/webhooks')
      .send({
        url: receiver.url('/crud?team=a'),
        eventTypes: ['deletion.*', 'gc.failed'],
        registry: 'main',
        repository: 'team-a/**',
        description: 'platform bridge',
      })
      .expect(201);
    const { id, secret } = created.body;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.body).toMatchObject({
      url: receiver.url('/crud?team=a'),
      eventTypes: ['deletion.*', 'gc.failed'],
      registry: 'main',
      repository: 'team-a/**',
      active: true,
      pendingDeliveries: 0,
      createdBy: { type: 'service', id: 'bootstrap-admin' },
    });
    const got = await http().get(`/api/v1/webhooks/${id}`).expect(200);
    expect(got.body).not.toHaveProperty('secret');
    const list = await http().get('/api/v1/webhooks').expect(200);
    expect(JSON.stringify(list.body)).not.toContain(secret);
    expect(list.body.items.map((w: { id: string }) => w.id)).toContain(id);
    const [row] = await env.query<{ secret_sealed: string }>(
      'SELECT secret_sealed FROM webhook_subscriptions WHERE id = $1',
      [id],
    );
    expect(row.secret_sealed).toMatch(/^v1\./);
    expect(row.secret_sealed).not.toContain(secret.slice(6, 20));

    const patched = await http()
      .patch(`/api/v1/webhooks/${id}`)
      .send({ eventTypes: ['registry.*'], repository: null, description: 'changed' })
      .expect(200);
    expect(patched.body).toMatchObject({
      eventTypes: ['registry.*'],
      repository: null,
      description: 'changed',
    });

    const rotated = await http().post(`/api/v1/webhooks/${id}/rotate-secret`).send({}).expect(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(secret);
    expect(Date.parse(rotated.body.previousSecretExpiresAt)).toBeGreaterThan(Date.now() + 23 * 3600_000);
    const given = `whsec_${randomBytes(24).toString('base64')}`;
    const rotatedAgain = await http()
      .post(`/api/v1/webhooks/${id}/rotate-secret`)
      .send({ secret: given, keepPreviousSeconds: 0 })
      .expect(200);
    expect(rotatedAgain.body).toMatchObject({ secret: given, previousSecretExpiresAt: null });

    await http().delete(`/api/v1/webhooks/${id}`).expect(204);
    const gone = await http().get(`/api/v1/webhooks/${id}`).expect(404);
    expect(gone.body.error.code).toBe('WEBHOOK_NOT_FOUND');

    const trail = await audits(id);
    expect(trail.map((a) => a.action)).toEqual([
      'webhook.created',
      'webhook.updated',
      'webhook.secret.rotated',
      'webhook.secret.rotated',
      'webhook.deleted',
    ]);
    expect(trail[0].details).toMatchObject({
      target: receiver.url('').replace(/\/$/, ''),
      eventTypes: ['deletion.*', 'gc.failed'],
      secretGenerated: true,
    });
    expect(trail[1].details).toMatchObject({ changed: ['eventTypes', 'repository', 'description'] });
    // Neither the secrets nor the URL's path and query (which often carry credentials) reach the trail.
    const text = JSON.stringify(trail);
    for (const s of [secret, rotated.body.secret, given, '/crud', 'team=a']) expect(text).not.toContain(s);
  });

  it('refuses bad URLs, event types, filters and secrets with stable codes', async () => {
    const codeOf = async (body: Record<string, unknown>) =>
      (await http().post('/api/v1/webhooks').send(body)).body.error?.code;
    const ok = { url: receiver.url('/v'), eventTypes: ['gc.*'] };
    expect(await codeOf({ ...ok, url: 'ftp://example.com/hook' })).toBe('WEBHOOK_URL_INVALID');
    expect(await codeOf({ ...ok, url: 'https://user:pw@example.com/hook' })).toBe('WEBHOOK_URL_INVALID');
    expect(await codeOf({ ...ok, url: 'example.com/hook' })).toBe('WEBHOOK_URL_INVALID');
    // 127.0.0.0/8 is allowed for these tests; everything else that is not public is not.
    expect(await codeOf({ ...ok, url: 'http://169.254.169.254/latest/meta-data/' })).toBe(
      'WEBHOOK_URL_FORBIDDEN',
    );
    expect(await codeOf({ ...ok, url: 'http://10.1.2.3/hook' })).toBe('WEBHOOK_URL_FORBIDDEN');
    expect(await codeOf({ ...ok, url: 'http://[fd00::1]/hook' })).toBe('WEBHOOK_URL_FORBIDDEN');
    expect(await codeOf({ ...ok, url: 'http://[::ffff:192.168.0.1]/hook' })).toBe('WEBHOOK_URL_FORBIDDEN');
    expect(await codeOf({ ...ok, url: 'http://[fe80::1]/hook' })).toBe('WEBHOOK_URL_FORBIDDEN');
    expect(await codeOf({ ...ok, eventTypes: ['deletion.exploded'] })).toBe('WEBHOOK_EVENT_TYPE_INVALID');
    expect(await codeOf({ ...ok, eventTypes: [] })).toBe('VALIDATION_FAILED');
    expect(await codeOf({ ...ok, repository: '/team-a' })).toBe('VALIDATION_FAILED');
    expect(await codeOf({ ...ok, registry: 'Not_A_Name' })).toBe('VALIDATION_FAILED');
    expect(await codeOf({ ...ok, secret: 'hunter2' })).toBe('WEBHOOK_SECRET_INVALID');
    expect(await codeOf({ url: receiver.url('/v') })).toBe('VALIDATION_FAILED');
    const patch = await http().patch(`/api/v1/webhooks/${randomUUID()}`).send({ description: 'x' });
    expect(patch.status).toBe(404);
    expect((await http().get('/api/v1/webhooks/not-a-uuid')).status).toBe(400);
    const none = await env.query('SELECT 1 FROM webhook_subscriptions WHERE url LIKE $1', ['%/v']);
    expect(none).toEqual([]);
  });

  it('delivers signed events to the subscriptions whose type, registry and repository filters match', async () => {
    const all = await subscribe({ url: receiver.url('/all'), eventTypes: ['registry.*'] });
    const teamA = await subscribe({
      url: receiver.url('/team-a'),
      eventTypes: ['registry.manifest.deleted'],
      registry: 'main',
      repository: 'team-a/**',
    });
    const tags = await subscribe({ url: receiver.url('/tags'), eventTypes: ['registry.tag.deleted'] });
    const other = await subscribe({ url: receiver.url('/other'), eventTypes: ['*'], registry: 'other' });
    const inactive = await subscribe({ url: receiver.url('/inactive'), eventTypes: ['*'], active: false });

    const a = await registryDelete('team-a/api');
    const b = await registryDelete('team-b/api');
    const c = await registryDelete('team-a/deep/nested');

    const fromAll = await until('all three events at /all', async () => {
      const got = receiver.verified('/all', all.secret);
      return got.length === 3 && got;
    });
    expect(fromAll.map((g) => g.payload.data.subject!.id)).toEqual([a, b, c]);
    expect(fromAll[0].payload).toMatchObject({
      type: 'registry.manifest.deleted',
      data: {
        auditAction: 'registry.manifest.deleted',
        registry: 'main',
        repository: 'team-a/api',
        actor: { type: 'user', id: 'ci' },
        outcome: 'success',
        details: { eventId: a, observedVia: 'notification' },
      },
    });
    expect(Date.parse(fromAll[0].payload.timestamp)).toBeGreaterThan(Date.now() - 60_000);
    const fromTeamA = await until('team-a events', async () => {
      const got = receiver.verified('/team-a', teamA.secret);
      return got.length === 2 && got;
    });
    expect(fromTeamA.map((g) => g.payload.data.repository)).toEqual(['team-a/api', 'team-a/deep/nested']);
    // A signature made with another subscription's secret does not verify.
    expect(() => receiver.verified('/team-a', all.secret)).toThrow();
    // Each delivery has its own webhook-id: the delivery's id.
    const ids = (await deliveries(all.id)).map((d) => d.id);
    expect(new Set(receiver.accepted('/all').map((r) => r.id))).toEqual(new Set(ids));
    await sleep(500);
    for (const path of ['/tags', '/other', '/inactive']) expect(receiver.at(path)).toEqual([]);
    for (const s of [tags, other, inactive]) expect(await deliveries(s.id)).toEqual([]);
  });

  it('a receiver that is down, then failing, then back gets every event exactly once and in order', async () => {
    const flaky = await WebhookReceiver.start();
    try {
      const sub = await subscribe({ url: flaky.url('/flaky'), eventTypes: ['registry.*'] });
      await flaky.stop(); // connection refused
      const sent: string[] = [];
      for (let i = 0; i < 6; i++) sent.push(await registryDelete(`flaky/app-${i}`));
      // Only the oldest delivery is ever tried while it fails.
      const head = async () => (await deliveries(sub.id)).find((d) => d.attemptCount > 0);
      await until('two refused attempts', async () => ((await head())?.attemptCount ?? 0) >= 2);
      flaky.respond('/flaky', 503);
      await flaky.resume();
      await until('two 503 answers', async () => flaky.at('/flaky').length >= 2);
      flaky.respond('/flaky', 200);

      const got = await until('all six accepted', async () => {
        const v = flaky.verified('/flaky', sub.secret);
        return v.length === 6 && v;
      });
      await sleep(500);
      // Exactly once by webhook-id, in the order the changes were made.
      expect(flaky.accepted('/flaky')).toHaveLength(6);
      expect(new Set(got.map((g) => g.id)).size).toBe(6);
      expect(got.map((g) => g.payload.data.subject!.id)).toEqual(sent);
      // Only the oldest was retried: the others waited behind it instead of overtaking it.
      const list = (await deliveries(sub.id)).reverse();
      expect(list.map((d) => d.status)).toEqual(Array(6).fill('succeeded'));
      expect(list.slice(1).map((d) => d.attemptCount)).toEqual([1, 1, 1, 1, 1]);
      const first = await delivery(sub.id, list[0].id);
      expect(first.attemptCount).toBeGreaterThanOrEqual(5);
      const codes = first.attempts.map((a) => a.error?.code ?? a.statusCode);
      expect(codes.slice(0, 2)).toEqual(['WEBHOOK_CONNECTION_FAILED', 'WEBHOOK_CONNECTION_FAILED']);
      expect(first.attempts.filter((a) => a.statusCode === 503).length).toBeGreaterThanOrEqual(2);
      expect(first.attempts.find((a) => a.statusCode === 503)).toMatchObject({
        succeeded: false,
        responseBody: 'answering 503',
        error: { code: 'WEBHOOK_HTTP_STATUS' },
      });
      expect(first.attempts.at(-1)).toMatchObject({ succeeded: true, statusCode: 200, error: null });
      // The webhook-id is the same on every attempt; the timestamp is the attempt's.
      const firstId = list[0].id;
      const tries = flaky.at('/flaky').filter((r) => r.id === firstId);
      expect(tries.length).toBe(first.attempts.filter((a) => a.statusCode !== null).length);
    } finally {
      await flaky.close();
    }
  });

  it('delivers concurrent changes in commit order (the audit trail’s), while the subscription changes', async () => {
    const sub = await subscribe({ url: receiver.url('/concurrent'), eventTypes: ['registry.*'] });
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => registryDelete(`concurrent/app-${i}`)),
      ...Array.from({ length: 8 }, (_, i) =>
        http()
          .patch(`/api/v1/webhooks/${sub.id}`)
          .send({ description: `edit ${i}` })
          .expect(200),
      ),
    ]);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const got = await until('twenty events', async () => {
      const v = receiver.verified('/concurrent', sub.secret);
      return v.length === 20 && v;
    });
    const trail = await env.query<{ subject_id: string }>(
      `SELECT subject_id FROM audit_events WHERE action = 'registry.manifest.deleted'
          AND repository LIKE 'concurrent/%' ORDER BY seq`,
    );
    expect(got.map((g) => g.payload.data.subject!.id)).toEqual(trail.map((t) => t.subject_id));
  });

  it('dead-letters a delivery after the last attempt, goes on with the next, and redelivers it on request', async () => {
    const sub = await subscribe({ url: receiver.url('/dead'), eventTypes: ['registry.*'] });
    // The receiver refuses the first delivery (503) until told otherwise, and takes any other one.
    receiver.respond('/dead', 503);
    const first = await registryDelete('dead/one');
    const [older] = await deliveries(sub.id);
    let refused = older.id;
    receiver.respond('/dead', (id) => (id === refused ? 503 : 200));
    const second = await registryDelete('dead/two');
    const dead = await until('the first delivery to be dead', async () => {
      const d = await delivery(sub.id, older.id);
      return d.status === 'dead' && d;
    });
    expect(dead.attemptCount).toBe(8);
    expect(dead.attempts.map((a) => a.statusCode)).toEqual(Array(8).fill(503));
    expect(dead.attempts.every((a) => a.durationMs >= 0 && a.redelivery === 0)).toBe(true);
    const view = (await http().get(`/api/v1/webhooks/${sub.id}`).expect(200)).body;
    expect(view.deadDeliveries).toBe(1);
    expect((await deliveries(sub.id, '&status=dead')).map((d) => d.id)).toEqual([older.id]);

    // The next one waited behind it and goes out once it is dead, at the first attempt.
    await until('the second event', async () => receiver.verified('/dead', sub.secret).length === 1);
    expect(receiver.verified('/dead', sub.secret)[0].payload.data.subject!.id).toBe(second);
    const lastRefusal = receiver
      .at('/dead')
      .filter((r) => r.id === older.id)
      .at(-1)!;
    expect(receiver.accepted('/dead')[0].at).toBeGreaterThanOrEqual(lastRefusal.at);
    expect((await deliveries(sub.id)).find((d) => d.id !== older.id)?.attemptCount).toBe(1);
    refused = '';

    const redelivered = await http()
      .post(`/api/v1/webhooks/${sub.id}/deliveries/${older.id}/redeliver`)
      .send({})
      .expect(202);
    expect(redelivered.body).toMatchObject({ id: older.id, redeliveries: 1 });
    const accepted = await until('the redelivery', async () => {
      const v = receiver.verified('/dead', sub.secret);
      return v.length === 2 && v;
    });
    expect(accepted[1]).toMatchObject({ id: older.id, payload: { data: { subject: { id: first } } } });
    const after = await until('the redelivery to be recorded', async () => {
      const d = await delivery(sub.id, older.id);
      return d.status === 'succeeded' && d;
    });
    expect(after).toMatchObject({ status: 'succeeded', attemptCount: 9, redeliveries: 1 });
    expect(after.attempts.at(-1)).toMatchObject({ attempt: 9, redelivery: 1, succeeded: true });
    expect((await audits(sub.id)).map((a) => a.action)).toEqual([
      'webhook.created',
      'webhook.delivery.redelivered',
    ]);
    const missing = await http().post(`/api/v1/webhooks/${sub.id}/deliveries/${randomUUID()}/redeliver`);
    expect(missing.body.error.code).toBe('WEBHOOK_DELIVERY_NOT_FOUND');
  });

  it('a new URL retries the oldest waiting delivery at once, however long its backoff', async () => {
    const sub = await subscribe({ url: receiver.url('/old-url'), eventTypes: ['registry.*'] });
    receiver.respond('/old-url', 503);
    const sent = await registryDelete('moving/app');
    await until('a failed attempt', async () => receiver.at('/old-url').length >= 1);
    // As if it had failed for hours: the next attempt is an hour away, and the job sleeps until then.
    await env.query(
      `UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE subscription_id = $1`,
      [sub.id],
    );
    await sleep(800);
    await http()
      .patch(`/api/v1/webhooks/${sub.id}`)
      .send({ url: receiver.url('/new-url') })
      .expect(200);
    const got = await until('the delivery at the new URL', async () => {
      const v = receiver.verified('/new-url', sub.secret);
      return v.length === 1 && v;
    });
    expect(got[0].payload.data.subject!.id).toBe(sent);
    const trail = await audits(sub.id);
    expect(trail.at(-1)).toMatchObject({ action: 'webhook.updated', details: { changed: ['url'] } });
  });

  it('410 Gone deactivates the subscription; activating it again sends what waited, in order', async () => {
    const sub = await subscribe({ url: receiver.url('/gone'), eventTypes: ['registry.*'] });
    // Both events are recorded while the subscription is active; then the receiver says it is gone.
    receiver.respond('/gone', 503);
    const sent = [await registryDelete('gone/one'), await registryDelete('gone/two')];
    receiver.respond('/gone', 410);
    const off = await until('deactivation', async () => {
      const v = (await http().get(`/api/v1/webhooks/${sub.id}`).expect(200)).body;
      return !v.active && v;
    });
    expect(off).toMatchObject({ active: false, deactivatedReason: 'gone', pendingDeliveries: 2 });
    const trail = await audits(sub.id);
    expect(trail.at(-1)).toMatchObject({
      action: 'webhook.deactivated',
      actor_type: 'system',
      details: { reason: 'gone' },
    });
    await sleep(600);
    // Nothing after the 410 (and only the oldest delivery was ever tried).
    expect(receiver.at('/gone').at(-1)!.status).toBe(410);
    expect(new Set(receiver.at('/gone').map((r) => r.id)).size).toBe(1);
    const tried = receiver.at('/gone').length;
    const redeliver = await http().post(
      `/api/v1/webhooks/${sub.id}/deliveries/${(await deliveries(sub.id))[0].id}/redeliver`,
    );
    expect(redeliver.status).toBe(409);
    expect(redeliver.body.error.code).toBe('WEBHOOK_INACTIVE');

    receiver.respond('/gone', 200);
    const on = await http().patch(`/api/v1/webhooks/${sub.id}`).send({ active: true }).expect(200);
    expect(on.body).toMatchObject({ active: true, deactivatedReason: null });
    const got = await until('both events', async () => {
      const v = receiver.verified('/gone', sub.secret);
      return v.length === 2 && v;
    });
    expect(got.map((g) => g.payload.data.subject!.id)).toEqual(sent);
    expect(receiver.at('/gone')).toHaveLength(tried + 2);
  });

  it('a real deletion through the API produces deletion.requested and deletion.completed deliveries', async () => {
    const pusher = new ImagePusher(registry.url);
    const image = await pusher.pushImage('team-a/del', ['v1', 'v1-alias'], { seed: 'webhook-deletion' });
    await pusher.close();
    const teamA = await subscribe({
      url: receiver.url('/deletions-a'),
      eventTypes: ['deletion.*'],
      registry: 'main',
      repository: 'team-a/**',
    });
    const teamB = await subscribe({
      url: receiver.url('/deletions-b'),
      eventTypes: ['deletion.*'],
      repository: 'team-b/**',
    });
    const failedOnly = await subscribe({
      url: receiver.url('/deletions-failed'),
      eventTypes: ['deletion.failed'],
    });

    const res = await http()
      .post('/api/v1/deletions')
      .send({
        registry: 'main',
        reason: 'webhook e2e',
        items: [{ repository: 'team-a/del', reference: 'v1' }],
      });
    expect([201, 202]).toContain(res.status);
    const got = await until('deletion.requested and deletion.completed', async () => {
      const v = receiver.verified('/deletions-a', teamA.secret);
      return v.length === 2 && v;
    });
    expect(got.map((g) => g.payload.type)).toEqual(['deletion.requested', 'deletion.completed']);
    expect(got[0].payload.data).toMatchObject({
      subject: { type: 'deletion_request', id: res.body.id },
      registry: 'main',
      actor: { type: 'service', id: 'bootstrap-admin' },
      details: { reason: 'webhook e2e', items: 1, repositories: ['team-a/del'] },
    });
    expect(got[1].payload.data).toMatchObject({
      auditAction: 'deletion.completed',
      subject: { type: 'deletion_request', id: res.body.id },
      outcome: 'success',
      details: { status: 'succeeded', counts: { succeeded: 1 } },
    });
    const upstream = await fetch(`${registry.url}/v2/team-a/del/manifests/${image.digest}`, {
      method: 'HEAD',
    });
    expect(upstream.status).toBe(404);
    await sleep(500);
    expect(receiver.at('/deletions-b')).toEqual([]);
    expect(receiver.at('/deletions-failed')).toEqual([]);
    expect(await deliveries(teamB.id)).toEqual([]);
    expect(await deliveries(failedOnly.id)).toEqual([]);
  });

  it('writes deliveries in the transaction of the change: none for a rollback', async () => {
    const sub = await subscribe({ url: receiver.url('/tx'), eventTypes: ['gc.*'] });
    const ds = gw.app.get(DataSource);
    const events = gw.app.get(EventEmitter2);
    const event = (id: string) => ({
      action: 'gc.started',
      actor: { type: 'system' as const, id: 'registry-gateway' },
      registry: 'main',
      outcome: 'pending' as const,
      subject: { type: 'gc_run', id },
      details: { dryRun: true },
    });
    const rolledBack = randomUUID();
    await expect(
      ds.transaction(async (m) => {
        await recordAudit(events, { ...event(rolledBack), manager: m });
        throw new Error('the change fails after its event');
      }),
    ).rejects.toThrow('the change fails');
    const committed = randomUUID();
    await ds.transaction(async (m) => {
      await recordAudit(events, { ...event(committed), manager: m });
    });
    const got = await until('the committed event', async () => {
      const v = receiver.verified('/tx', sub.secret);
      return v.length === 1 && v;
    });
    expect(got[0].payload).toMatchObject({ type: 'gc.started', data: { subject: { id: committed } } });
    const rows = await env.query('SELECT data FROM webhook_deliveries WHERE subscription_id = $1', [sub.id]);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(rolledBack);
  });

  it('the sweep sends deliveries whose job never reached the queue', async () => {
    const sub = await subscribe({ url: receiver.url('/sweep'), eventTypes: ['gc.*'] });
    // Committed by "another process" that died before queueing anything: no job exists for it.
    await env.query(
      `INSERT INTO webhook_deliveries (subscription_id, event_type, dedupe_key, occurred_at, data, registry)
       VALUES ($1, 'gc.succeeded', $2, now(), '{"registry": "main", "details": {"note": "left by a crash"}}', 'main')`,
      [sub.id, `gc.succeeded:gc_run:${randomUUID()}`],
    );
    const got = await until(
      'the swept delivery',
      async () => {
        const v = receiver.verified('/sweep', sub.secret);
        return v.length === 1 && v;
      },
      10_000,
    );
    expect(got[0].payload).toMatchObject({
      type: 'gc.succeeded',
      data: { details: { note: 'left by a crash' } },
    });
  });

  it('the sweep forgets finished deliveries and registry notification ids once they are old', async () => {
    const sub = await subscribe({ url: receiver.url('/old'), eventTypes: ['gc.failed'] });
    const delivery = (status: string, daysOld: number) =>
      env.query<{ id: string }>(
        `INSERT INTO webhook_deliveries (subscription_id, event_type, dedupe_key, occurred_at, data, registry, status, created_at)
         VALUES ($1, 'gc.failed', $2, now(), '{}', 'main', $3, now() - make_interval(days => $4)) RETURNING id`,
        [sub.id, `gc.failed:gc_run:${randomUUID()}`, status, daysOld],
      );
    const [oldDone] = await delivery('succeeded', 31);
    const [oldDead] = await delivery('dead', 40);
    const [recentDone] = await delivery('succeeded', 2);
    // Pending ones are kept at any age: their job may be waiting out a long backoff.
    const [oldPending] = await delivery('pending', 40);
    const seen = (id: string, daysOld: number) =>
      env.query(
        `INSERT INTO registry_events_seen (registry, event_id, received_at) VALUES ('main', $1, now() - make_interval(days => $2))`,
        [id, daysOld],
      );
    const [oldEvent, recentEvent] = [`old-${randomUUID()}`, `recent-${randomUUID()}`];
    await seen(oldEvent, 31);
    await seen(recentEvent, 29);

    const swept = await worker.get(WebhookDeliveryProcessor).sweep();
    expect(swept.deleted).toBeGreaterThanOrEqual(2);
    expect(swept.forgotten).toBeGreaterThanOrEqual(1);
    const left = await env.query<{ id: string }>(
      'SELECT id FROM webhook_deliveries WHERE subscription_id = $1',
      [sub.id],
    );
    const kept = left.map((r) => r.id);
    expect(kept).toEqual(expect.arrayContaining([recentDone.id, oldPending.id]));
    expect(kept).not.toContain(oldDone.id);
    expect(kept).not.toContain(oldDead.id);
    const ids = await env.query<{ event_id: string }>(
      'SELECT event_id FROM registry_events_seen WHERE event_id = ANY($1)',
      [[oldEvent, recentEvent]],
    );
    expect(ids.map((r) => r.event_id)).toEqual([recentEvent]);
  });

  it('checks the target address again at delivery time', async () => {
    const sub = await subscribe({ url: receiver.url('/moved'), eventTypes: ['registry.*'] });
    // As if the URL had been saved when its name resolved elsewhere: the delivery must still refuse it.
    await env.query(`UPDATE webhook_subscriptions SET url = 'http://169.254.169.254/latest' WHERE id = $1`, [
      sub.id,
    ]);
    await registryDelete('moved/app');
    const [d] = await deliveries(sub.id);
    const refused = await until('a refused attempt', async () => {
      const v = await delivery(sub.id, d.id);
      return v.attempts.length > 0 && v;
    });
    expect(refused.attempts[0]).toMatchObject({
      succeeded: false,
      statusCode: null,
      error: { code: 'WEBHOOK_TARGET_FORBIDDEN' },
    });
    expect(refused.attempts[0].error!.message).toContain('metadata');
    await http().delete(`/api/v1/webhooks/${sub.id}`).expect(204);
  });

  it('GraphQL: subscribe, list, read deliveries with attempts, redeliver, delete', async () => {
    const gql = async <T = Record<string, unknown>>(
      query: string,
      variables: Record<string, unknown> = {},
    ) => {
      // Apollo answers 400 to a document that does not validate.
      const res = await http().post('/graphql').send({ query, variables });
      return res.body as { data: T; errors?: { extensions: { code: string } }[] };
    };
    const created = await gql<{ createWebhook: { id: string; secret: string } }>(
      `mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id secret eventTypes active } }`,
      { input: { url: receiver.url('/gql'), eventTypes: ['registry.tag.deleted', 'registry.manifest.*'] } },
    );
    expect(created.errors).toBeUndefined();
    const { id, secret } = created.data.createWebhook;
    expect(secret).toMatch(/^whsec_/);
    // The subscription type has no secret field at all.
    const leak = await gql(`query { webhooks { id secret } }`);
    expect(leak.errors?.[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const listed = await gql<{ webhooks: { id: string }[] }>(
      `query { webhooks { id url eventTypes pendingDeliveries } }`,
    );
    expect(listed.data.webhooks.map((w) => w.id)).toContain(id);

    const eventId = await registryDelete('gql/app');
    await until(
      'the GraphQL subscription’s delivery',
      async () => receiver.verified('/gql', secret).length === 1,
    );
    const page = await gql<{ webhookDeliveries: { items: { id: string }[] } }>(
      `query($id: ID!) { webhookDeliveries(webhookId: $id, status: succeeded) { items { id eventType status attemptCount } nextCursor } }`,
      { id },
    );
    expect(page.errors).toBeUndefined();
    const [item] = page.data.webhookDeliveries.items;
    expect(item).toMatchObject({
      eventType: 'registry.manifest.deleted',
      status: 'succeeded',
      attemptCount: 1,
    });
    const detail = await gql<{ webhookDelivery: { payload: unknown; attempts: unknown[] } }>(
      `query($id: ID!, $d: ID!) { webhookDelivery(webhookId: $id, deliveryId: $d) { id payload attempts { attempt statusCode succeeded durationMs } } }`,
      { id, d: item.id },
    );
    expect(detail.data.webhookDelivery.payload).toMatchObject({
      type: 'registry.manifest.deleted',
      data: { subject: { id: eventId } },
    });
    expect(detail.data.webhookDelivery.attempts).toEqual([
      expect.objectContaining({ attempt: 1, statusCode: 200, succeeded: true }),
    ]);
    const again = await gql<{ redeliverWebhookDelivery: unknown }>(
      `mutation($id: ID!, $d: ID!) { redeliverWebhookDelivery(webhookId: $id, deliveryId: $d) { id redeliveries } }`,
      { id, d: item.id },
    );
    expect(again.data.redeliverWebhookDelivery).toEqual({ id: item.id, redeliveries: 1 });
    await until('the redelivery', async () => receiver.verified('/gql', secret).length === 2);
    const rotated = await gql<{ rotateWebhookSecret: { secret: string } }>(
      `mutation($id: ID!) { rotateWebhookSecret(id: $id, input: { keepPreviousSeconds: 0 }) { secret previousSecretExpiresAt } }`,
      { id },
    );
    expect(rotated.data.rotateWebhookSecret.secret).not.toBe(secret);
    const bad = await gql(
      `mutation { createWebhook(input: { url: "http://10.0.0.1/", eventTypes: ["gc.*"] }) { id } }`,
    );
    expect(bad.errors?.[0].extensions.code).toBe('WEBHOOK_URL_FORBIDDEN');
    expect(
      (await gql<{ deleteWebhook: boolean }>(`mutation($id: ID!) { deleteWebhook(id: $id) }`, { id })).data
        .deleteWebhook,
    ).toBe(true);
    const missing = await gql(`query($id: ID!) { webhook(id: $id) { id } }`, { id });
    expect(missing.errors?.[0].extensions.code).toBe('WEBHOOK_NOT_FOUND');
  });
});
