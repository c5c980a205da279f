import { createHash } from 'node:crypto';
import type { ObjectLiteral, SelectQueryBuilder } from 'typeorm';
import { ValidationError } from './domain-error.js';

/** Opaque cursors: base64url JSON, so clients cannot depend on their shape. */
export function encodeCursor(value: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function decodeCursor<T extends Record<string, unknown>>(
  cursor: string | undefined,
  check: (v: unknown) => v is T,
  maxLength = 2048,
): T | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  if (cursor.length > maxLength) throw new ValidationError('cursor is too long', { field: 'cursor' });
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (check(v)) return v;
  } catch {
    /* fall through to the error below */
  }
  throw new ValidationError('cursor is not valid', { field: 'cursor' });
}

/*
 * A page cursor continues only the list it came from: the same kind of list, in the same order, with the
 * same filter, under the same parent (a deletion request's items, a subscription's deliveries). The cursor
 * says which: `l` the kind, `o` the order, `f` a short hash of the normalized filter, `p` a short hash
 * of the parent's id, beside `at`, the position in the list. Another list's cursor is refused
 * (VALIDATION_FAILED, field `cursor`, a message saying what differs), never read as a position here.
 */

/** What a cursor belongs to. */
export interface CursorScope {
  /** The kind of list: `audit-events`, `deletions`, `deletion-items`, … */
  list: string;
  order: 'asc' | 'desc';
  /** Everything that narrows the list; null and absent fields alike filter nothing and are left out. */
  filter?: Record<string, unknown>;
  /** The record a nested list belongs to: `{kind: 'deletion request', id}`. */
  parent?: { kind: string; id: string };
}

interface Envelope {
  l: string;
  o: 'asc' | 'desc';
  f: string;
  p?: string;
  at: unknown;
}

const START_OVER = 'start from the first page (leave cursor out)';

/** A cursor of `scope` at `position` (what the list reads back with decodeListCursor). */
export function encodeListCursor(scope: CursorScope, position: Record<string, unknown>): string {
  const envelope: Envelope = {
    l: scope.list,
    o: scope.order,
    f: scopeHash(scope.filter ?? {}),
    at: position,
  };
  if (scope.parent) envelope.p = scopeHash(scope.parent.id);
  return encodeCursor(envelope as unknown as Record<string, unknown>);
}

/**
 * The position a cursor of `scope` holds, or undefined without one. A cursor of another list, order,
 * filter or parent is VALIDATION_FAILED naming which; so is one without a scope (handed out before
 * cursors carried it) unless `legacy` reads it (a list whose old cursors could only come from itself).
 */
export function decodeListCursor<T extends Record<string, unknown>>(
  cursor: string | undefined,
  scope: CursorScope,
  check: (v: unknown) => v is T,
  legacy?: (v: unknown) => T | undefined,
): T | undefined {
  const v = decodeCursor(cursor, isObject);
  if (v === undefined) return undefined;
  if (!isEnvelope(v)) {
    if (v.l !== undefined || v.at !== undefined)
      throw new ValidationError('cursor is not valid', { field: 'cursor' });
    const old = legacy?.(v);
    if (old !== undefined) return old;
    throw refused(
      `the cursor comes from an earlier version of the gateway and is no longer accepted: ${START_OVER}`,
    );
  }
  if (v.l !== scope.list)
    throw refused(
      `the cursor belongs to another list (${v.l}), not to ${scope.list}: a cursor continues only the list it came from; ${START_OVER}`,
    );
  if (scope.parent && v.p !== scopeHash(scope.parent.id))
    throw refused(`the cursor belongs to the ${scope.list} of another ${scope.parent.kind}; ${START_OVER}`);
  if (v.o !== scope.order)
    throw refused(
      `the cursor belongs to this list sorted the other way (${v.o}): pass the same sort, or ${START_OVER}`,
    );
  if (v.f !== scopeHash(scope.filter ?? {}))
    throw refused(
      `the cursor belongs to this list with another filter: pass the filter of the page it came from, or ${START_OVER}`,
    );
  if (!check(v.at)) throw new ValidationError('cursor is not valid', { field: 'cursor' });
  return v.at;
}

