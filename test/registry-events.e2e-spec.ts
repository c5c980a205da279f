import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistriesService } from '../src/registries/registries.service.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher, PushedImage } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

const EVENTS_TYPE = 'application/vnd.docker.distribution.events.v1+json';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface AuditItem {
  seq: number;
  action: string;
  actor: { type: string; id: string | null; name: string | null };
  sourceIp: string | null;
  registry: string | null;
  repository: string | null;
  digest: string | null;
  tags: string[];
  outcome: string;
  subject: { type: string; id: string } | null;
  details: Record<string, unknown> | null;
}

describe('deletes made directly on a registry are audited through its notifications', () => {
  const token = randomBytes(32).toString('hex');
  const user = { username: 'ci', password: 'events-pass' };
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  let first: PushedImage;
  let second: PushedImage;
  const http = () => adminRequest(gw.server);

  /** The trail's events that came from registry notifications (registering a registry is audited too). */
  const audits = async (query: string): Promise<AuditItem[]> =>
    ((await http().get(`/api/v1/audit-events?${query}`).expect(200)).body.items as AuditItem[]).filter(
      (i) => i.subject?.type === 'registry_event',
    );
  const post = (name: string, body: unknown, auth: string | null = `Bearer ${token}`) => {
    const req = request(gw.server).post(`/api/v1/registries/${name}/events`).set('content-type', EVENTS_TYPE);
    if (auth !== null) req.set('authorization', auth);
    return req.send(typeof body === 'string' ? body : JSON.stringify(body));
  };
  const deleteEvent = (overrides: Record<string, unknown> = {}) => ({
    id: randomUUID(),
    timestamp: new Date().toISOString(),
    action: 'delete',
    target: { repository: 'team/app', digest: `sha256:${'c'.repeat(64)}` },
    request: {
      id: randomUUID(),
      addr: '192.0.2.10:40000',
      host: '127.0.0.1',
      method: 'DELETE',
      useragent: 'curl/8.5.0',
    },
    actor: {},
    source: { addr: 'registry:5000', instanceID: randomUUID() },
    ...overrides,
  });

  beforeAll(async () => {
    env = await TestEnvironment.create('registry_events');
    gw = await startApi(env);
    // The registry posts to the gateway, so it must listen on a real port.
    await gw.app.listen(0, '127.0.0.1');
    const { port } = gw.app.getHttpServer().address() as AddressInfo;
    registry = await RegistryProcess.start({
      basicAuth: user,
      notificationsUrl: `http://127.0.0.1:${port}/api/v1/registries/direct/events`,
      notificationsHeaders: { Authorization: [`Bearer ${token}`] },
    });
    // Registered before anything is pushed, so no delivery is refused and backed off.
    await http()
      .post('/api/v1/registries')
      .send({ name: 'direct', url: registry.url, auth: { type: 'basic', ...user }, eventsToken: token })
      .expect(201);
    const pusher = new ImagePusher(registry.url, user);
    first = await pusher.pushImage('team/app', ['one']);
    second = await pusher.pushImage('team/app', ['two']);
    await pusher.close();
  });

  afterAll(async () => {
    await registry?.cleanup();
    await gw?.close();
    await env?.destroy();
  });

  it('records a delete made with curl once, with who, where from and what, and skips the gateway’s own', async () => {
    // Through the gateway's own client (user agent registry-gateway): the deletions feature audits these.
    const { client } = await gw.app.get(RegistriesService).client('direct');
    await client.deleteManifest('team/app', first.digest);
    const direct = await fetch(`${registry.url}/v2/team/app/manifests/${second.digest}`, {
      method: 'DELETE',
      headers: {
        authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`,
        'user-agent': 'curl/8.5.0',
      },
    });
    expect(direct.status).toBe(202);

    // Distribution 2.8 reports a digest delete as the manifest's delete and then one delete per tag.
    let all: AuditItem[] = [];
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(100)) {
      all = await audits('registry=direct');
      if (all.length >= 2) break;
    }
    expect(all, `audit events missing; registry log:\n${await registry.logTail()}`).toHaveLength(2);
    const items = all.filter((i) => i.action === 'registry.manifest.deleted');
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      action: 'registry.manifest.deleted',
      actor: { type: 'user', id: 'ci', name: 'ci' },
      sourceIp: '127.0.0.1',
      registry: 'direct',
      repository: 'team/app',
      digest: second.digest,
      tags: [],
      outcome: 'success',
      subject: { type: 'registry_event', id: expect.any(String) },
      details: {
        eventId: items[0].subject!.id,
        registryRequestId: expect.any(String),
        timestamp: expect.any(String),
        useragent: 'curl/8.5.0',
        method: 'DELETE',
        sourceInstance: expect.any(String),
        observedVia: 'notification',
      },
    });
    const tagged = all.find((i) => i.action === 'registry.tag.deleted');
    expect(tagged).toMatchObject({
      actor: { type: 'user', id: 'ci', name: 'ci' },
      sourceIp: '127.0.0.1',
      repository: 'team/app',
      digest: null,
      tags: ['two'],
      details: { registryRequestId: items[0].details!.registryRequestId },
    });
    // The trail lists newest first and keeps the registry's order.
    expect(all.map((i) => i.action)).toEqual(['registry.tag.deleted', 'registry.manifest.deleted']);
    // The registry delivers in order, so the gateway's earlier delete (digest and tag "one") has been
    // received and skipped: nothing about it, and only the two direct events were remembered.
    expect(all.some((i) => i.digest === first.digest || i.tags.includes('one'))).toBe(false);
    const [row] = await env.query<{ n: string }>(
      'SELECT count(*) AS n FROM registry_events_seen WHERE registry = $1',
      ['direct'],
    );
    expect(Number(row.n)).toBe(2);

    // A redelivery of the same event (distribution retries until it sees a 2xx) adds nothing.
    const again = await post('direct', {
      events: [
        deleteEvent({
          id: items[0].subject!.id,
          target: { repository: 'team/app', digest: second.digest },
          request: { addr: '127.0.0.1:1234', method: 'DELETE', useragent: 'curl/8.5.0' },
          actor: { name: 'ci' },
        }),
      ],
    }).expect(200);
    expect(again.body).toEqual({ received: 1, audited: 0, duplicates: 1, ignored: 0 });
    expect(await audits('registry=direct')).toHaveLength(2);
  });

  it('sorts an envelope into audited, duplicate and ignored events', async () => {
    const tagDelete = deleteEvent({
      target: { repository: 'team/app', tag: 'old' },
      request: { addr: '[2001:db8::5]:4433', method: 'DELETE', useragent: 'skopeo/1.13' },
      actor: { name: 'alice' },
    });
    const res = await post('direct', {
      events: [
        { ...deleteEvent(), action: 'push' },
        { ...deleteEvent(), action: 'pull' },
        deleteEvent({ request: { addr: '127.0.0.1:1', method: 'DELETE', useragent: 'registry-gateway' } }),
        tagDelete,
        tagDelete,
      ],
    }).expect(200);
    expect(res.body).toEqual({ received: 5, audited: 1, duplicates: 1, ignored: 3 });
    const [item] = await audits('action=registry.tag.deleted');
    expect(item).toMatchObject({
      actor: { type: 'user', id: 'alice', name: 'alice' },
      sourceIp: '2001:db8::5',
      registry: 'direct',
      repository: 'team/app',
      digest: null,
      tags: ['old'],
      subject: { type: 'registry_event', id: tagDelete.id },
    });

    // Anonymous, with an address that is not an IP.
    const anonymous = deleteEvent({ request: { addr: 'somewhere', useragent: 'x' } });
    await post('direct', { events: [anonymous] }).expect(200);
    const [anon] = await audits(`subjectId=${anonymous.id}`);
    expect(anon).toMatchObject({ actor: { type: 'anonymous', id: null, name: null }, sourceIp: null });
  });

  it('records a delivery racing its own redelivery once', async () => {
    const event = deleteEvent();
    const results = await Promise.all([
      post('direct', { events: [event] }),
      post('direct', { events: [event] }),
    ]);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    expect(results.map((r) => r.body.audited).sort()).toEqual([0, 1]);
    expect(await audits(`subjectId=${event.id}`)).toHaveLength(1);
  });

  it('answers 401 with one message for a wrong, missing or unset token and an unknown registry', async () => {
    await http().post('/api/v1/registries').send({ name: 'tokenless', url: registry.url }).expect(201);
    const body = { events: [deleteEvent()] };
    const refused = [
      await post('direct', body, `Bearer ${token.slice(0, -1)}x`),
      await post('direct', body, null),
      await post('direct', body, `Basic ${token}`),
      await post('direct', body, 'Bearer '),
      await post('tokenless', body),
      await post('tokenless', body, 'Bearer '),
      await post('nobody-here', body),
      await post('Not_A_Name', body),
    ];
    for (const res of refused) {
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('UNAUTHENTICATED');
      expect(res.body.error.message).toBe(refused[0].body.error.message);
    }
    // Auth comes before the body: a bad body does not tell a stranger anything either.
    const garbage = await post('nobody-here', '{"events": ');
    expect(garbage.status).toBe(401);
    expect(await audits(`subjectId=${body.events[0].id}`)).toHaveLength(0);
  });

  it('refuses what is not a notification envelope with VALIDATION_FAILED', async () => {
    const valid = deleteEvent();
    const bad: unknown[] = [
      '{"events": ',
      '',
      {},
      { events: 'x' },
      [],
      { events: [null] },
      { events: [{ action: 'delete', target: { repository: 'team/app' } }] },
      { events: [deleteEvent({ target: { repository: '../etc', digest: `sha256:${'c'.repeat(64)}` } })] },
      { events: [deleteEvent({ target: { repository: 'team/app', digest: 'md5:abc' } })] },
      { events: [deleteEvent({ target: { repository: 'team/app', tag: 'a/b' } })] },
      { events: [deleteEvent({ request: 'x' })] },
      { events: [deleteEvent({ actor: { name: 7 } })] },
      { events: [valid, deleteEvent({ target: null })] },
      { events: Array.from({ length: 1001 }, () => ({ id: 'x', action: 'pull' })) },
    ];
    for (const body of bad) {
      const res = await post('direct', body);
      expect(res.status, JSON.stringify(body).slice(0, 200)).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.details.problems.length).toBeGreaterThan(0);
    }
    // A valid first event is not recorded when a later one in the same envelope is invalid.
    expect(await audits(`subjectId=${valid.id}`)).toHaveLength(0);
    const huge = await post('direct', { events: [deleteEvent({ padding: 'x'.repeat(1024 * 1024) })] });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    // Plain JSON works too.
    const plain = await http()
      .post('/api/v1/registries/direct/events')
      .set('authorization', `Bearer ${token}`)
      .send({ events: [] })
      .expect(200);
    expect(plain.body).toEqual({ received: 0, audited: 0, duplicates: 0, ignored: 0 });
  });

  it('keeps the audit chain intact and documents the endpoint', async () => {
    expect((await http().get('/api/v1/audit/verify').expect(200)).body).toMatchObject({ ok: true });
    const doc = (await http().get('/docs/openapi.json').expect(200)).body;
    const op = doc.paths['/api/v1/registries/{name}/events'].post;
    expect(Object.keys(op.requestBody.content)).toContain(EVENTS_TYPE);
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['200', '400', '401']));
  });
});
