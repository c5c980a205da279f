import { accessScope, scopeCondition, scopeIsEmpty, SqlParams } from '../auth/access-scope.js';
import type { Access } from '../auth/access.js';
import { decodeListCursor, encodeListCursor, type CursorScope } from '../common/cursor.js';
import { ValidationError } from '../common/domain-error.js';
import { prefixRange, repositoryMatch } from '../common/glob-sql.js';
import { checkTimeRange, withoutNulls, type NullableFilter } from '../common/list-filter.js';
import type { AuditEventView } from './audit.dto.js';

/*
 * The one reader of audit lists: REST pages, GraphQL pages and exports all run this query. Rows are
 * keyset-paged on seq, which is the chain's order and also time order (occurred_at never decreases along
 * the chain, see AuditService.appendIn), so every filter is an index range read ending in seq: `registry`,
 * `actor`, `action`, `outcome` each have an index (x, seq), and a time range becomes a seq range first.
 * Text comparisons that may use a range (a glob's literal prefix, an action prefix) are in byte order,
 * COLLATE "C", like their indexes, so they are right whatever the database's collation.
 */

export type SortOrder = 'asc' | 'desc';

export interface AuditFilter {
  registry?: string;
  /** A repository name or a glob (`team-a/**`). */
  repository?: string;
  /** Actor id. */
  actor?: string;
  actorType?: string;
  /** An action (`deletion.item.failed`) or every action under a prefix (`deletion.*`). */
  action?: string;
  outcome?: string;
  subjectType?: string;
  subjectId?: string;
  /** Inclusive. */
  from?: Date;
  /** Exclusive. */
  to?: Date;
}

export interface AuditQuery {
  /** Null fields filter nothing (GraphQL's unset variables). */
  filter: NullableFilter<AuditFilter>;
  sort?: SortOrder;
  limit: number;
  cursor?: string;
  /** The caller: rows outside its `audit:read` grants are never read. */
  access: Access;
  /** Only rows up to this seq (an export pins the end of the trail when it starts). */
  maxSeq?: number;
}

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

const COLUMNS = `e.seq, e.id, e.occurred_at, e.action, e.actor_type, e.actor_id, e.actor_name, e.source_ip,
  e.request_id, e.registry, e.repository, e.tags, e.digest, e.outcome, e.upstream_status, e.subject_type,
  e.subject_id, e.details, e.prev_hash, e.hash`;

