import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { decodeCursor, encodeCursor } from '../common/cursor.js';
import { ValidationError } from '../common/domain-error.js';
import { ChainedRow, chainHash, toJsonData } from './audit-chain.js';
import type { AuditableEvent, AuditReceipt } from './audit-event.js';
import { AuditEventPage, AuditEventQueryDto, AuditEventView, AuditVerification } from './audit.dto.js';
import { AuditEventEntity } from './audit.entity.js';

// Same number in every process: API replicas and workers append to one chain.
const APPEND_LOCK = 0x7267_6175_6474;
const VERIFY_PAGE = 5000;

const COLUMNS = `seq, id, occurred_at, action, actor_type, actor_id, actor_name, source_ip, request_id,
  registry, repository, tags, digest, outcome, upstream_status, subject_type, subject_id, details,
  prev_hash, hash`;

interface Row {
  seq: string;
  id: string;
  occurred_at: Date;
  action: string;
  actor_type: string;
  actor_id: string | null;
  actor_name: string | null;
  source_ip: string | null;
  request_id: string | null;
  registry: string | null;
  repository: string | null;
  tags: string[];
  digest: string | null;
  outcome: string;
  upstream_status: number | null;
  subject_type: string | null;
  subject_id: string | null;
  details: Record<string, unknown> | null;
  prev_hash: string | null;
  hash: string;
}

/** The append-only, hash-chained trail: append, verify, list. */
@Injectable()
export class AuditService {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * Appends in the caller's transaction when given one, else in a transaction of its own. A failure in
   * the caller's transaction leaves it aborted, so the change it was recording cannot commit without it.
   */
  async append(event: AuditableEvent, manager?: EntityManager): Promise<AuditReceipt> {
    if (!manager) return this.ds.transaction((m) => this.appendIn(m, event));
    // Outside a transaction the advisory lock would be released before the insert is even visible,
    // and the row would not share the fate of the change it records.
    if (!manager.queryRunner?.isTransactionActive)
      throw new Error('audit events must be written with the EntityManager of an open transaction');
    try {
      return await this.appendIn(manager, event);
    } catch (err) {
      await manager
        .query(`DO $$ BEGIN RAISE EXCEPTION 'audit write failed; this transaction cannot commit'; END $$`)
        .catch(() => undefined);
      throw err;
    }
  }

  private async appendIn(m: EntityManager, event: AuditableEvent): Promise<AuditReceipt> {
    const content = contentOf(event);
    await m.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]);
    // The database's clock, not this process's: replicas' clocks disagree, the chain's order must not.
    // Truncated to what a JS Date holds, and the IP in inet's own output form, because the verifier
    // hashes what it reads back and that must be what was hashed here.
    const [head] = (await m.query(
      `SELECT date_trunc('milliseconds', clock_timestamp()) AS now, $1::inet AS source_ip, last.seq, last.hash
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1) last ON true`,
      [content.sourceIp],
    )) as { now: Date; source_ip: string | null; seq: string | null; hash: string | null }[];
    const row: ChainedRow = {
      ...content,
      seq: Number(head.seq ?? 0) + 1,
      id: randomUUID(),
      occurredAt: head.now,
      sourceIp: head.source_ip,
      prevHash: head.hash,
    };
    const hash = chainHash(row);
    await m.query(
      `INSERT INTO audit_events (${COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
      [
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
        hash,
      ],
    );
    return { auditSeq: row.seq, hash };
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
      )) as Row[];
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

  async list(q: AuditEventQueryDto): Promise<AuditEventPage> {
    const limit = q.limit ?? 100;
    const after = decodeCursor(q.cursor, isSeqCursor);
    const qb = this.ds.getRepository(AuditEventEntity).createQueryBuilder('e');
    if (q.registry !== undefined) qb.andWhere('e.registry = :registry', { registry: q.registry });
    if (q.repository !== undefined) qb.andWhere('e.repository = :repository', { repository: q.repository });
    if (q.actor !== undefined) qb.andWhere('e.actorId = :actor', { actor: q.actor });
    if (q.action !== undefined) qb.andWhere('e.action = :action', { action: q.action });
    if (q.outcome !== undefined) qb.andWhere('e.outcome = :outcome', { outcome: q.outcome });
    if (q.subjectType !== undefined) qb.andWhere('e.subjectType = :st', { st: q.subjectType });
    if (q.subjectId !== undefined) qb.andWhere('e.subjectId = :sid', { sid: q.subjectId });
    if (q.from !== undefined) qb.andWhere('e.occurredAt >= :from', { from: instant(q.from, 'from') });
    if (q.to !== undefined) qb.andWhere('e.occurredAt < :to', { to: instant(q.to, 'to') });
    if (after) qb.andWhere('e.seq < :before', { before: after.before });
    const rows = await qb
      .orderBy('e.seq', 'DESC')
      .take(limit + 1)
      .getMany();
    const page = rows.slice(0, limit);
    return {
      items: page.map(toView),
      nextCursor: rows.length > limit ? encodeCursor({ before: Number(page[page.length - 1].seq) }) : null,
    };
  }
}

type Content = Omit<ChainedRow, 'seq' | 'id' | 'occurredAt' | 'prevHash'>;

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

function isSeqCursor(v: unknown): v is { before: number } {
  const before = (v as { before?: unknown })?.before;
  return typeof before === 'number' && Number.isSafeInteger(before) && before > 0;
}

function instant(value: string, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ValidationError(`${field} is not a valid time`, { field });
  return d;
}

function fromRow(r: Row): ChainedRow {
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

function toView(e: AuditEventEntity): AuditEventView {
  return {
    seq: Number(e.seq),
    id: e.id,
    occurredAt: e.occurredAt.toISOString(),
    action: e.action,
    actor: { type: e.actorType, id: e.actorId, name: e.actorName },
    sourceIp: e.sourceIp,
    requestId: e.requestId,
    registry: e.registry,
    repository: e.repository,
    tags: e.tags,
    digest: e.digest,
    outcome: e.outcome,
    upstreamStatus: e.upstreamStatus,
    subject: e.subjectType !== null && e.subjectId !== null ? { type: e.subjectType, id: e.subjectId } : null,
    details: e.details,
    prevHash: e.prevHash,
    hash: e.hash,
  };
}
