import type { AddressInfo } from 'node:net';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { createClient, type Client } from 'graphql-ws';
import request from 'supertest';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditBatch } from '../src/audit/audit-event.js';
import {
  adminRequest,
  boundServiceAccount,
  bearer,
  TestEnvironment,
  TestGateway,
  startApi,
} from './support/gateway.js';
import { RegistryService } from './support/registry-service.js';

/*
 * GC runs looked up by id need what listing a registry's runs and starting one need: the permission on
 * the whole registry. A binding on some of its repositories reaches none of its runs (their output names
 * every repository and digest collected), over REST and GraphQL, and a refusal reads the same whether the
 * run exists or not.
 */

interface GqlError {
  message: string;
  extensions?: { code?: string; details?: Record<string, unknown>; requestId?: string };
}

describe('GC runs by id: a binding on the whole registry, not on some of its repositories', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let service: RegistryService;
  let wsUrl: string;
  const clients: Client[] = [];
  const tokens: Record<string, string> = {};
  /** A finished run of alpha with an output, and alpha's queued run (no worker here: it stays queued). */
  let finished: string;
  let queued: string;
  const missing = '00000000-0000-4000-8000-000000000000';
  const OUTPUT = 'team-b/secret: marking blob sha256:' + 'b'.repeat(64);

  async function principal(name: string, role: string, scope: { registry?: string; repository?: string }) {
    tokens[name] = (await boundServiceAccount(gw.server, name, role, scope)).token;
  }

  const as = (name: string) => ({
    get: (url: string) => request(gw.server).get(url).set(bearer(tokens[name])),
    post: (url: string) => request(gw.server).post(url).set(bearer(tokens[name])).send({}),
  });

  async function gql(name: string, query: string, variables: Record<string, unknown> = {}) {
    const res = await request(gw.server)
      .post('/graphql')
      .set(bearer(tokens[name]))
      .send({ query, variables })
      .expect(200);
    return res.body as { data?: Record<string, unknown> | null; errors?: GqlError[] };
  }

  const codes = (r: { errors?: GqlError[] }) => (r.errors ?? []).map((e) => e.extensions?.code);

  /** A subscription's first answer: its first value, or its errors. */
  function subscribeOnce(name: string, query: string, variables: Record<string, unknown>) {
    const c = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${tokens[name]}` },
      retryAttempts: 0,
      lazy: true,
    });
    clients.push(c);
    return new Promise<{ values: unknown[]; errors: GqlError[] }>((resolve) => {
      const got: { values: unknown[]; errors: GqlError[] } = { values: [], errors: [] };
      const stop = c.subscribe<Record<string, unknown>>(
        { query, variables },
        {
          next: (r) => {
            if (r.errors) got.errors.push(...(r.errors as GqlError[]));
            if (r.data) got.values.push(Object.values(r.data)[0]);
            stop();
            resolve(got);
          },
          error: (e) => {
            got.errors.push(...((Array.isArray(e) ? e : [{ message: String(e) }]) as GqlError[]));
            resolve(got);
          },
          complete: () => resolve(got),
        },
      );
    });
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('gc_access');
    service = await RegistryService.create({ logLevel: 'warn' });
    gw = await startApi(env, { RATE_LIMIT_AUTH_FAILURES: '0' });
    await new Promise<void>((resolve) => gw.server.listen(0, '127.0.0.1', resolve));
    wsUrl = `ws://127.0.0.1:${(gw.server.address() as AddressInfo).port}/graphql`;
    const admin = () => adminRequest(gw.server);
    await admin().post('/api/v1/registries').send({ name: 'alpha', url: service.url }).expect(201);
    await admin()
      .put('/api/v1/registries/alpha/gc-settings')
      .send({ executor: service.localExecutor, fence: 'readonly', graceSeconds: 0 })
      .expect(200);
    queued = (await admin().post('/api/v1/registries/alpha/gc').send({ dryRun: true }).expect(202)).body
      .id as string;
    [{ id: finished }] = await env.query<{ id: string }>(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, actor_id, dry_run, delete_untagged, fence,
         executor, status, phase, blobs_deleted, manifests_deleted, bytes_freed, output, finished_at)
       VALUES ('alpha', gen_random_uuid(), 'manual', 'service', 'ops', false, false, 'readonly', 'local',
         'succeeded', 'done', 1, 1, 100, $1, now()) RETURNING id`,
      [OUTPUT],
    );
    // An event about the finished run that names a repository the scoped binding covers, so the scoped
    // principals can reach AuditEvent.gcRun at all.
    await recordAuditBatch(gw.app.get(EventEmitter2), {
      events: [
        {
          action: 'gc.succeeded',
          actor: { type: 'service', id: 'ops' },
          outcome: 'success',
          registry: 'alpha',
          repository: 'team-a/api',
          subject: { type: 'gc_run', id: finished },
        },
      ],
    });
    await principal('operator-team-a', 'operator', { registry: 'alpha', repository: 'team-a/**' });
    await principal('auditor-team-a', 'auditor', { registry: 'alpha', repository: 'team-a/**' });
    await principal('operator-alpha', 'operator', { registry: 'alpha' });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    await gw?.close();
    await service?.cleanup();
    await env?.destroy();
  });

  it('REST: the run, its output and cancelling it are refused to a repository-scoped binding', async () => {
    for (const who of ['operator-team-a', 'auditor-team-a']) {
      // The list was already refused: the reads by id now agree with it.
      await as(who).get('/api/v1/gc-runs?registry=alpha').expect(403);
      for (const id of [finished, queued]) {
        const run = await as(who).get(`/api/v1/gc-runs/${id}`);
        expect(run.status, `${who} GET /gc-runs/:id`).toBe(403);
        expect(run.body.error).toMatchObject({ code: 'FORBIDDEN', details: { permission: 'gc:read' } });
        const output = await as(who).get(`/api/v1/gc-runs/${id}/output`);
        expect(output.status, `${who} GET /gc-runs/:id/output`).toBe(403);
        expect(output.text).not.toContain('team-b/secret');
        const waited = await as(who).get(`/api/v1/gc-runs/${id}?wait=1`);
        expect(waited.status).toBe(403);
      }
      const cancel = await as(who).post(`/api/v1/gc-runs/${queued}/cancel`);
      expect(cancel.status, `${who} POST /gc-runs/:id/cancel`).toBe(403);
      expect(cancel.body.error.details).toEqual({ permission: 'gc:run' });
    }
    const [{ status }] = await env.query<{ status: string }>('SELECT status FROM gc_runs WHERE id = $1', [
      queued,
    ]);
    expect(status).toBe('queued');

    // A refusal says nothing about the run: the same answer as for a run that does not exist.
    const strip = (b: { error: Record<string, unknown> }) => ({ ...b.error, requestId: undefined });
    const existing = await as('operator-team-a').get(`/api/v1/gc-runs/${finished}`).expect(403);
    const absent = await as('operator-team-a').get(`/api/v1/gc-runs/${missing}`).expect(403);
    expect(strip(existing.body)).toEqual(strip(absent.body));
    const outputOfAbsent = await as('operator-team-a').get(`/api/v1/gc-runs/${missing}/output`).expect(403);
    const outputOfExisting = await as('operator-team-a')
      .get(`/api/v1/gc-runs/${finished}/output`)
      .expect(403);
    expect(strip(outputOfExisting.body)).toEqual(strip(outputOfAbsent.body));
  });

  it('REST: a binding on the whole registry reads and cancels, as before', async () => {
    const run = await as('operator-alpha').get(`/api/v1/gc-runs/${finished}`).expect(200);
    expect(run.body).toMatchObject({ id: finished, registry: 'alpha', status: 'succeeded' });
    expect((await as('operator-alpha').get(`/api/v1/gc-runs/${finished}/output`).expect(200)).text).toBe(
      OUTPUT,
    );
    await as('operator-alpha').get('/api/v1/gc-runs?registry=alpha').expect(200);
    // A run that does not exist is 404 only for a global binding; a registry binding gets the 403.
    await as('operator-alpha').get(`/api/v1/gc-runs/${missing}`).expect(403);
    await adminRequest(gw.server).get(`/api/v1/gc-runs/${missing}`).expect(404);
  });

  it('GraphQL: gcRun, cancelGcRun, gcRunProgress, GcRun.output and AuditEvent.gcRun likewise', async () => {
    for (const who of ['operator-team-a', 'auditor-team-a']) {
      const one = await gql(who, `query($id: ID!) { gcRun(id: $id) { id registry output } }`, {
        id: finished,
      });
      expect(codes(one), `${who} gcRun`).toEqual(['FORBIDDEN']);
      expect(JSON.stringify(one)).not.toContain('team-b/secret');
      expect(one.errors![0].extensions!.details).toEqual({ permission: 'gc:read' });

      const listed = await gql(who, `{ gcRuns(registry: "alpha") { items { id output } } }`);
      expect(codes(listed)).toEqual(['FORBIDDEN']);

      const feed = await subscribeOnce(who, `subscription($id: ID!) { gcRunProgress(id: $id) { status } }`, {
        id: queued,
      });
      expect(feed.values, `${who} gcRunProgress`).toEqual([]);
      expect(feed.errors.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    }
    {
      const events = await gql(
        'auditor-team-a',
        `{ auditEvents(filter: { action: "gc.succeeded" }) { items { subject { id } gcRun { id output } } } }`,
      );
      expect(events.errors).toBeUndefined();
      const items = (events.data!.auditEvents as { items: { subject: { id: string }; gcRun: unknown }[] })
        .items;
      // The event itself is in the binding's scope; the run it is about is not.
      expect(items.map((i) => i.subject.id)).toEqual([finished]);
      expect(items[0].gcRun, 'AuditEvent.gcRun').toBeNull();
    }
    const cancel = await gql('operator-team-a', `mutation($id: ID!) { cancelGcRun(id: $id) { id status } }`, {
      id: queued,
    });
    expect(codes(cancel)).toEqual(['FORBIDDEN']);
    expect(cancel.errors![0].extensions!.details).toEqual({ permission: 'gc:run' });
    const absent = await gql('operator-team-a', `query($id: ID!) { gcRun(id: $id) { id } }`, { id: missing });
    const existing = await gql('operator-team-a', `query($id: ID!) { gcRun(id: $id) { id } }`, {
      id: finished,
    });
    // The same answer but for the request's own id: nothing tells a run that exists from one that does not.
    const { requestId: _absentId, ...absentExtensions } = absent.errors![0].extensions ?? {};
    const { requestId: _existingId, ...existingExtensions } = existing.errors![0].extensions ?? {};
    expect(absent.errors![0].message).toBe(existing.errors![0].message);
    expect(absentExtensions).toEqual(existingExtensions);
  });

  it('GraphQL: a binding on the whole registry reads the run with its output, and cancels', async () => {
    const one = await gql('operator-alpha', `query($id: ID!) { gcRun(id: $id) { id output } }`, {
      id: finished,
    });
    expect(one.errors).toBeUndefined();
    expect(one.data!.gcRun).toEqual({ id: finished, output: OUTPUT });
    const feed = await subscribeOnce(
      'operator-alpha',
      `subscription($id: ID!) { gcRunProgress(id: $id) { status } }`,
      { id: queued },
    );
    expect(feed.errors).toEqual([]);
    expect(feed.values).toEqual([{ status: 'queued' }]);
    const cancel = await gql('operator-alpha', `mutation($id: ID!) { cancelGcRun(id: $id) { id status } }`, {
      id: queued,
    });
    expect(cancel.errors).toBeUndefined();
    expect(cancel.data!.cancelGcRun).toEqual({ id: queued, status: 'cancelled' });
  });
});