const ACTION_PREFIX = /^([a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*)\.\*$/;

export interface AuditSql {
  sql: string;
  params: unknown[];
  /** No grant reaches any row: nothing to ask the database. */
  empty: boolean;
}

/** The SQL of one page (limit + 1 rows, to know whether another follows). */
export function auditPageSql(q: AuditQuery): AuditSql {
  const sort = q.sort ?? 'desc';
  const scope = accessScope(q.access, 'audit:read');
  const params = new SqlParams();
  const p = (v: unknown) => params.p(v);
  const where: string[] = [];
  const f = withoutNulls(q.filter);
  checkTimeRange(f.from, f.to);
  if (f.registry !== undefined) where.push(`e.registry = ${p(f.registry)}`);
  if (f.repository !== undefined) {
    // COLLATE "C": byte order, the order of the (registry, repository, seq) index (migration 1795400000500).
    const m = repositoryMatch(f.repository);
    if (m.exact !== undefined) where.push(`e.repository COLLATE "C" = ${p(m.exact)}`);
    else {
      if (m.range)
        where.push(
          `e.repository COLLATE "C" >= ${p(m.range.from)}`,
          `e.repository COLLATE "C" < ${p(m.range.to)}`,
        );
      where.push(`e.repository ~ ${p(m.regex)}`);
    }
  }
  if (f.actor !== undefined) where.push(`e.actor_id = ${p(f.actor)}`);
  if (f.actorType !== undefined) where.push(`e.actor_type = ${p(f.actorType)}`);
  if (f.action !== undefined) {
    const prefix = ACTION_PREFIX.exec(f.action);
    if (prefix) {
      const range = prefixRange(`${prefix[1]}.`);
      where.push(`e.action COLLATE "C" >= ${p(range.from)}`, `e.action COLLATE "C" < ${p(range.to)}`);
    } else if (f.action.includes('*'))
      throw new ValidationError('action is an action or a prefix ending in ".*", e.g. deletion.*', {
        field: 'action',
      });
    else where.push(`e.action COLLATE "C" = ${p(f.action)}`);
  }
  if (f.outcome !== undefined) where.push(`e.outcome = ${p(f.outcome)}`);
  if (f.subjectType !== undefined) where.push(`e.subject_type = ${p(f.subjectType)}`);
  if (f.subjectId !== undefined) where.push(`e.subject_id = ${p(f.subjectId)}`);
  if (f.from !== undefined) {
    const from = p(f.from);
    // The first seq at or after `from`: a seq bound lets every (x, seq) index serve the time range too.
    where.push(
      `e.seq >= COALESCE((SELECT s.seq FROM audit_events s WHERE s.occurred_at >= ${from}
                          ORDER BY s.occurred_at, s.seq LIMIT 1), 9223372036854775807)`,
      `e.occurred_at >= ${from}`,
    );
  }
  if (f.to !== undefined) {
    const to = p(f.to);
    where.push(
      `e.seq <= COALESCE((SELECT s.seq FROM audit_events s WHERE s.occurred_at < ${to}
                          ORDER BY s.occurred_at DESC, s.seq DESC LIMIT 1), 0)`,
      `e.occurred_at < ${to}`,
    );
  }
  if (q.maxSeq !== undefined) where.push(`e.seq <= ${p(q.maxSeq)}`);
  const cursor = decodeListCursor(q.cursor, auditCursorScope(q), isSeqCursor);
  if (cursor) where.push(sort === 'desc' ? `e.seq < ${p(cursor.seq)}` : `e.seq > ${p(cursor.seq)}`);
  const inScope = scopeCondition(scope, params, { registry: 'e.registry', repository: 'e.repository' });
  if (inScope) where.push(inScope);
  const sql = `SELECT ${COLUMNS} FROM audit_events e
    ${where.length ? `WHERE ${where.join('\n      AND ')}` : ''}
    ORDER BY e.seq ${sort === 'desc' ? 'DESC' : 'ASC'}
    LIMIT ${p(q.limit + 1)}`;
  return { sql, params: params.values, empty: scopeIsEmpty(scope) };
}

/** The page's rows and the cursor of the next page, from the limit + 1 rows the query returned. */
export function auditPage(
  rows: Row[],
  q: Pick<AuditQuery, 'filter' | 'limit' | 'sort'>,
): { items: AuditEventView[]; nextCursor: string | null } {
  const page = rows.slice(0, q.limit);
  const last = page.at(-1);
  return {
    items: page.map(auditRowView),
    nextCursor:
      rows.length > q.limit && last ? encodeListCursor(auditCursorScope(q), { seq: Number(last.seq) }) : null,
  };
}

/** What an audit cursor continues: this filter in this order (REST, GraphQL and exports alike). */
function auditCursorScope(q: Pick<AuditQuery, 'filter' | 'sort'>): CursorScope {
  return { list: 'audit-events', order: q.sort ?? 'desc', filter: withoutNulls(q.filter) };
}

export type AuditRow = Row;

export function auditRowView(r: Row): AuditEventView {
  return {
    seq: Number(r.seq),
    id: r.id,
    occurredAt: r.occurred_at.toISOString(),
    action: r.action,
    actor: { type: r.actor_type, id: r.actor_id, name: r.actor_name },
    sourceIp: r.source_ip,
    requestId: r.request_id,
    registry: r.registry,
    repository: r.repository,
    tags: r.tags,
    digest: r.digest,
    outcome: r.outcome,
    upstreamStatus: r.upstream_status,
    subject:
      r.subject_type !== null && r.subject_id !== null ? { type: r.subject_type, id: r.subject_id } : null,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

function isSeqCursor(v: unknown): v is { seq: number } {
  const seq = (v as { seq?: unknown })?.seq;
  return typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0;
}