function refused(message: string): ValidationError {
  return new ValidationError(message, { field: 'cursor' });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isEnvelope(v: Record<string, unknown>): v is Record<string, unknown> & Envelope {
  return (
    typeof v.l === 'string' &&
    /^[a-z][a-z-]{0,39}$/.test(v.l) &&
    (v.o === 'asc' || v.o === 'desc') &&
    typeof v.f === 'string' &&
    (v.p === undefined || typeof v.p === 'string') &&
    v.at !== undefined
  );
}

/** 72 bits of sha256 over the value's canonical JSON: enough to tell filters apart, short in a URL. */
function scopeHash(value: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(value)))
    .digest('base64url')
    .slice(0, 12);
}

/** Keys sorted, null and undefined fields left out, times as ISO strings: one form per filter. */
function canonical(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(canonical);
  if (isObject(value))
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined && v !== null)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, canonical(v)]),
    );
  return value;
}

/*
 * Newest-first (or oldest-first) keyset paging on (created_at, id). Cursors carry created_at in whole
 * microseconds, as Postgres stores it: a JS Date keeps milliseconds, and a cursor truncated to one
 * would skip the rows created later within that millisecond.
 */

/** SQL for `<alias>.created_at` in microseconds since the epoch, as text (select it as the cursor's `us`). */
export const createdMicros = (alias: string) =>
  `(extract(epoch FROM ${alias}.created_at) * 1000000)::bigint::text`;

/** The rows after the cursor's row in (created_at, id) order; `us` and `id` are SQL parameter placeholders. */
export const createdAfter = (alias: string, us: string, id: string, desc: boolean) =>
  `(${alias}.created_at, ${alias}.id) ${desc ? '<' : '>'} (timestamptz 'epoch' + ${us}::bigint * interval '1 microsecond', ${id}::uuid)`;

export type CreatedCursor = { us: string; id: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isCreatedCursor(v: unknown): v is CreatedCursor {
  const c = v as { us?: unknown; id?: unknown };
  return typeof c?.us === 'string' && /^\d{1,19}$/.test(c.us) && typeof c.id === 'string' && UUID.test(c.id);
}

/** The position of a cursor of a list in (created_at, id) order (`scope.order` says which way). */
export function decodeCreatedCursor(
  cursor: string | undefined,
  scope: CursorScope,
): CreatedCursor | undefined {
  return decodeListCursor(cursor, scope, isCreatedCursor);
}

/** The cursor after a row (its created_at in microseconds, createdMicros, and its id) of such a list. */
export function encodeCreatedCursor(scope: CursorScope, us: string, id: string): string {
  return encodeListCursor(scope, { us, id });
}

/**
 * A page of `qb`'s rows (filtered already, by `scope.filter`; `alias` is its main entity) in (created_at,
 * id) order, newest first when `scope.order` is desc, after `cursor` (decodeCreatedCursor): the items and
 * the next page's cursor, or null on the last page. `qb` joins to-one relations only: its raw rows are
 * read beside its entities, one for one.
 */
export async function createdPage<T extends ObjectLiteral & { id: string }>(
  qb: SelectQueryBuilder<T>,
  alias: string,
  { limit, cursor, scope }: { limit: number; cursor?: string; scope: CursorScope },
): Promise<{ items: T[]; nextCursor: string | null }> {
  const desc = scope.order === 'desc';
  const after = decodeCreatedCursor(cursor, scope);
  if (after)
    qb.andWhere(createdAfter(alias, ':cursorUs', ':cursorId', desc), {
      cursorUs: after.us,
      cursorId: after.id,
    });
  const order = desc ? 'DESC' : 'ASC';
  const { entities, raw } = await qb
    .addSelect(createdMicros(alias), 'created_us')
    .orderBy(`${alias}.created_at`, order)
    .addOrderBy(`${alias}.id`, order)
    .limit(limit + 1)
    .getRawAndEntities<{ created_us: string }>();
  const items = entities.slice(0, limit);
  const last = items[limit - 1];
  return {
    items,
    nextCursor:
      entities.length > limit ? encodeCreatedCursor(scope, raw[limit - 1].created_us, last.id) : null,
  };
}
