import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import type { Access } from '../auth/access.js';
import { instant } from '../common/list-filter.js';
import { ChainedRow, chainHash, toJsonData } from './audit-chain.js';
import { AUDIT_APPEND_LOCK, type AuditableEvent, type AuditReceipt } from './audit-event.js';
import { auditPage, auditPageSql, type AuditFilter, type AuditQuery, type AuditRow } from './audit-query.js';
import { AuditEventPage, AuditEventQueryDto, AuditEventView, AuditVerification } from './audit.dto.js';

// Same number in every process: API replicas and workers append to one chain.
const APPEND_LOCK = AUDIT_APPEND_LOCK;
const VERIFY_PAGE = 5000;
/** Rows per INSERT: 20 parameters each, well under Postgres's 65,535. */
const INSERT_ROWS = 1000;
/** Rows per read while exporting. */
const EXPORT_PAGE = 1000;

const COLUMNS = `seq, id, occurred_at, action, actor_type, actor_id, actor_name, source_ip, request_id,
  registry, repository, tags, digest, outcome, upstream_status, subject_type, subject_id, details,
  prev_hash, hash`;

/** The append-only, hash-chained trail: append, verify, list. */
@Injectable()
export class AuditService {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * Appends in the caller's transaction when given one, else in a transaction of its own. A failure in
   * the caller's transaction leaves it aborted, so the change it was recording cannot commit without it.
   */
  async append(event: AuditableEvent, manager?: EntityManager): Promise<AuditReceipt> {
    const [receipt] = await this.appendMany([event], manager);
    return receipt;
  }

  /**
   * Appends the events in order as consecutive links of the chain: one lock, one read of the head and
   * one INSERT per batch instead of three round trips per row (a worker settling 50 deletes writes 50).
   */
  async appendMany(events: AuditableEvent[], manager?: EntityManager): Promise<AuditReceipt[]> {
    if (!manager) return this.ds.transaction((m) => this.appendIn(m, events));
    // Outside a transaction the advisory lock would be released before the insert is even visible,
    // and the rows would not share the fate of the change they record.
    if (!manager.queryRunner?.isTransactionActive)
      throw new Error('audit events must be written with the EntityManager of an open transaction');
    try {
      return await this.appendIn(manager, events);
    } catch (err) {
      await manager
        .query(`DO $$ BEGIN RAISE EXCEPTION 'audit write failed; this transaction cannot commit'; END $$`)
        .catch(() => undefined);
      throw err;
    }
  }

  private async appendIn(m: EntityManager, events: AuditableEvent[]): Promise<AuditReceipt[]> {
    const contents = events.map(contentOf);
    if (contents.length === 0) return [];
    await m.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]);
    // The database's clock, not this process's: replicas' clocks disagree, the chain's order must not.
    // Truncated to what a JS Date holds, and each IP in inet's own output form (to_json uses it),
    // because the verifier hashes what it reads back and that must be what was hashed here.
    const ips = [...new Set(contents.map((c) => c.sourceIp).filter((ip): ip is string => ip !== null))];
    // Never earlier than the row before, so time order is chain order even if the clock steps back:
    // lists turn time ranges into seq ranges (audit-query.ts).
    const [head] = (await m.query(
      `SELECT GREATEST(date_trunc('milliseconds', clock_timestamp()), last.occurred_at) AS now, last.seq, last.hash,
              (SELECT json_object_agg(ip, ip::inet) FROM unnest($1::text[]) AS ip) AS ips
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (SELECT seq, hash, occurred_at FROM audit_events ORDER BY seq DESC LIMIT 1) last
           ON true`,
      [ips],
    )) as { now: Date; seq: string | null; hash: string | null; ips: Record<string, string> | null }[];
    let seq = Number(head.seq ?? 0);
    let prevHash = head.hash;
    const rows: (ChainedRow & { hash: string })[] = contents.map((content) => {
      const row: ChainedRow = {
        ...content,
        seq: ++seq,
        id: randomUUID(),
        occurredAt: head.now,
        sourceIp: content.sourceIp === null ? null : head.ips![content.sourceIp],
        prevHash,
      };
      prevHash = chainHash(row);
      return { ...row, hash: prevHash };
    });
    for (let i = 0; i < rows.length; i += INSERT_ROWS) await insertRows(m, rows.slice(i, i + INSERT_ROWS));
    return rows.map((r) => ({ auditSeq: r.seq, hash: r.hash }));
  }

  /**
   * Walks the chain in seq order, a page at a time, and stops at the first row that is missing, does not
   * link to its predecessor, or does not hash to what it stores.
   */
  async verify(pageSize = VERIFY_PAGE): Promise<AuditVerification> {
    let head: { seq: number; hash: string } | null = null;
    let checked = 0;
    const broken = (firstBrokenSeq: number, reason: string): AuditVerification => ({
      ok: false,
      checked,
      firstBrokenSeq,
      reason,
      head,
    });
    for (;;) {
      const after: number = head?.seq ?? 0;
      const rows = (await this.ds.query(
        `SELECT ${COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`,
        [after, pageSize],
      )) as AuditRow[];
      for (const r of rows) {
        const row = fromRow(r);
        const expected: number = (head?.seq ?? 0) + 1;
        if (row.seq !== expected)
          return broken(expected, `row ${expected} is missing (the next row is ${row.seq})`);
        if (row.prevHash !== (head?.hash ?? null))
          return broken(row.seq, 'prev_hash does not match the hash of the row before');
        if (chainHash(row) !== r.hash) return broken(row.seq, 'hash does not match the row content');
        checked++;
        head = { seq: row.seq, hash: r.hash };
      }
      if (rows.length < pageSize) return { ok: true, checked, head };
    }
  }

  /** One page of the trail as `access` may see it (REST and GraphQL lists). */
  async list(q: AuditEventQueryDto, access: Access): Promise<AuditEventPage> {
    return this.page({
      filter: auditFilterOf(q),
      sort: q.sort ?? 'desc',
      limit: q.limit ?? 100,
      cursor: q.cursor,
      access,
    });
  }

  async page(query: AuditQuery): Promise<AuditEventPage> {
    const { sql, params, empty } = auditPageSql(query);
    if (empty) return { items: [], nextCursor: null };
    return auditPage((await this.ds.query(sql, params)) as AuditRow[], query);
  }

  /**
   * Every event of the query, a page at a time (constant memory, however long the trail): the pages are
   * keyset reads, so no connection is held while the client is slow. What it reads is fixed when it
   * starts: the trail only grows at its end, and the end is pinned.
   */
  async *stream(query: Omit<AuditQuery, 'limit'>, pageSize = EXPORT_PAGE): AsyncGenerator<AuditEventView> {
    const [{ max }] = (await this.ds.query(
      'SELECT COALESCE(max(seq), 0)::bigint AS max FROM audit_events',
    )) as {
      max: string;
    }[];
    let cursor = query.cursor;
    for (;;) {
      const page = await this.page({ ...query, cursor, limit: pageSize, maxSeq: Number(max) });
      yield* page.items;
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  }
}

