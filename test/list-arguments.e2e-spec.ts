import { randomUUID } from 'node:crypto';
import { EventEmitter2 } from '@nestjs/event-emitter';
import request from 'supertest';
import { Logger } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditableEvent, recordAuditBatch } from '../src/audit/audit-event.js';
import { encodeCursor } from '../src/common/cursor.js';
import { isGlob } from '../src/common/glob-sql.js';
import { StoredGlobsCheck } from '../src/common/stored-globs.check.js';
import { adminRequest, testConfig, TestEnvironment, TestGateway, startApi } from './support/gateway.js';

/*
 * What every list takes besides its limit, alike everywhere: a page cursor continues only the list, the
 * filter, the order (and the parent) it came from; one repository glob check for bindings, webhook
 * subscriptions, filters and the catalog; a backwards time range is refused, as by reclaimedSpace.
 */

interface GqlError {
  message: string;
  extensions?: { code?: string; details?: Record<string, unknown> };
}
interface GqlResult<T> {
  data?: T;
  errors?: GqlError[];
}
interface Page {
  items: Record<string, unknown>[];
  nextCursor: string | null;
}

describe('list arguments', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  const http = () => adminRequest(gw.server);
  const deletionIds: string[] = [];
  const webhookIds: string[] = [];

  async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<GqlResult<T>> {
    return (await http().post('/graphql').send({ query, variables })).body as GqlResult<T>;
  }

  /** The one error of a GraphQL answer, or the REST error body, as {code, message, field}. */
  const gqlError = (r: GqlResult<unknown>) => {
    expect(r.errors, JSON.stringify(r.data)).toHaveLength(1);
    const e = r.errors![0];
    return { code: e.extensions?.code, message: e.message, field: e.extensions?.details?.field };
  };
  const restError = (res: request.Response) => {
    const e = res.body.error as { code: string; message: string; details?: { field?: string } };
    return { status: res.status, code: e?.code, message: e?.message, field: e?.details?.field };
  };

  /** `$c: String` and `$f: <filter>` declared when `args` uses them (GraphQL refuses unused variables). */
  const declared = (args: string, filter: string) =>
    [args.includes('$c') ? '$c: String' : '', args.includes('$f') ? `$f: ${filter}` : '']
      .filter(Boolean)
      .join(', ');
  const auditPage = (args: string, variables: Record<string, unknown> = {}) => {
    const vars = declared(args, 'AuditEventFilter');
    return gql<{ auditEvents: Page }>(
      `query${vars ? `(${vars})` : ''} { auditEvents(${args}) { items { seq registry } nextCursor } }`,
      variables,
    );
  };
  const itemsPage = (id: string, args: string, cursor?: string) =>
    gql<{ deletion: { items: Page } }>(
      `query($id: ID!${cursor ? ', $c: String' : ''}) {
         deletion(id: $id) { items(${args}) { items { position } nextCursor } } }`,
      cursor ? { id, c: cursor } : { id },
    );

  async function storedDeletion(registry: string, items: { repository: string; status: string }[]) {
    const id = randomUUID();
    await env.query(
      `INSERT INTO deletion_requests (id, registry, registry_id, status, dry_run, actor_type, actor_id, actor_name,
         item_count, estimated_bytes, finished_at)
       VALUES ($1, $2, gen_random_uuid(), 'partially_failed', false, 'service', 'ci', 'fixture', $3, 0, now())`,
      [id, registry, items.length],
    );
    for (const [position, item] of items.entries())
      await env.query(
        `INSERT INTO deletion_items (request_id, position, chunk, repository, reference, kind, digest, tags, status)
         VALUES ($1, $2, 0, $3, $4, 'manifest', $5, '{}', $6)`,
        [
          id,
          position,
          item.repository,
          `v${position}`,
          `sha256:${String(position).padStart(64, '0')}`,
          item.status,
        ],
      );
    deletionIds.push(id);
    return id;
  }

  async function storedGcRun(registry: string) {
    await env.query(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, actor_id, dry_run, delete_untagged, fence,
         executor, status, phase, finished_at)
       VALUES ($1, gen_random_uuid(), 'manual', 'service', 'ops', false, false, 'gateway', 'local', 'succeeded',
         'done', now())`,
      [registry],
    );
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('list_arguments');
    // Loopback webhook targets are allowed; no worker runs, so deliveries stay pending.
    gw = await startApi(env, { WEBHOOK_ALLOWED_CIDRS: '127.0.0.0/8' });
    for (const registry of ['alpha', 'alpha', 'alpha', 'demo', 'demo', 'demo']) {
      await storedDeletion(registry, [
        { repository: 'team-a/api', status: 'failed' },
        { repository: 'team-a/web', status: 'succeeded' },
        { repository: 'team-a/db', status: 'failed' },
      ]);
      await storedGcRun(registry);
    }
    for (const name of ['one', 'two'])
      webhookIds.push(
        (
          await http()
            .post('/api/v1/webhooks')
            .send({ url: `http://127.0.0.1:9/${name}`, eventTypes: ['gc.*'] })
            .expect(201)
        ).body.id as string,
      );
    const event = (registry: string): Omit<AuditableEvent, 'manager'> => ({
      action: 'gc.succeeded',
      actor: { type: 'system', id: null, name: 'worker' },
      outcome: 'success',
      registry,
      subject: { type: 'gc_run', id: randomUUID() },
    });
    await recordAuditBatch(gw.app.get(EventEmitter2), {
      events: ['alpha', 'demo', 'alpha', 'demo', 'alpha', 'demo'].map(event),
    });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await env?.destroy();
  });

  describe('a page cursor continues only the list, filter and order it came from', () => {
    it('auditEvents: an unfiltered cursor is refused by a filtered list; its own list goes on', async () => {
      const first = await auditPage('limit: 2');
      const cursor = first.data!.auditEvents.nextCursor!;
      expect(cursor).toEqual(expect.any(String));
      const filtered = gqlError(await auditPage('filter: { registry: "demo" }, cursor: $c', { c: cursor }));
      expect(filtered).toMatchObject({ code: 'VALIDATION_FAILED', field: 'cursor' });
      expect(filtered.message).toMatch(/another filter/);
      // The same list goes on, also when the filter's unset fields are given as null.
      const next = await auditPage('filter: $f, cursor: $c', { c: cursor, f: { registry: null } });
      expect(next.errors).toBeUndefined();
      expect(next.data!.auditEvents.items[0].seq).toBeLessThan(
        first.data!.auditEvents.items[1].seq as number,
      );

      // REST alike, and a REST cursor continues the same list over GraphQL.
      const rest = (await http().get('/api/v1/audit-events?limit=2&registry=alpha').expect(200)).body as Page;
      expect(
        restError(await http().get(`/api/v1/audit-events?registry=demo&cursor=${rest.nextCursor}`)),
      ).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
      expect(restError(await http().get(`/api/v1/audit-events?cursor=${rest.nextCursor}`))).toMatchObject({
        status: 400,
        code: 'VALIDATION_FAILED',
        field: 'cursor',
      });
      const over = await auditPage('filter: { registry: "alpha" }, cursor: $c', { c: rest.nextCursor });
      expect(over.errors).toBeUndefined();
      expect(over.data!.auditEvents.items.map((e) => e.registry)).toEqual(['alpha']);
    });

    it('a deletion’s items cursor is not an audit cursor, whatever the sort', async () => {
      const items = await itemsPage(deletionIds[0], 'limit: 1');
      const cursor = items.data!.deletion.items.nextCursor!;
      for (const sort of ['asc', 'desc']) {
        const e = gqlError(await auditPage(`sort: ${sort}, cursor: $c`, { c: cursor }));
        expect(e, sort).toMatchObject({ code: 'VALIDATION_FAILED', field: 'cursor' });
        expect(e.message, sort).toMatch(/another list/);
        expect(e.message, sort).not.toMatch(/sorted the other way/);
      }
      // The list's own cursor in the other order is told apart from a foreign one.
      const desc = await auditPage('sort: desc, limit: 1');
      const wrongWay = gqlError(
        await auditPage('sort: asc, cursor: $c', { c: desc.data!.auditEvents.nextCursor }),
      );
      expect(wrongWay).toMatchObject({ code: 'VALIDATION_FAILED', field: 'cursor' });
      expect(wrongWay.message).toMatch(/sorted the other way/);
    });

    it('a deletion’s items cursor continues only that deletion, with the same status filter', async () => {
      const [a, b] = deletionIds;
      const cursor = (await itemsPage(a, 'limit: 1')).data!.deletion.items.nextCursor!;
      expect((await itemsPage(a, 'limit: 1, cursor: $c', cursor)).data!.deletion.items.items).toEqual([
        { position: 1 },
      ]);
      const other = gqlError(await itemsPage(b, 'limit: 1, cursor: $c', cursor));
      expect(other).toMatchObject({ code: 'VALIDATION_FAILED', field: 'cursor' });
      expect(other.message).toMatch(/another deletion request/);
      expect(gqlError(await itemsPage(a, 'limit: 1, status: failed, cursor: $c', cursor))).toMatchObject({
        code: 'VALIDATION_FAILED',
        field: 'cursor',
      });
      // REST alike.
      const rest = (await http().get(`/api/v1/deletions/${a}/items?limit=1`).expect(200)).body as Page;
      expect(
        restError(await http().get(`/api/v1/deletions/${b}/items?limit=1&cursor=${rest.nextCursor}`)),
      ).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
      await http().get(`/api/v1/deletions/${a}/items?limit=1&cursor=${rest.nextCursor}`).expect(200);
      // A field's own arguments answer with their codes, as a root field's do.
      expect(gqlError(await itemsPage(a, 'limit: 0'))).toMatchObject({
        code: 'VALIDATION_FAILED',
        field: 'limit',
      });
      // Loaded in one batch, the foreign cursor fails its own field only.
      const both = await gql(
        `query($a: ID!, $b: ID!, $c: String) {
           x: deletion(id: $a) { items(limit: 1, cursor: $c) { items { position } } }
           y: deletion(id: $b) { items(limit: 1, cursor: $c) { items { position } } } }`,
        { a, b, c: cursor },
      );
      expect(
        (both.errors as (GqlError & { path: string[] })[]).map((e) => [e.path, e.extensions?.code]),
      ).toEqual([[['y', 'items'], 'VALIDATION_FAILED']]);
    });

    it('one webhook subscription’s delivery cursor is refused by another’s deliveries', async () => {
      const [one, two] = webhookIds;
      const page = (await http().get(`/api/v1/webhooks/${one}/deliveries?limit=1`).expect(200)).body as Page;
      expect(page.nextCursor).toEqual(expect.any(String));
      await http().get(`/api/v1/webhooks/${one}/deliveries?limit=1&cursor=${page.nextCursor}`).expect(200);
      const refused = restError(
        await http().get(`/api/v1/webhooks/${two}/deliveries?limit=1&cursor=${page.nextCursor}`),
      );
      expect(refused).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
      expect(refused.message).toMatch(/another webhook subscription/);
      expect(
        restError(
          await http().get(`/api/v1/webhooks/${one}/deliveries?status=dead&cursor=${page.nextCursor}`),
        ),
      ).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
      const gqlRefused = await gql(
        'query($id: ID!, $c: String) { webhookDeliveries(webhookId: $id, cursor: $c) { nextCursor } }',
        { id: two, c: page.nextCursor },
      );
      expect(gqlError(gqlRefused)).toMatchObject({ code: 'VALIDATION_FAILED', field: 'cursor' });
    });

    it('deletions, GC runs and role bindings refuse a cursor of another filter or list', async () => {
      const deletions = (await http().get('/api/v1/deletions?registry=alpha&limit=1').expect(200))
        .body as Page;
      for (const url of [
        `/api/v1/deletions?registry=demo&limit=1&cursor=${deletions.nextCursor}`,
        `/api/v1/gc-runs?registry=alpha&limit=1&cursor=${deletions.nextCursor}`,
      ])
        expect(restError(await http().get(url)), url).toMatchObject({ status: 400, field: 'cursor' });
      // The REST list and GraphQL's deletions are one list: newest first, same filter.
      const graphql = await gql<{ deletions: Page }>(
        'query($c: String) { deletions(filter: { registry: "alpha" }, limit: 1, cursor: $c) { items { id } } }',
        { c: deletions.nextCursor },
      );
      expect(graphql.errors).toBeUndefined();
      expect(graphql.data!.deletions.items).toEqual([{ id: deletionIds[1] }]);

      const runs = (await http().get('/api/v1/gc-runs?registry=alpha&limit=1').expect(200)).body as Page;
      await http().get(`/api/v1/gc-runs?registry=alpha&limit=1&cursor=${runs.nextCursor}`).expect(200);
      expect(
        restError(await http().get(`/api/v1/gc-runs?registry=demo&limit=1&cursor=${runs.nextCursor}`)),
      ).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });

      for (const registry of ['alpha', 'demo', 'demo'])
        await http()
          .post('/api/v1/role-bindings')
          .send({ subject: { type: 'group', id: `g-${randomUUID()}` }, role: 'viewer', registry })
          .expect(201);
      const bindings = (await http().get('/api/v1/role-bindings?role=viewer&limit=1').expect(200))
        .body as Page;
      await http().get(`/api/v1/role-bindings?role=viewer&limit=1&cursor=${bindings.nextCursor}`).expect(200);
      expect(
        restError(
          await http().get(`/api/v1/role-bindings?registry=demo&limit=1&cursor=${bindings.nextCursor}`),
        ),
      ).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
    });

    it('refuses cursors handed out before cursors named their list, but the service accounts’ own', async () => {
      const old = encodeCursor({ before: 1_000_000 });
      for (const res of [
        await http().get(`/api/v1/audit-events?cursor=${old}`),
        await http().get(`/api/v1/deletions/${deletionIds[0]}/items?cursor=${encodeCursor({ after: 0 })}`),
      ]) {
        expect(restError(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', field: 'cursor' });
        expect(restError(res).message).toMatch(/earlier version .* first page/);
      }
      for (const name of ['sa-a', 'sa-b', 'sa-c'])
        await http().post('/api/v1/service-accounts').send({ name }).expect(201);
      const legacy = (
        await http()
          .get(`/api/v1/service-accounts?cursor=${encodeCursor({ name: 'sa-a' })}`)
          .expect(200)
      ).body as Page;
      expect(legacy.items.map((a) => a.name)).toEqual(['sa-b', 'sa-c']);
    });
  });

  describe('one repository glob check', () => {
    /** A viewer binding of group `group` on `glob` in alpha; a webhook subscription on `glob`. */
    const bindGlob = (glob: string, group = 'globs') =>
      http()
        .post('/api/v1/role-bindings')
        .send({ subject: { type: 'group', id: group }, role: 'viewer', registry: 'alpha', repository: glob });
    const subscribeGlob = (glob: string, path = 'glob') =>
      http()
        .post('/api/v1/webhooks')
        .send({ url: `http://127.0.0.1:9/${path}`, eventTypes: ['gc.*'], repository: glob });

    const BAD = ['team-[a/**', 'team-{a/**', 'team-a//x', 'team-a/(x|y)', 'Team-A/**'];

    it('refuses the same strings with the same message in bindings, webhooks, filters and the catalog', async () => {
      for (const glob of BAD) {
        const answers = {
          binding: restError(await bindGlob(glob)),
          webhook: restError(await subscribeGlob(glob)),
          webhookPatch: restError(
            await http().patch(`/api/v1/webhooks/${webhookIds[0]}`).send({ repository: glob }),
          ),
          audit: restError(await http().get('/api/v1/audit-events').query({ repository: glob })),
          auditExport: restError(
            await http().get('/api/v1/audit-events').query({ repository: glob, format: 'csv' }),
          ),
          deletions: restError(await http().get('/api/v1/deletions').query({ repository: glob })),
          // The catalog's q is a substring unless it has glob characters.
          ...(isGlob(glob)
            ? {
                catalog: restError(
                  await http().get('/api/v1/registries/alpha/repositories').query({ q: glob }),
                ),
              }
            : {}),
        };
        const graphql = {
          auditEvents: gqlError(await auditPage('filter: $f', { f: { repository: glob } })),
          deletions: gqlError(
            await gql('query($f: DeletionFilter) { deletions(filter: $f) { nextCursor } }', {
              f: { repository: glob },
            }),
          ),
        };
        const all = { ...answers, ...graphql };
        for (const [where, e] of Object.entries(all))
          expect(e, `${glob} in ${where}`).toMatchObject({ code: 'VALIDATION_FAILED' });
        // One message: `<field>: <problem>`, the catalog's field being q.
        const problems = new Set(Object.values(all).map((e) => e.message.replace(/^(repository|q): /, '')));
        expect([...problems], glob).toHaveLength(1);
        expect(answers.binding.message, glob).toMatch(/^repository: /);
      }
      const stored = await env.query(
        `SELECT repository FROM role_bindings WHERE repository = ANY($1)
         UNION ALL SELECT repository FROM webhook_subscriptions WHERE repository = ANY($1)`,
        [BAD],
      );
      expect(stored).toEqual([]);
    });

    it('accepts the same globs everywhere', async () => {
      for (const glob of ['team-{a,b}/**', 'team-[a-c]/*', 'team-a/api']) {
        await bindGlob(glob).expect(201);
        await subscribeGlob(glob).expect(201);
        await http().get('/api/v1/audit-events').query({ repository: glob }).expect(200);
        expect((await auditPage('filter: $f', { f: { repository: glob } })).errors).toBeUndefined();
      }
    });

    it('names, at start, the globs stored before the check that it now refuses', async () => {
      const binding = (await bindGlob('ops/*', 'stored').expect(201)).body.id as string;
      const webhook = (await subscribeGlob('ops/*', 'stored').expect(201)).body.id as string;
      // As an earlier version stored them.
      await env.query(`UPDATE role_bindings SET repository = 'team-[a/**' WHERE id = $1`, [binding]);
      await env.query(`UPDATE webhook_subscriptions SET repository = 'team-{a/**' WHERE id = $1`, [webhook]);
      const check = gw.app.get(StoredGlobsCheck);
      expect(await check.refused()).toEqual(
        expect.arrayContaining([
          { kind: 'role binding', id: binding, repository: 'team-[a/**' },
          { kind: 'webhook', id: webhook, repository: 'team-{a/**' },
        ]),
      );
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      try {
        await check.onApplicationBootstrap();
        const said = warn.mock.calls.map(([m]) => String(m));
        expect(said).toEqual(
          expect.arrayContaining([
            expect.stringContaining(`role binding ${binding} has the repository glob "team-[a/**"`),
            expect.stringContaining(`PATCH /api/v1/webhooks/${webhook}`),
          ]),
        );
      } finally {
        warn.mockRestore();
        await env.query(`DELETE FROM role_bindings WHERE id = $1`, [binding]);
        await env.query(`DELETE FROM webhook_subscriptions WHERE id = $1`, [webhook]);
      }
    });

    it('refuses such a glob in OIDC_GROUP_ROLES at start', () => {
      expect(() =>
        testConfig(env, {
          OIDC_GROUP_ROLES: JSON.stringify({
            ops: { role: 'viewer', registry: 'alpha', repository: 'team-[a/**' },
          }),
        }),
      ).toThrow(/OIDC_GROUP_ROLES/);
    });
  });

  describe('the audit filter over REST', () => {
    it('takes actorType as GraphQL does', async () => {
      const viaGraphql = await gql<{ auditEvents: { items: { seq: number }[] } }>(
        'query { auditEvents(filter: { actorType: system }, limit: 500) { items { seq } } }',
      );
      const seqs = viaGraphql.data!.auditEvents.items.map((e) => e.seq);
      expect(seqs.length).toBeGreaterThan(0);
      const rest = await http()
        .get('/api/v1/audit-events')
        .query({ actorType: 'system', limit: 500 })
        .expect(200);
      const items = rest.body.items as { seq: number; actor: { type: string } }[];
      expect(items.map((e) => e.seq)).toEqual(seqs);
      expect(new Set(items.map((e) => e.actor.type))).toEqual(new Set(['system']));
      const all = await http().get('/api/v1/audit-events').query({ limit: 500 }).expect(200);
      expect(all.body.items.length).toBeGreaterThan(items.length);
      expect((await http().get('/api/v1/audit-events?actorType=robot').expect(400)).body.error.code).toBe(
        'VALIDATION_FAILED',
      );
    });
  });

  describe('time ranges', () => {
    const HOUR = 3_600_000;
    const later = new Date(Date.now() + HOUR).toISOString();
    const earlier = new Date(Date.now() - HOUR).toISOString();

    it('refuses from after to in every list, as reclaimedSpace does', async () => {
      const reclaimed = gqlError(
        await gql(
          'query($f: DateTime, $t: DateTime) { reclaimedSpace(bucket: day, from: $f, to: $t) { registry } }',
          {
            f: later,
            t: earlier,
          },
        ),
      );
      expect(reclaimed).toMatchObject({ code: 'VALIDATION_FAILED', message: 'from must be before to' });
      const expected = { code: 'VALIDATION_FAILED', message: reclaimed.message, field: 'from' };
      expect(gqlError(await auditPage('filter: $f', { f: { from: later, to: earlier } }))).toMatchObject(
        expected,
      );
      expect(
        gqlError(
          await gql('query($f: DeletionFilter) { deletions(filter: $f) { nextCursor } }', {
            f: { from: later, to: earlier },
          }),
        ),
      ).toMatchObject(expected);
      for (const path of ['/api/v1/audit-events', '/api/v1/deletions'])
        expect(restError(await http().get(path).query({ from: later, to: earlier })), path).toMatchObject({
          status: 400,
          ...expected,
        });
      expect(
        restError(
          await http().get('/api/v1/audit-events').query({ from: later, to: earlier, format: 'ndjson' }),
        ),
      ).toMatchObject({ status: 400, ...expected });
      // A forward range still lists.
      const forward = await auditPage('filter: $f', { f: { from: earlier, to: later } });
      expect(forward.data!.auditEvents.items.length).toBeGreaterThan(0);
    });
  });
});
