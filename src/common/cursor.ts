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

export type CreatedCursor = {
  us: string;
  id: string;
  /** Set on cursors of oldest-first lists. */
  asc?: true;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isCreatedCursor(v: unknown): v is CreatedCursor {
  const c = v as { us?: unknown; id?: unknown; asc?: unknown };
  return (
    typeof c?.us === 'string' &&
    /^\d{1,19}$/.test(c.us) &&
    typeof c.id === 'string' &&
    UUID.test(c.id) &&
    (c.asc === undefined || c.asc === true)
  );
}

/**
 * The cursor of a list in (created_at, id) order, newest first when `desc`. A cursor of the other order
 * is refused: its position would be read the wrong way round.
 */
export function decodeCreatedCursor(cursor: string | undefined, desc: boolean): CreatedCursor | undefined {
  const after = decodeCursor(cursor, isCreatedCursor);
  if (after && (after.asc === true) === desc)
    throw new ValidationError('the cursor belongs to a list sorted the other way', { field: 'cursor' });
  return after;
}

/** The cursor after a row (its created_at in microseconds, createdMicros, and its id) of such a list. */
export function encodeCreatedCursor(us: string, id: string, desc: boolean): string {
  return encodeCursor({ us, id, ...(desc ? {} : { asc: true }) });
}

/**
 * A page of `qb`'s rows (filtered already; `alias` is its main entity) in (created_at, id) order, newest
 * first when `desc`, after `cursor` (decodeCreatedCursor): the items and the next page's cursor, or null on
 * the last page. `qb` joins to-one relations only: its raw rows are read beside its entities, one for one.
 */
export async function createdPage<T extends ObjectLiteral & { id: string }>(
  qb: SelectQueryBuilder<T>,
  alias: string,
  { limit, cursor, desc }: { limit: number; cursor?: string; desc: boolean },
): Promise<{ items: T[]; nextCursor: string | null }> {
  const after = decodeCreatedCursor(cursor, desc);
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
      entities.length > limit ? encodeCreatedCursor(raw[limit - 1].created_us, last.id, desc) : null,
  };
}
