import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { GraphQLSchemaHost } from '@nestjs/graphql';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditableEvent, recordAuditBatch } from '../src/audit/audit-event.js';
import { CSV_COLUMNS } from '../src/audit/audit-export.js';
import { operationCost } from '../src/common/graphql-limits.js';
import {
  adminRequest,
  boundServiceAccount,
  bearer,
  testConfig,
  TestEnvironment,
  TestGateway,
  startApi,
} from './support/gateway.js';

// The copy of graphql that built the schema (see auth-matrix.e2e-spec.ts).
const graphql = createRequire(import.meta.url)('graphql') as typeof import('graphql');

/*
 * The GraphQL audit console and the audit export, on a trail seeded with known events, deletion requests
 * and GC runs: filters, paging both ways, the reclaimed-space report, what each binding sees, the depth
 * and complexity limits, DataLoader batching (SQL statements counted per request) and CSV/NDJSON export.
 */

const DAY = 86_400_000;
/** Low, so a real query of this schema can exceed it. */
const MAX_DEPTH = 6;

interface GqlResult<T = Record<string, unknown>> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string; details?: Record<string, unknown> } }[];
}

/** GraphQL answers, read field by field in the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = Record<string, any>;

type Event = Record<string, unknown> & {
  seq: number;
  action: string;
  registry: string | null;
  repository: string | null;
  outcome: string;
  occurredAt: string;
};

describe('GraphQL audit console', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  const tokens: Record<string, string> = {};
  const deletionIds: string[] = [];
  const gcRunIds: string[] = [];
  let seededFrom: Date;

  async function gql<T = Record<string, unknown>>(
    query: string,
    variables: Record<string, unknown> = {},
    token?: string,
  ): Promise<GqlResult<T> & { status: number }> {
    const req = request(gw.server).post('/graphql');
    const res = await (token ? req.set(bearer(token)) : adminRequest(gw.server).post('/graphql')).send({
      query,
      variables,
    });
    return { ...(res.body as GqlResult<T>), status: res.status };
  }

  const codes = (r: GqlResult) => (r.errors ?? []).map((e) => e.extensions?.code);

  async function principal(name: string, role: string, scope: { registry?: string; repository?: string }) {
    const { id, token } = await boundServiceAccount(gw.server, name, role, scope);
    tokens[name] = token;
    return id;
  }

  /** A deletion request with items, as a worker leaves it, straight into the tables. */
  async function storedDeletion(
    registry: string,
    items: { repository: string; status: string; kind?: string; finishedAt?: Date; alreadyGone?: boolean }[],
    opts: { actorId?: string; status?: string; createdAt?: Date } = {},
  ): Promise<string> {
    const id = randomUUID();
    await env.query(
      `INSERT INTO deletion_requests (id, registry, registry_id, status, dry_run, actor_type, actor_id, actor_name,
         item_count, estimated_bytes, created_at, updated_at, finished_at)
       VALUES ($1, $2, gen_random_uuid(), $3, false, 'service', $4, 'fixture', $5, 0, $6, $6, $6)`,
      [
        id,
        registry,
        opts.status ?? 'succeeded',
        opts.actorId ?? 'ci',
        items.length,
        opts.createdAt ?? new Date(),
      ],
    );
    for (const [position, item] of items.entries())
      await env.query(
        `INSERT INTO deletion_items (request_id, position, chunk, repository, reference, kind, digest, tags, status,
           already_gone, error_code, error_message, finished_at)
         VALUES ($1, $2, 0, $3, $4, $5, $6, '{}', $7, $8, $9, $10, $11)`,
        [
          id,
          position,
          item.repository,
          `v${position}`,
          item.kind ?? 'manifest',
          `sha256:${String(position).padStart(64, '0')}`,
          item.status,
          item.alreadyGone ?? false,
          item.status === 'failed' ? 'UPSTREAM_ERROR' : null,
          item.status === 'failed' ? 'the registry answered 500' : null,
          item.finishedAt ?? new Date(),
        ],
      );
    deletionIds.push(id);
    return id;
  }

  async function storedGcRun(registry: string, finishedAt: Date, bytesFreed: number, manifests: number) {
    const [{ id }] = await env.query<{ id: string }>(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, actor_id, dry_run, delete_untagged, fence,
         executor, status, phase, blobs_deleted, manifests_deleted, bytes_freed, finished_at)
       VALUES ($1, gen_random_uuid(), 'manual', 'service', 'ops', false, false, 'gateway', 'local', 'succeeded',
         'done', 3, $2, $3, $4) RETURNING id`,
      [registry, manifests, bytesFreed, finishedAt],
    );
    gcRunIds.push(id);
    return id;
  }

  const event = (e: Partial<AuditableEvent>): Omit<AuditableEvent, 'manager'> => ({
    action: 'deletion.item.succeeded',
    actor: { type: 'service', id: 'ci', name: 'CI' },
    outcome: 'success',
    ...e,
  });

  async function record(events: Omit<AuditableEvent, 'manager'>[]) {
    await recordAuditBatch(gw.app.get(EventEmitter2), { events });
  }

  /** Every page of a GraphQL audit listing, following nextCursor. */
  async function allPages(
    filter: Record<string, unknown>,
    sort: 'asc' | 'desc',
    limit: number,
    token?: string,
  ) {
    const seen: Event[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: GqlResult<{ auditEvents: { items: Event[]; nextCursor: string | null } }> = await gql(
        `query($f: AuditEventFilter, $s: SortOrder, $l: Int, $c: String) {
           auditEvents(filter: $f, sort: $s, limit: $l, cursor: $c) {
             items { seq action registry repository outcome occurredAt actor { id } }
             nextCursor
           }
         }`,
        { f: filter, s: sort, l: limit, c: cursor },
        token,
      );
      expect(r.errors).toBeUndefined();
      seen.push(...r.data!.auditEvents.items);
      cursor = r.data!.auditEvents.nextCursor;
      pages++;
    } while (cursor && pages < 100);
    return { seen, pages };
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('audit_console');
    gw = await startApi(env, { GRAPHQL_MAX_DEPTH: String(MAX_DEPTH), RATE_LIMIT_AUTH_FAILURES: '0' });
    await principal('auditor-alpha', 'auditor', { registry: 'alpha' });
    await principal('auditor-team-a', 'auditor', { registry: 'alpha', repository: 'team-a/**' });
    await principal('auditor-all', 'auditor', {});
    await principal('viewer', 'viewer', {});
    await principal('operator-alpha', 'operator', { registry: 'alpha' });
    const deleterId = await principal('deleter-alpha', 'deleter', { registry: 'alpha' });

    seededFrom = new Date();
    const d1 = await storedDeletion('alpha', [
      { repository: 'team-a/api', status: 'succeeded' },
      { repository: 'team-a/web', status: 'succeeded', kind: 'tag' },
      { repository: 'team-a/web', status: 'succeeded', alreadyGone: true },
    ]);
    const d2 = await storedDeletion(
      'alpha',
      [
        { repository: 'team-b/api', status: 'failed' },
        { repository: 'team-b/api', status: 'succeeded' },
      ],
      { status: 'partially_failed', actorId: deleterId },
    );
    const d3 = await storedDeletion('beta', [{ repository: 'team-a/api', status: 'succeeded' }]);
    const g1 = await storedGcRun('alpha', new Date(), 5000, 2);
    const g2 = await storedGcRun('beta', new Date(), 700, 0);
    const events: Omit<AuditableEvent, 'manager'>[] = [];
    const subject = (type: string, id: string) => ({ type, id });
    for (let i = 0; i < 30; i++) {
      const registry = i % 3 === 0 ? 'beta' : 'alpha';
      const repository = ['team-a/api', 'team-a/web', 'team-b/api', 'team-a/x/deep'][i % 4];
      const failed = i % 5 === 0;
      events.push(
        event({
          action: failed ? 'deletion.item.failed' : 'deletion.item.succeeded',
          outcome: failed ? 'failure' : 'success',
          actor: { type: 'service', id: i % 2 ? 'ci' : 'ada', name: i % 2 ? 'CI' : 'Ada' },
          registry,
          repository,
          tags: [`t${i}`],
          digest: `sha256:${String(i).padStart(64, 'a')}`,
          subject: subject('deletion_request', registry === 'beta' ? d3 : i % 2 ? d1 : d2),
        }),
      );
    }
    events.push(
      event({
        action: 'gc.succeeded',
        registry: 'alpha',
        subject: subject('gc_run', g1),
        details: { bytesFreed: 5000 },
      }),
      event({ action: 'gc.succeeded', registry: 'beta', subject: subject('gc_run', g2) }),
      event({ action: 'registry.updated', registry: 'alpha', outcome: 'info' }),
    );
    await record(events);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await env?.destroy();
  });

  it('filters by registry, repository glob, actor, action (and prefix), outcome and time range', async () => {
    const { seen: all } = await allPages({ from: seededFrom.toISOString() }, 'desc', 500);
    const mine = all.filter((e) => e.action.startsWith('deletion.item') || e.action.startsWith('gc.'));
    expect(mine.length).toBe(32);

    const count = async (filter: Record<string, unknown>) =>
      (await allPages({ ...filter, from: seededFrom.toISOString() }, 'desc', 500)).seen;
    expect((await count({ registry: 'beta' })).every((e) => e.registry === 'beta')).toBe(true);
    expect((await count({ registry: 'beta' })).length).toBe(11);
    const glob = await count({ registry: 'alpha', repository: 'team-a/**' });
    expect(glob.length).toBeGreaterThan(0);
    expect(glob.every((e) => e.repository!.startsWith('team-a/'))).toBe(true);
    expect(glob.some((e) => e.repository === 'team-a/x/deep')).toBe(true);
    const oneLevel = await count({ registry: 'alpha', repository: 'team-a/*' });
    expect(oneLevel.some((e) => e.repository === 'team-a/x/deep')).toBe(false);
    expect(oneLevel.length).toBeLessThan(glob.length);
    const exact = await count({ repository: 'team-b/api' });
    expect(exact.every((e) => e.repository === 'team-b/api')).toBe(true);
    expect(
      (await count({ actor: 'ada' })).every((e) => e.actor && (e.actor as { id: string }).id === 'ada'),
    ).toBe(true);
    const failed = await count({ action: 'deletion.item.failed', outcome: 'failure' });
    expect(failed.length).toBe(6);
    expect((await count({ action: 'gc.*' })).map((e) => e.action)).toEqual(['gc.succeeded', 'gc.succeeded']);
    expect((await count({ outcome: 'info', registry: 'alpha' })).map((e) => e.action)).toEqual([
      'registry.updated',
    ]);

    // A time range: nothing before the seed, nothing in a window that ended before it.
    const before = await allPages({ to: seededFrom.toISOString(), action: 'deletion.item.*' }, 'desc', 500);
    expect(before.seen).toEqual([]);
    const window = await allPages(
      {
        from: new Date(seededFrom.getTime() - DAY).toISOString(),
        to: new Date(Date.now() + DAY).toISOString(),
        action: 'deletion.item.*',
      },
      'desc',
      500,
    );
    expect(window.seen.length).toBe(30);

    const bad = await gql('{ auditEvents(filter: { repository: "team-[!a]/x" }) { nextCursor } }');
    expect(codes(bad)).toEqual(['VALIDATION_FAILED']);
  });

  it('pages with cursors both ways, in time (seq) order, without gaps or repeats', async () => {
    const filter = { from: seededFrom.toISOString(), action: 'deletion.item.*' };
    const desc = await allPages(filter, 'desc', 7);
    const asc = await allPages(filter, 'asc', 4);
    expect(desc.seen.length).toBe(30);
    expect(desc.pages).toBe(5);
    expect(asc.pages).toBe(8);
    const seqs = desc.seen.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    expect(new Set(seqs).size).toBe(30);
    expect(asc.seen.map((e) => e.seq)).toEqual([...seqs].reverse());
    const times = asc.seen.map((e) => Date.parse(e.occurredAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));

    // A cursor only continues the list it came from.
    const first = await gql<{ auditEvents: { nextCursor: string } }>(
      '{ auditEvents(sort: desc, limit: 2) { nextCursor } }',
    );
    const wrongWay = await gql('query($c: String) { auditEvents(sort: asc, cursor: $c) { nextCursor } }', {
      c: first.data!.auditEvents.nextCursor,
    });
    expect(codes(wrongWay)).toEqual(['VALIDATION_FAILED']);
    expect(codes(await gql('{ auditEvents(limit: 501) { nextCursor } }'))).toEqual(['VALIDATION_FAILED']);
  });

  it('shows each binding only its events, and refuses those without audit:read', async () => {
    const { seen: alpha } = await allPages(
      { from: seededFrom.toISOString() },
      'desc',
      100,
      tokens['auditor-alpha'],
    );
    expect(alpha.length).toBeGreaterThan(0);
    expect(alpha.every((e) => e.registry === 'alpha')).toBe(true);
    expect(alpha.some((e) => e.action === 'registry.updated')).toBe(true);

    const { seen: teamA } = await allPages({}, 'desc', 100, tokens['auditor-team-a']);
    expect(teamA.length).toBeGreaterThan(0);
    expect(teamA.every((e) => e.registry === 'alpha' && e.repository!.startsWith('team-a/'))).toBe(true);
    // Registry-wide events need the whole registry.
    expect(teamA.some((e) => e.action === 'registry.updated' || e.action.startsWith('gc.'))).toBe(false);
    // A glob filter wider than the binding is narrowed, not trusted.
    const { seen: wide } = await allPages(
      { registry: 'alpha', repository: '**' },
      'desc',
      100,
      tokens['auditor-team-a'],
    );
    expect(wide.map((e) => e.seq)).toEqual(teamA.map((e) => e.seq));

    const other = await gql(
      '{ auditEvents(filter: { registry: "beta" }) { nextCursor } }',
      {},
      tokens['auditor-alpha'],
    );
    expect(codes(other)).toEqual(['FORBIDDEN']);
    expect(other.errors![0].extensions?.details).toMatchObject({
      permission: 'audit:read',
      registry: 'beta',
    });
    for (const query of [
      '{ auditEvents { nextCursor } }',
      '{ deletions { nextCursor } }',
      '{ reclaimedSpace { registry } }',
    ])
      expect(codes(await gql(query, {}, tokens.viewer)), query).toEqual(['FORBIDDEN']);
    const anonymous = await request(gw.server)
      .post('/graphql')
      .send({ query: '{ auditEvents { nextCursor } }' });
    expect(codes(anonymous.body)).toEqual(['UNAUTHENTICATED']);
  });

  it('resolves the deletion request and GC run of each event, within the caller’s scope', async () => {
    const query = `query($f: AuditEventFilter) {
      auditEvents(filter: $f, limit: 100) {
        items { action registry subject { type id } deletion { id registry status counts { succeeded failed } }
                gcRun { id registry bytesFreed } }
      } }`;
    const r = await gql<{ auditEvents: { items: Loose[] } }>(query, {
      f: { from: seededFrom.toISOString() },
    });
    expect(r.errors).toBeUndefined();
    for (const e of r.data!.auditEvents.items) {
      if (e.subject?.type === 'deletion_request') expect(e.deletion?.id).toBe(e.subject.id);
      if (e.subject?.type === 'gc_run')
        expect(e.gcRun).toMatchObject({ id: e.subject.id, registry: e.registry });
    }
    const gcAlpha = r.data!.auditEvents.items.find((e) => e.gcRun?.registry === 'alpha');
    expect(gcAlpha!.gcRun.bytesFreed).toBe(5000);
    expect(
      r.data!.auditEvents.items.find((e) => e.deletion?.status === 'partially_failed')!.deletion.counts,
    ).toEqual({
      succeeded: 1,
      failed: 1,
    });

    // An auditor bound to team-a/** sees events of d1 (all team-a items) with their request, and never
    // a request with items outside its globs.
    const scoped = await gql<{ auditEvents: { items: Loose[] } }>(query, {}, tokens['auditor-team-a']);
    expect(scoped.errors).toBeUndefined();
    const ids = new Set(scoped.data!.auditEvents.items.map((e) => e.deletion?.id).filter(Boolean));
    expect([...ids]).toEqual([deletionIds[0]]);
  });

  it('answers a list with a bounded number of SQL statements, whatever its length (DataLoader)', async () => {
    const ds = gw.app.get(DataSource);
    const logger = ds.logger;
    let statements = 0;
    const counting = new Proxy(logger, {
      get: (target, prop, receiver) =>
        prop === 'logQuery'
          ? (...args: unknown[]) => {
              statements++;
              return (target.logQuery as (...a: unknown[]) => unknown).apply(target, args);
            }
          : Reflect.get(target, prop, receiver),
    });
    Object.defineProperty(ds, 'logger', { value: counting, configurable: true, writable: true });
    const query = `query($l: Int, $from: DateTime) {
      auditEvents(limit: $l, filter: { from: $from }) {
        items { seq actor { id } deletion { id counts { succeeded } items(limit: 2) { items { digest status } } }
                gcRun { id status } }
      }
      deletions(limit: $l) { items { id counts { failed } items(limit: 3) { items { repository } nextCursor } } }
    }`;
    const measure = async (limit: number) => {
      statements = 0;
      const r = await gql<{ auditEvents: { items: unknown[] } }>(query, {
        l: limit,
        from: seededFrom.toISOString(),
      });
      expect(r.errors).toBeUndefined();
      return { statements, events: r.data!.auditEvents.items.length };
    };
    try {
      // The newest five hold GC runs and deletion requests already; the 33 all there are.
      const small = await measure(5);
      const large = await measure(40);
      expect(small.events).toBe(5);
      expect(large.events).toBe(33);
      // auditEvents, deletion requests by id, items of those, GC runs by id, deletions page, its items.
      expect(large.statements).toBeLessThanOrEqual(6);
      expect(large.statements).toBe(small.statements);
    } finally {
      Object.defineProperty(ds, 'logger', { value: logger, configurable: true, writable: true });
    }
  });

  it('lists deletion requests with filters, sorting, paged items, and only what the caller may read', async () => {
    const list = async (filter: Record<string, unknown>, token?: string, sort = 'desc') =>
      gql<{ deletions: { items: Loose[]; nextCursor: string | null } }>(
        `query($f: DeletionFilter, $s: SortOrder) { deletions(filter: $f, sort: $s, limit: 50) {
           items { id registry status createdAt actor { id } counts { succeeded failed }
                   items(limit: 1) { items { position repository status error { code } } nextCursor } }
           nextCursor } }`,
        { f: filter, s: sort },
        token,
      );
    const all = await list({});
    expect(all.errors).toBeUndefined();
    expect(all.data!.deletions.items.map((d) => d.id)).toEqual([...deletionIds].reverse());
    expect((await list({}, undefined, 'asc')).data!.deletions.items.map((d) => d.id)).toEqual(deletionIds);
    // A newest-first page's cursor given to an oldest-first list is refused, not read as one of its own.
    const page = (sort: string, cursor?: string) =>
      gql<{ deletions: { items: Loose[]; nextCursor: string | null } }>(
        'query($s: SortOrder, $c: String) { deletions(sort: $s, limit: 1, cursor: $c) { items { id } nextCursor } }',
        { s: sort, c: cursor },
      );
    for (const [from, to] of [
      ['desc', 'asc'],
      ['asc', 'desc'],
    ]) {
      const first = await page(from);
      expect(first.data!.deletions.nextCursor).toEqual(expect.any(String));
      expect(codes(await page(to, first.data!.deletions.nextCursor!))).toEqual(['VALIDATION_FAILED']);
      expect((await page(from, first.data!.deletions.nextCursor!)).errors).toBeUndefined();
    }
    const failed = await list({ status: ['failed', 'partially_failed'] });
    expect(failed.data!.deletions.items.map((d) => d.id)).toEqual([deletionIds[1]]);
    const d2 = failed.data!.deletions.items[0];
    expect(d2.items.items).toEqual([
      { position: 0, repository: 'team-b/api', status: 'failed', error: { code: 'UPSTREAM_ERROR' } },
    ]);
    // The next page of its items.
    const more = await gql<{
      deletion: { items: { items: { position: number }[]; nextCursor: string | null } };
    }>(
      'query($id: ID!, $c: String) { deletion(id: $id) { items(limit: 1, cursor: $c) { items { position } nextCursor } } }',
      { id: d2.id, c: d2.items.nextCursor },
    );
    expect(more.data!.deletion.items).toEqual({ items: [{ position: 1 }], nextCursor: null });
    const failedItems = await gql<{ deletion: { items: { items: { position: number }[] } } }>(
      'query($id: ID!) { deletion(id: $id) { items(status: failed) { items { position } } } }',
      { id: d2.id },
    );
    expect(failedItems.data!.deletion.items.items).toEqual([{ position: 0 }]);

    expect((await list({ repository: 'team-a/**' })).data!.deletions.items.map((d) => d.id)).toEqual([
      deletionIds[2],
      deletionIds[0],
    ]);
    expect((await list({ registry: 'beta' })).data!.deletions.items.map((d) => d.id)).toEqual([
      deletionIds[2],
    ]);

    // An auditor bound to team-a/** on alpha reads d1 only; a deleter its own d2; a viewer nothing.
    expect((await list({}, tokens['auditor-team-a'])).data!.deletions.items.map((d) => d.id)).toEqual([
      deletionIds[0],
    ]);
    expect((await list({}, tokens['deleter-alpha'])).data!.deletions.items.map((d) => d.id)).toEqual([
      deletionIds[1],
    ]);
    const hidden = await gql(
      'query($id: ID!) { deletion(id: $id) { id } }',
      { id: deletionIds[1] },
      tokens['auditor-team-a'],
    );
    expect(codes(hidden)).toEqual(['FORBIDDEN']);
    const missing = await gql(
      'query($id: ID!) { deletion(id: $id) { id } }',
      { id: randomUUID() },
      tokens['auditor-team-a'],
    );
    expect(codes(missing)).toEqual(['FORBIDDEN']);
    const missingAdmin = await gql('query($id: ID!) { deletion(id: $id) { id } }', { id: randomUUID() });
    expect(codes(missingAdmin)).toEqual(['DELETION_NOT_FOUND']);
  });

  it('reports bytes freed and manifests deleted per registry per day and week', async () => {
    const now = new Date();
    const day = (offset: number) =>
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + offset, 12));
    // Two runs ten days ago (the same day), one deletion item then, and a dry run that must not count.
    await storedGcRun('gamma', day(-10), 1000, 1);
    await storedGcRun('gamma', day(-10), 500, 0);
    await storedDeletion('gamma', [
      { repository: 'x/y', status: 'succeeded', finishedAt: day(-10) },
      { repository: 'x/y', status: 'succeeded', finishedAt: day(-3) },
      { repository: 'x/y', status: 'failed', finishedAt: day(-3) },
    ]);
    await env.query(
      `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, dry_run, delete_untagged, fence, executor, status,
         phase, bytes_freed, finished_at)
       VALUES ('gamma', gen_random_uuid(), 'manual', 'system', true, false, 'none', 'local', 'succeeded', 'done', 99999, $1)`,
      [day(-10)],
    );
    const q = `query($b: ReclaimedBucket!, $from: DateTime, $r: String) {
      reclaimedSpace(bucket: $b, from: $from, registry: $r) {
        registry period bytesFreed gcRuns manifestsDeleted manifestsDeletedByRequests manifestsDeletedByGc tagsDeleted
      } }`;
    const daily = await gql<{ reclaimedSpace: Loose[] }>(q, { b: 'day', r: 'gamma' });
    expect(daily.errors).toBeUndefined();
    expect(daily.data!.reclaimedSpace).toEqual([
      {
        registry: 'gamma',
        period: new Date(
          Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 10),
        ).toISOString(),
        bytesFreed: 1500,
        gcRuns: 2,
        manifestsDeleted: 2,
        manifestsDeletedByRequests: 1,
        manifestsDeletedByGc: 1,
        tagsDeleted: 0,
      },
      {
        registry: 'gamma',
        period: new Date(
          Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 3),
        ).toISOString(),
        bytesFreed: 0,
        gcRuns: 0,
        manifestsDeleted: 1,
        manifestsDeletedByRequests: 1,
        manifestsDeletedByGc: 0,
        tagsDeleted: 0,
      },
    ]);
    const weekly = await gql<{ reclaimedSpace: Loose[] }>(q, { b: 'week' });
    const rows = weekly.data!.reclaimedSpace;
    for (const r of rows) expect(new Date(r.period).getUTCDay()).toBe(1); // weeks start on Monday
    const gamma = rows.filter((r) => r.registry === 'gamma');
    expect(gamma.reduce((n, r) => n + r.bytesFreed, 0)).toBe(1500);
    expect(gamma.reduce((n, r) => n + r.manifestsDeleted, 0)).toBe(3);
    const alpha = rows.filter((r) => r.registry === 'alpha');
    // d1: one manifest and one tag (the already-gone item is not counted), d2: one; g1: 2 by GC.
    expect(alpha.reduce((n, r) => n + r.manifestsDeletedByRequests, 0)).toBe(2);
    expect(alpha.reduce((n, r) => n + r.tagsDeleted, 0)).toBe(1);
    expect(alpha.reduce((n, r) => n + r.manifestsDeletedByGc, 0)).toBe(2);
    expect(alpha.reduce((n, r) => n + r.bytesFreed, 0)).toBe(5000);

    // An operator on alpha sees alpha only; an auditor bound to repositories sees no whole registry.
    const operator = await gql<{ reclaimedSpace: { registry: string }[] }>(
      q,
      { b: 'week' },
      tokens['operator-alpha'],
    );
    expect(new Set(operator.data!.reclaimedSpace.map((r) => r.registry))).toEqual(new Set(['alpha']));
    expect(codes(await gql(q, { b: 'day', r: 'beta' }, tokens['operator-alpha']))).toEqual(['FORBIDDEN']);
    expect(
      (await gql<{ reclaimedSpace: unknown[] }>(q, { b: 'day' }, tokens['auditor-team-a'])).data!
        .reclaimedSpace,
    ).toEqual([]);
    const tooLong = await gql(q, { b: 'day', from: new Date(Date.now() - 500 * DAY).toISOString() });
    expect(codes(tooLong)).toEqual(['VALIDATION_FAILED']);
  });

  it('refuses queries over the depth or complexity limit with their own codes, before running them', async () => {
    const deep = await gql('{ auditEvents { items { deletion { items { items { error { code } } } } } } }');
    expect(deep.status).toBe(400);
    expect(codes(deep)).toEqual(['QUERY_TOO_DEEP']);
    expect(deep.errors![0].extensions?.details).toEqual({ depth: 7, maxDepth: MAX_DEPTH });
    const complex = await gql(
      '{ deletions(limit: 500) { items { items(limit: 500) { items { digest } } } } }',
    );
    expect(complex.status).toBe(400);
    expect(codes(complex)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(complex.errors![0].extensions?.details).toMatchObject({ maxComplexity: 25_000 });
    // Variables count too.
    const viaVariables = await gql(
      'query($l: Int) { deletions(limit: $l) { items { items(limit: $l) { items { digest } } } } }',
      {
        l: 400,
      },
    );
    expect(codes(viaVariables)).toEqual(['QUERY_TOO_COMPLEX']);
    // Fragments do not hide depth.
    const fragment = await gql(
      'fragment I on DeletionItemPage { items { error { code } } } { auditEvents { items { deletion { items { ...I } } } } }',
    );
    expect(codes(fragment)).toEqual(['QUERY_TOO_DEEP']);

    // GraphiQL's introspection passes the default limits, and a page of 500 events with subjects too.
    const schema = gw.app.get(GraphQLSchemaHost).schema;
    const defaults = testConfig(env).graphql;
    const introspection = graphql.getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
    });
    const cost = operationCost(schema, graphql.parse(introspection));
    expect(cost.depth).toBeLessThanOrEqual(defaults.maxDepth);
    expect(cost.complexity).toBeLessThanOrEqual(defaults.maxComplexity);
    expect((await gql(introspection)).data).toHaveProperty('__schema');
    const page = graphql.parse(
      '{ auditEvents(limit: 500) { items { seq actor { id name } subject { id } deletion { id counts { failed } } gcRun { id } } } }',
    );
    expect(operationCost(schema, page).complexity).toBeLessThan(defaults.maxComplexity);
  });

  it('serves GraphiQL offline with the auditors’ saved queries', async () => {
    const page = await request(gw.server).get('/graphql').set('accept', 'text/html').expect(200);
    expect(page.headers['content-type']).toContain('text/html');
    for (const name of ['WhoDeletedWhat', 'BytesFreedPerWeek', 'FailedDeletions', 'FollowDeletion'])
      expect(page.text).toContain(name);
    expect(page.text).not.toMatch(/<script[^>]+src="https?:/);
    // The saved queries are valid against the schema and within the limits.
    const schema = gw.app.get(GraphQLSchemaHost).schema;
    const { exampleTabs } = await import('../src/common/graphiql.js');
    for (const tab of exampleTabs(new Date())) {
      const doc = graphql.parse(tab.query);
      expect(graphql.validate(schema, doc), tab.query.slice(0, 60)).toEqual([]);
      expect(operationCost(schema, doc, undefined, tab.variables).depth).toBeLessThanOrEqual(MAX_DEPTH);
    }
  });

  describe('export', () => {
    const WEIRD = [
      'Smith, "Junior"',
      'line one\nline two',
      '=HYPERLINK("http://x")',
      '+1',
      '-2',
      '@sum',
      'crlf\r\nend',
      'naïve ✓',
    ];

    beforeAll(async () => {
      await record(
        WEIRD.map((name, i) =>
          event({
            action: 'export.check',
            actor: { type: 'user', id: `weird-${i}`, name },
            registry: 'alpha',
            repository: 'team-a/api',
            details: { note: name, n: i },
            tags: ['a', 'b'],
          }),
        ),
      );
      // More than one export page (1,000 rows).
      const many = Array.from({ length: 2300 }, (_, i) =>
        event({ action: 'export.bulk', registry: 'delta', repository: `bulk/r${i % 7}`, details: { i } }),
      );
      await record(many);
    });

    /** RFC 4180: quoted fields may hold commas, quotes (doubled) and line breaks. */
    function parseCsv(text: string): string[][] {
      const rows: string[][] = [];
      let row: string[] = [];
      let field = '';
      let quoted = false;
      for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (quoted) {
          if (c === '"' && text[i + 1] === '"') {
            field += '"';
            i++;
          } else if (c === '"') quoted = false;
          else field += c;
        } else if (c === '"') quoted = true;
        else if (c === ',') {
          row.push(field);
          field = '';
        } else if (c === '\r' && text[i + 1] === '\n') {
          row.push(field);
          rows.push(row);
          row = [];
          field = '';
          i++;
        } else field += c;
      }
      if (field || row.length) throw new Error('the CSV does not end with CRLF');
      return rows;
    }

    it('streams CSV with RFC 4180 quoting, formula guarding and a download name', async () => {
      const res = await adminRequest(gw.server)
        .get('/api/v1/audit-events?format=csv&action=export.check&sort=asc')
        .buffer(true)
        .parse((r, cb) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => (data += c));
          r.on('end', () => cb(null, data));
        })
        .expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      expect(res.headers['content-disposition']).toMatch(
        /^attachment; filename="audit-events-[\dT-]+Z\.csv"$/,
      );
      const rows = parseCsv(res.body as string);
      expect(rows[0]).toEqual([...CSV_COLUMNS]);
      const col = (name: string) => CSV_COLUMNS.indexOf(name as (typeof CSV_COLUMNS)[number]);
      const data = rows.slice(1);
      expect(data).toHaveLength(WEIRD.length);
      const guarded = (v: string) => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v);
      data.forEach((r, i) => {
        expect(r).toHaveLength(CSV_COLUMNS.length);
        expect(r[col('actorName')]).toBe(guarded(WEIRD[i]));
        expect(r[col('actorId')]).toBe(`weird-${i}`);
        expect(r[col('tags')]).toBe('a b');
        expect(JSON.parse(r[col('details')])).toEqual({ n: i, note: WEIRD[i] });
        expect(r[col('registry')]).toBe('alpha');
        expect(r[col('hash')]).toMatch(/^[0-9a-f]{64}$/);
      });
    });

    it('streams NDJSON identical to the JSON list, over many pages, in the requested order', async () => {
      const res = await adminRequest(gw.server)
        .get('/api/v1/audit-events?format=ndjson&registry=delta&repository=bulk/**')
        .buffer(true)
        .parse((r, cb) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => (data += c));
          r.on('end', () => cb(null, data));
        })
        .expect(200);
      expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
      expect(res.headers['content-disposition']).toMatch(/\.ndjson"$/);
      const lines = (res.body as string).split('\n');
      expect(lines.pop()).toBe('');
      const events = lines.map((l) => JSON.parse(l) as Event);
      expect(events).toHaveLength(2300);
      const seqs = events.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
      const page = (
        await adminRequest(gw.server).get('/api/v1/audit-events?registry=delta&limit=3').expect(200)
      ).body;
      expect(events.slice(0, 3)).toEqual(page.items);
    });

    it('exports only what the caller may read, refuses the rest like the list, and checks the filter first', async () => {
      const scoped = await request(gw.server)
        .get('/api/v1/audit-events?format=ndjson&registry=alpha&repository=team-a/**')
        .set(bearer(tokens['auditor-team-a']))
        .expect(200);
      const events = (scoped.text as string)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Event);
      expect(events.length).toBeGreaterThan(0);
      expect(events.every((e) => e.registry === 'alpha' && e.repository?.startsWith('team-a/'))).toBe(true);
      await request(gw.server)
        .get('/api/v1/audit-events?format=csv&registry=beta')
        .set(bearer(tokens['auditor-alpha']))
        .expect(403);
      await request(gw.server).get('/api/v1/audit-events?format=csv').set(bearer(tokens.viewer)).expect(403);
      const bad = await adminRequest(gw.server)
        .get('/api/v1/audit-events?format=csv&repository=team-[!a]/x')
        .expect(400);
      expect(bad.body.error.code).toBe('VALIDATION_FAILED');
      await adminRequest(gw.server).get('/api/v1/audit-events?format=xml').expect(400);
    });
  });
});
