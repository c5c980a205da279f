import type { INestApplicationContext } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainedRow, chainHash } from '../src/audit/audit-chain.js';
import {
  AUDIT_EVENT,
  AuditableEvent,
  AuditReceipt,
  recordAudit,
  recordAuditBatch,
} from '../src/audit/audit-event.js';
import { AuditService } from '../src/audit/audit.service.js';
import { adminRequest, TestEnvironment, TestGateway, startApi, startWorker } from './support/gateway.js';

const APPEND_ONLY = /audit_events is append-only/;

describe('audit trail', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let worker: INestApplicationContext;
  const http = () => adminRequest(gw.server);

  const event = (overrides: Partial<AuditableEvent> = {}): AuditableEvent => ({
    action: 'test.recorded',
    actor: { type: 'user', id: 'u-1', name: 'Ada' },
    outcome: 'success',
    ...overrides,
  });

  /** A business change (a row in audit_probe) and its audit event, in one transaction, as features do. */
  async function change(
    id: string,
    overrides: Partial<AuditableEvent> = {},
    opts: { via?: INestApplicationContext; thenFail?: boolean; swallow?: boolean } = {},
  ): Promise<AuditReceipt | undefined> {
    const app = opts.via ?? gw.app;
    return app.get(DataSource).transaction(async (manager) => {
      await manager.query('INSERT INTO audit_probe (id) VALUES ($1)', [id]);
      const recorded = recordAudit(app.get(EventEmitter2), {
        ...event({ subject: { type: 'probe', id } }),
        ...overrides,
        manager,
      });
      let receipt: AuditReceipt | undefined;
      if (opts.swallow) receipt = await recorded.catch(() => undefined);
      else receipt = await recorded;
      if (opts.thenFail) throw new Error('the change failed after its audit event');
      return receipt;
    });
  }

  const probeExists = async (id: string) =>
    (await env.query('SELECT 1 FROM audit_probe WHERE id = $1', [id])).length === 1;
  const auditedSubjects = async (id: string) =>
    (await env.query('SELECT seq FROM audit_events WHERE subject_id = $1', [id])).length;
  const verify = async () => (await http().get('/api/v1/audit/verify').expect(200)).body;
  const count = async () =>
    Number((await env.query<{ n: string }>('SELECT count(*) AS n FROM audit_events'))[0].n);

  beforeAll(async () => {
    env = await TestEnvironment.create('audit');
    gw = await startApi(env);
    // The worker process appends to the same chain through a connection pool of its own.
    worker = await startWorker(env);
    await env.query('CREATE TABLE audit_probe (id text PRIMARY KEY)');
  });

  afterAll(async () => {
    await worker?.close();
    await gw?.close();
    await env?.destroy();
  });

  it('writes an emitted event in the transaction of the change, with every field', async () => {
    const ds = gw.app.get(DataSource);
    const results = await ds.transaction(async (manager) => {
      await manager.query("INSERT INTO audit_probe (id) VALUES ('first')");
      return gw.app.get(EventEmitter2).emitAsync(AUDIT_EVENT, {
        action: 'deletion.requested',
        actor: { type: 'user', id: 'u-7', name: 'Grace' },
        sourceIp: '2001:DB8:0:0::1',
        requestId: 'req-42',
        registry: 'plain',
        repository: 'team-a/api',
        tags: ['v1', 'latest'],
        digest: `sha256:${'a'.repeat(64)}`,
        outcome: 'pending',
        upstreamStatus: 202,
        subject: { type: 'deletion_request', id: 'first' },
        details: { z: 1, a: { y: [1, 'two', null], b: 'ü' }, dropped: undefined, when: new Date(0) },
        manager,
      } satisfies AuditableEvent);
    });
    // Other listeners of the event (the webhook outbox) resolve to undefined: one receipt, the audit's.
    expect((results as unknown[]).filter((r) => r !== undefined)).toEqual([
      { auditSeq: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);
    expect(await probeExists('first')).toBe(true);

    const res = await http().get('/api/v1/audit-events?subjectId=first').expect(200);
    expect(res.body.items).toEqual([
      {
        seq: results[0].auditSeq,
        id: expect.any(String),
        occurredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        action: 'deletion.requested',
        actor: { type: 'user', id: 'u-7', name: 'Grace' },
        sourceIp: '2001:db8::1',
        requestId: 'req-42',
        registry: 'plain',
        repository: 'team-a/api',
        tags: ['v1', 'latest'],
        digest: `sha256:${'a'.repeat(64)}`,
        outcome: 'pending',
        upstreamStatus: 202,
        subject: { type: 'deletion_request', id: 'first' },
        details: { z: 1, a: { y: [1, 'two', null], b: 'ü' }, when: '1970-01-01T00:00:00.000Z' },
        prevHash: null,
        hash: results[0].hash,
      },
    ]);
    expect(Date.now() - Date.parse(res.body.items[0].occurredAt)).toBeLessThan(60_000);
    // jsonb reorders keys and the inet was normalised, yet the stored row still hashes to its hash.
    expect(await verify()).toEqual({ ok: true, checked: 1, head: { seq: 1, hash: results[0].hash } });
  });

  it('rolls the event back with the change, and the chain continues without a gap', async () => {
    const before = await count();
    await expect(change('rolled-back', {}, { thenFail: true })).rejects.toThrow('the change failed');
    expect(await probeExists('rolled-back')).toBe(false);
    expect(await auditedSubjects('rolled-back')).toBe(0);
    const next = await change('after-rollback');
    expect(next?.auditSeq).toBe(before + 1);
    expect(await verify()).toMatchObject({ ok: true, checked: before + 1 });
  });

  it('fails the change when its audit event cannot be written', async () => {
    const bad: [string, Partial<AuditableEvent>, RegExp][] = [
      ['no-action', { action: undefined as unknown as string }, /null value in column "action"/],
      ['bad-action', { action: 'Not An Action' }, /audit_events_action_check/],
      ['bad-outcome', { outcome: 'maybe' as AuditableEvent['outcome'] }, /audit_events_outcome_check/],
      ['bad-ip', { sourceIp: 'not-an-ip' }, /invalid input syntax for type inet/],
      ['bad-status', { upstreamStatus: 42 }, /audit_events_upstream_status_check/],
      ['bad-tags', { tags: [1] as unknown as string[] }, /tags must be an array of strings/],
      ['no-actor', { actor: undefined as unknown as AuditableEvent['actor'] }, /null value in column/],
    ];
    const before = await count();
    for (const [id, overrides, message] of bad) {
      await expect(change(id, overrides), id).rejects.toThrow(message);
      expect(await probeExists(id), id).toBe(false);
    }
    expect(await count()).toBe(before);
  });

  it('leaves the transaction unable to commit even when the caller swallows the failure', async () => {
    const receipt = await change('swallowed', { sourceIp: 'not-an-ip' }, { swallow: true });
    expect(receipt).toBeUndefined();
    expect(await probeExists('swallowed')).toBe(false);
    // Also when the failure is found before any SQL ran.
    await change('swallowed-early', { tags: [1] as unknown as string[] }, { swallow: true });
    expect(await probeExists('swallowed-early')).toBe(false);
    expect(await verify()).toMatchObject({ ok: true });
  });

  it('refuses a manager outside a transaction, and reports an event nobody recorded', async () => {
    const ds = gw.app.get(DataSource);
    await expect(recordAudit(gw.app.get(EventEmitter2), event({ manager: ds.manager }))).rejects.toThrow(
      /open transaction/,
    );
    await expect(recordAudit(new EventEmitter2(), event())).rejects.toThrow(/no audit listener/);
    // Without a manager the event gets a transaction of its own.
    const own = await recordAudit(gw.app.get(EventEmitter2), event({ action: 'test.standalone' }));
    expect(await env.query('SELECT action FROM audit_events WHERE seq = $1', [own.auditSeq])).toEqual([
      { action: 'test.standalone' },
    ]);
  });

  it('serializes concurrent appends from the API and a worker into one unbroken chain', async () => {
    const before = await count();
    const receipts = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        change(`concurrent-${i}`, { action: 'test.concurrent' }, { via: i % 2 ? worker : gw.app }),
      ),
    );
    const seqs = receipts.map((r) => r!.auditSeq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => before + 1 + i));
    const [links] = await env.query<{ rows: string; broken: string }>(
      `SELECT count(*) AS rows,
              count(*) FILTER (WHERE b.prev_hash IS DISTINCT FROM a.hash) AS broken
         FROM audit_events b LEFT JOIN audit_events a ON a.seq = b.seq - 1 WHERE b.seq > 1`,
    );
    expect(links).toEqual({ rows: String(before + 199), broken: '0' });
    expect(await verify()).toEqual({
      ok: true,
      checked: before + 200,
      head: { seq: before + 200, hash: expect.any(String) },
    });
  });

  it('writes a batch as consecutive links, interleaved safely with single appends from another process', async () => {
    const before = await count();
    const ips = ['10.0.0.1', '::ffff:10.0.0.2', '2001:DB8::1', null];
    const batch = (b: number, app: INestApplicationContext) =>
      app.get(DataSource).transaction(async (manager) => {
        await manager.query('INSERT INTO audit_probe (id) VALUES ($1)', [`batch-${b}`]);
        return recordAuditBatch(app.get(EventEmitter2), {
          manager,
          events: Array.from({ length: 50 }, (_, i) =>
            event({ action: 'test.batched', sourceIp: ips[i % ips.length], details: { b, i } }),
          ),
        });
      });
    const [batches, singles] = await Promise.all([
      Promise.all(Array.from({ length: 6 }, (_, b) => batch(b, b % 2 ? worker : gw.app))),
      Promise.all(
        Array.from({ length: 30 }, (_, i) => change(`between-${i}`, {}, { via: i % 2 ? gw.app : worker })),
      ),
    ]);
    // Each batch is one unbroken run of seqs, in the order of its events.
    for (const receipts of batches) {
      const seqs = receipts.map((r) => r.auditSeq);
      expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => seqs[0] + i));
    }
    expect(await count()).toBe(before + 6 * 50 + singles.length);
    const stored = await env.query<{ ip: string | null; i: number }>(
      `SELECT source_ip::text AS ip, (details->>'i')::int AS i FROM audit_events
        WHERE action = 'test.batched' AND (details->>'b')::int = 0 ORDER BY seq LIMIT 4`,
    );
    expect(stored).toEqual([
      { ip: '10.0.0.1/32', i: 0 },
      { ip: '::ffff:10.0.0.2/128', i: 1 },
      { ip: '2001:db8::1/128', i: 2 },
      { ip: null, i: 3 },
    ]);
    expect(await verify()).toMatchObject({ ok: true, checked: await count() });
  });

  it('writes none of a batch, and poisons its transaction, when one of its events is bad', async () => {
    const before = await count();
    const outcome = await gw.app
      .get(DataSource)
      .transaction(async (manager) => {
        await manager.query('INSERT INTO audit_probe (id) VALUES ($1)', ['bad-batch']);
        return recordAuditBatch(gw.app.get(EventEmitter2), {
          manager,
          events: [event(), event({ upstreamStatus: 42 }), event()],
        }).catch((err: Error) => err.message);
      })
      .catch((err: Error) => `commit: ${err.message}`);
    expect(outcome).toMatch(/audit_events_upstream_status_check|cannot commit/);
    expect(await probeExists('bad-batch')).toBe(false);
    expect(await count()).toBe(before);
    expect(await recordAuditBatch(gw.app.get(EventEmitter2), { events: [] })).toEqual([]);
    await expect(recordAuditBatch(new EventEmitter2(), { events: [event()] })).rejects.toThrow(
      /no audit listener/,
    );
  });

  it('records from the worker process too', async () => {
    const receipt = await worker
      .get(DataSource)
      .transaction((manager) =>
        recordAudit(
          worker.get(EventEmitter2),
          event({ action: 'test.from-worker', actor: { type: 'system', id: null }, manager }),
        ),
      );
    expect(receipt.auditSeq).toBe(await count());
  });

  it('is append-only in the database itself', async () => {
    await expect(env.query("UPDATE audit_events SET repository = 'x' WHERE seq = 1")).rejects.toThrow(
      APPEND_ONLY,
    );
    // Statement-level: refused even when no row matches.
    await expect(env.query("UPDATE audit_events SET repository = 'x' WHERE false")).rejects.toThrow(
      APPEND_ONLY,
    );
    await expect(env.query('DELETE FROM audit_events WHERE seq = 1')).rejects.toThrow(APPEND_ONLY);
    await expect(env.query('DELETE FROM audit_events')).rejects.toThrow(APPEND_ONLY);
    await expect(env.query('TRUNCATE audit_events')).rejects.toThrow(APPEND_ONLY);
    // A row that does not extend the chain is refused too, whoever writes it.
    await expect(
      env.query(
        `INSERT INTO audit_events (id, seq, occurred_at, action, actor_type, outcome, prev_hash, hash)
         VALUES (gen_random_uuid(), (SELECT max(seq) + 1 FROM audit_events), now(), 'test.forged', 'system',
                 'info', $1, $1)`,
        ['0'.repeat(64)],
      ),
    ).rejects.toThrow(/does not extend the chain/);
    expect(await verify()).toMatchObject({ ok: true, checked: await count() });
  });

  it('lists events newest first, filtered, paged by cursor', async () => {
    const seed: Partial<AuditableEvent>[] = [
      { registry: 'lst', repository: 'team-a/api', action: 'deletion.requested', outcome: 'pending' },
      { registry: 'lst', repository: 'team-a/api', action: 'deletion.planned', outcome: 'info' },
      {
        registry: 'lst',
        repository: 'team-a/api',
        action: 'deletion.item.executed',
        outcome: 'failure',
        upstreamStatus: 405,
      },
      {
        registry: 'lst',
        repository: 'team-b/web',
        action: 'deletion.requested',
        actor: { type: 'service', id: 'ci' },
      },
      { registry: 'other', repository: 'team-a/api', action: 'deletion.requested' },
    ];
    for (const [i, overrides] of seed.entries()) await change(`list-${i}`, overrides);
    const [{ start }] = await env.query<{ start: Date }>(
      "SELECT occurred_at AS start FROM audit_events WHERE subject_id = 'list-0'",
    );
    const list = async (query: Record<string, string | number>) =>
      (await http().get('/api/v1/audit-events').query(query).expect(200)).body as {
        items: { seq: number; subject: { id: string } }[];
        nextCursor: string | null;
      };
    const ids = (page: { items: { subject: { id: string } }[] }) => page.items.map((e) => e.subject.id);

    expect(ids(await list({ registry: 'lst', repository: 'team-a/api' }))).toEqual([
      'list-2',
      'list-1',
      'list-0',
    ]);
    expect(ids(await list({ registry: 'lst', actor: 'ci' }))).toEqual(['list-3']);
    expect(ids(await list({ action: 'deletion.requested', from: start.toISOString() }))).toEqual([
      'list-4',
      'list-3',
      'list-0',
    ]);
    expect(ids(await list({ registry: 'lst', outcome: 'failure' }))).toEqual(['list-2']);
    expect(ids(await list({ subjectType: 'probe', subjectId: 'list-1' }))).toEqual(['list-1']);
    expect(ids(await list({ registry: 'lst', to: start.toISOString() }))).toEqual([]);
    expect(ids(await list({ registry: 'lst', from: new Date(Date.now() + 3600_000).toISOString() }))).toEqual(
      [],
    );

    const first = await list({ registry: 'lst', limit: 2 });
    expect(ids(first)).toEqual(['list-3', 'list-2']);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await list({ registry: 'lst', limit: 2, cursor: first.nextCursor! });
    expect(ids(second)).toEqual(['list-1', 'list-0']);
    expect(second.nextCursor).toBeNull();
    const all = await list({ limit: 500 });
    expect(all.items[0].seq).toBe(await count());

    for (const query of [
      { limit: 501 },
      { limit: 0 },
      { cursor: 'garbage' },
      { outcome: 'maybe' },
      { from: 'yesterday' },
      { admin: 'true' },
    ]) {
      const res = await http().get('/api/v1/audit-events').query(query).expect(400);
      expect(res.body.error.code, JSON.stringify(query)).toBe('VALIDATION_FAILED');
    }
  });

  it('serves both endpoints in the OpenAPI document', async () => {
    const spec = await http().get('/docs/openapi.json').expect(200);
    expect(Object.keys(spec.body.paths)).toEqual(
      expect.arrayContaining(['/api/v1/audit-events', '/api/v1/audit/verify']),
    );
  });

  describe('tampering', () => {
    // UPDATE and DELETE are refused, so tampering means an owner or superuser switching the guards off.
    async function unguarded(sql: string, params: unknown[] = []) {
      await env.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
      try {
        await env.query(sql, params);
      } finally {
        await env.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
      }
    }

    async function chainedRow(seq: number): Promise<ChainedRow & { hash: string }> {
      const [r] = await env.query<ChainedRow & { hash: string }>(
        `SELECT seq::int AS seq, id, occurred_at AS "occurredAt", action, actor_type AS "actorType",
                actor_id AS "actorId", actor_name AS "actorName", source_ip AS "sourceIp",
                request_id AS "requestId", registry, repository, tags, digest, outcome,
                upstream_status AS "upstreamStatus", subject_type AS "subjectType", subject_id AS "subjectId",
                details, prev_hash AS "prevHash", hash
           FROM audit_events WHERE seq = $1`,
        [seq],
      );
      return r;
    }

    const k = 5;

    it('finds an edited row', async () => {
      const original = await chainedRow(k);
      await unguarded('UPDATE audit_events SET repository = $1 WHERE seq = $2', ['evil/repo', k]);
      const res = await verify();
      expect(res).toEqual({
        ok: false,
        checked: k - 1,
        firstBrokenSeq: k,
        reason: 'hash does not match the row content',
        head: { seq: k - 1, hash: (await chainedRow(k - 1)).hash },
      });
      await unguarded('UPDATE audit_events SET repository = $1 WHERE seq = $2', [original.repository, k]);
      expect(await verify()).toMatchObject({ ok: true });
    });

    it('finds an edited row whose own hash was recomputed', async () => {
      const original = await chainedRow(k);
      const forged = { ...original, outcome: 'failure' };
      expect(forged.outcome).not.toBe(original.outcome);
      await unguarded('UPDATE audit_events SET outcome = $1, hash = $2 WHERE seq = $3', [
        forged.outcome,
        chainHash(forged),
        k,
      ]);
      expect(await verify()).toMatchObject({
        ok: false,
        firstBrokenSeq: k + 1,
        reason: 'prev_hash does not match the hash of the row before',
      });
      await unguarded('UPDATE audit_events SET outcome = $1, hash = $2 WHERE seq = $3', [
        original.outcome,
        original.hash,
        k,
      ]);
      expect(await verify()).toMatchObject({ ok: true });
    });

    it('finds a deleted row', async () => {
      await env.query(`CREATE TABLE audit_saved AS SELECT * FROM audit_events WHERE seq = ${k}`);
      await unguarded('DELETE FROM audit_events WHERE seq = $1', [k]);
      expect(await verify()).toMatchObject({
        ok: false,
        checked: k - 1,
        firstBrokenSeq: k,
        reason: `row ${k} is missing (the next row is ${k + 1})`,
      });
      await unguarded('INSERT INTO audit_events SELECT * FROM audit_saved');
      expect(await verify()).toMatchObject({ ok: true, checked: await count() });
    });

    it('checks the chain across pages', async () => {
      const audit = gw.app.get(AuditService);
      const total = await count();
      expect(await audit.verify(7)).toMatchObject({ ok: true, checked: total });
      await unguarded('UPDATE audit_events SET tags = $1 WHERE seq = $2', [['sneaky'], 150]);
      expect(await audit.verify(7)).toMatchObject({ ok: false, checked: 149, firstBrokenSeq: 150 });
      await unguarded('UPDATE audit_events SET tags = $1 WHERE seq = $2', [[], 150]);
      expect(await audit.verify(7)).toMatchObject({ ok: true, checked: total });
    });
  });
});