/** The REST query's filter, times parsed. */
export function auditFilterOf(q: AuditEventQueryDto): AuditFilter {
  return {
    registry: q.registry,
    repository: q.repository,
    actor: q.actor,
    actorType: q.actorType,
    action: q.action,
    outcome: q.outcome,
    subjectType: q.subjectType,
    subjectId: q.subjectId,
    from: q.from === undefined ? undefined : instant(q.from, 'from'),
    to: q.to === undefined ? undefined : instant(q.to, 'to'),
  };
}

type Content = Omit<ChainedRow, 'seq' | 'id' | 'occurredAt' | 'prevHash'>;

/**
 * One multi-row INSERT. The chain trigger runs per row and sees the rows this statement inserted before
 * it, in VALUES order, so each row still has to extend the one before.
 */
async function insertRows(m: EntityManager, rows: (ChainedRow & { hash: string })[]): Promise<void> {
  const width = 20;
  const values = rows.map(
    (_, r) => `(${Array.from({ length: width }, (_, c) => `$${r * width + c + 1}`).join(', ')})`,
  );
  await m.query(
    `INSERT INTO audit_events (${COLUMNS}) VALUES ${values.join(', ')}`,
    rows.flatMap((row) => [
      row.seq,
      row.id,
      row.occurredAt,
      row.action,
      row.actorType,
      row.actorId,
      row.actorName,
      row.sourceIp,
      row.requestId,
      row.registry,
      row.repository,
      row.tags,
      row.digest,
      row.outcome,
      row.upstreamStatus,
      row.subjectType,
      row.subjectId,
      row.details === null ? null : JSON.stringify(row.details),
      row.prevHash,
      row.hash,
    ]),
  );
}

/**
 * The event's fields as they will be stored. Types are checked here because a value the database would
 * coerce (a number into a text column, "404" into an integer) would read back different from what was
 * hashed; what the values may be (actions, outcomes, sizes) is the table's constraints' job.
 */
function contentOf(e: AuditableEvent): Content {
  const text = (field: string, v: unknown): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') throw new TypeError(`audit event ${field} must be a string`);
    return v;
  };
  const tags = e.tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string'))
    throw new TypeError('audit event tags must be an array of strings');
  const status = e.upstreamStatus ?? null;
  if (status !== null && !Number.isInteger(status))
    throw new TypeError('audit event upstreamStatus must be an integer');
  const details = e.details ?? null;
  if (details !== null && (typeof details !== 'object' || Array.isArray(details)))
    throw new TypeError('audit event details must be an object');
  return {
    action: text('action', e.action)!,
    actorType: text('actor.type', e.actor?.type)!,
    actorId: text('actor.id', e.actor?.id),
    actorName: text('actor.name', e.actor?.name),
    sourceIp: text('sourceIp', e.sourceIp),
    requestId: text('requestId', e.requestId),
    registry: text('registry', e.registry),
    repository: text('repository', e.repository),
    tags: [...tags],
    digest: text('digest', e.digest),
    outcome: text('outcome', e.outcome)!,
    upstreamStatus: status,
    subjectType: text('subject.type', e.subject?.type),
    subjectId: text('subject.id', e.subject?.id),
    details: details === null ? null : toJsonData(details),
  };
}

function fromRow(r: AuditRow): ChainedRow {
  return {
    seq: Number(r.seq),
    id: r.id,
    occurredAt: r.occurred_at,
    action: r.action,
    actorType: r.actor_type,
    actorId: r.actor_id,
    actorName: r.actor_name,
    sourceIp: r.source_ip,
    requestId: r.request_id,
    registry: r.registry,
    repository: r.repository,
    tags: r.tags,
    digest: r.digest,
    outcome: r.outcome,
    upstreamStatus: r.upstream_status,
    subjectType: r.subject_type,
    subjectId: r.subject_id,
    details: r.details,
    prevHash: r.prev_hash,
  };
}
