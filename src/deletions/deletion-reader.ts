import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { accessScope, SqlParams } from '../auth/access-scope.js';
import { DENY_ALL } from '../auth/access.js';
import {
  createdAfter,
  createdMicros,
  decodeCreatedCursor,
  decodeListCursor,
  encodeCreatedCursor,
  encodeListCursor,
  type CursorScope,
} from '../common/cursor.js';
import { repositoryMatch } from '../common/glob-sql.js';
import { checkTimeRange, withoutNulls, type NullableFilter } from '../common/list-filter.js';
import type { SortOrder } from '../common/graphql-types.js';
import type { RequestContext } from '../common/request-context.js';
import type { DeletionItemView, DeletionRequestView } from './deletion.dto.js';
import type {
  DeletionItemEntity,
  DeletionItemStatus,
  DeletionRequestEntity,
  DeletionStatus,
} from './deletion.entity.js';
import { countsOf, itemView, requestView } from './deletion.service.js';

/*
 * The GraphQL reads of deletion requests, built for batching: a page of requests with their counts is one
 * query, the items of any number of requests one more, and lookups by id (audit events' subjects) one.
 */

export interface DeletionFilter {
  registry?: string;
  /** A repository name or glob: requests with at least one item there. */
  repository?: string;
  actor?: string;
  status?: DeletionStatus[];
  from?: Date;
  to?: Date;
}

/** A request as its readers need it: the view with counts, and the repositories its items touch. */
export interface LoadedDeletion {
  view: DeletionRequestView;
  repositories: string[];
}

export interface ItemsKey {
  requestId: string;
  limit: number;
  cursor?: string;
  status?: DeletionItemStatus;
}

export interface ItemsPage {
  items: DeletionItemView[];
  nextCursor: string | null;
}

/**
 * Items by status, per request: one pass over the request's items. `created_us` is created_at in whole
 * microseconds, for cursors: a JS Date keeps milliseconds, and rows created within one would be skipped.
 */
const WITH_COUNTS = `
  SELECT r.*, c.counts, ${createdMicros('r')} AS created_us
    FROM deletion_requests r
  LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(s.status, s.n) AS counts
      FROM (SELECT status, count(*)::int AS n FROM deletion_items WHERE request_id = r.id GROUP BY status) s
  ) c ON true`;

type RequestRow = Record<string, unknown> & {
  id: string;
  counts: Record<DeletionItemStatus, number> | null;
  created_us: string;
};

@Injectable()
export class DeletionReader {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * Requests the caller may read (`deletions:read` on every repository of a request, or its own with
   * `deletions:read-own`), filtered, newest or oldest first, with their counts: one query.
   */
  async page(
    given: NullableFilter<DeletionFilter>,
    opts: { sort: SortOrder; limit: number; cursor?: string },
    ctx: RequestContext,
  ): Promise<{ items: DeletionRequestView[]; nextCursor: string | null }> {
    const filter = withoutNulls(given);
    checkTimeRange(filter.from, filter.to);
    // One status list however it is given: [failed] from REST, any order and repeats from GraphQL.
    const statuses = filter.status?.length ? [...new Set(filter.status)].sort() : undefined;
    const scope: CursorScope = {
      list: 'deletions',
      order: opts.sort === 'desc' ? 'desc' : 'asc',
      filter: { ...filter, status: statuses },
    };
    const desc = scope.order === 'desc';
    const cursor = decodeCreatedCursor(opts.cursor, scope);
    const params = new SqlParams();
    const p = (v: unknown) => params.p(v);
    const where: string[] = [];
    const visible = this.visibleCondition(ctx, params);
    if (visible === 'none') return { items: [], nextCursor: null };
    if (visible) where.push(visible);
    if (filter.registry !== undefined) where.push(`r.registry = ${p(filter.registry)}`);
    if (filter.actor !== undefined) where.push(`r.actor_id = ${p(filter.actor)}`);
    if (statuses) where.push(`r.status = ANY(${p(statuses)}::text[])`);
    if (filter.from !== undefined) where.push(`r.created_at >= ${p(filter.from)}`);
    if (filter.to !== undefined) where.push(`r.created_at < ${p(filter.to)}`);
    if (filter.repository !== undefined) {
      const m = repositoryMatch(filter.repository);
      where.push(
        `EXISTS (SELECT 1 FROM deletion_items i WHERE i.request_id = r.id AND i.repository ${
          m.exact !== undefined ? `= ${p(m.exact)}` : `~ ${p(m.regex)}`
        })`,
      );
    }
    if (cursor) where.push(createdAfter('r', p(cursor.us), p(cursor.id), desc));
    const dir = desc ? 'DESC' : 'ASC';
    const rows = (await this.ds.query(
      `${WITH_COUNTS}
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY r.created_at ${dir}, r.id ${dir}
       LIMIT ${p(opts.limit + 1)}`,
      params.values,
    )) as RequestRow[];
    const page = rows.slice(0, opts.limit);
    const last = page.at(-1);
    return {
      items: page.map(toRequestView),
      nextCursor:
        rows.length > opts.limit && last ? encodeCreatedCursor(scope, last.created_us, last.id) : null,
    };
  }

  /** Requests by id with counts and repositories, for loaders and single reads: one query. */
  async byIds(ids: readonly string[]): Promise<Map<string, LoadedDeletion>> {
    const valid = [...new Set(ids.filter((id) => UUID.test(id)))];
    if (!valid.length) return new Map();
    const rows = (await this.ds.query(
      `SELECT x.*, (SELECT array_agg(DISTINCT i.repository) FROM deletion_items i WHERE i.request_id = x.id)
                AS repositories
         FROM (${WITH_COUNTS} WHERE r.id = ANY($1::uuid[])) x`,
      [valid],
    )) as (RequestRow & { repositories: string[] | null })[];
    return new Map(
      rows.map((r) => [r.id as string, { view: toRequestView(r), repositories: r.repositories ?? [] }]),
    );
  }

  /**
   * Pages of items of many requests at once. Keys with the same page arguments share one query that
   * reads, per request, only the rows of its page (the (request_id, position) index). A key whose cursor
   * is not one of its own request's items (with the same status) gets its error, the others their page.
   */
  async items(keys: readonly ItemsKey[]): Promise<(ItemsPage | Error)[]> {
    const groups = new Map<string, ItemsKey[]>();
    const positions = new Map<ItemsKey, number>();
    const refused = new Map<ItemsKey, Error>();
    for (const k of keys) {
      let after: number;
      try {
        after = decodeListCursor(k.cursor, itemsCursorScope(k), isItemCursor)?.after ?? -1;
      } catch (err) {
        refused.set(k, err as Error);
        continue;
      }
      positions.set(k, after);
      const g = `${k.limit}|${after}|${k.status ?? ''}`;
      groups.set(g, [...(groups.get(g) ?? []), k]);
    }
    const pages = new Map<ItemsKey, ItemsPage>();
    await Promise.all(
      [...groups.values()].map(async (group) => {
        const { limit, status } = group[0];
        const after = positions.get(group[0])!;
        const ids = [...new Set(group.map((k) => k.requestId))];
        const rows = (await this.ds.query(
          `SELECT i.* FROM unnest($1::uuid[]) AS r(id)
           CROSS JOIN LATERAL (
             SELECT * FROM deletion_items
              WHERE request_id = r.id AND position > $2 ${status ? 'AND status = $4' : ''}
              ORDER BY position LIMIT $3) i`,
          [ids, after, limit + 1, ...(status ? [status] : [])],
        )) as Record<string, unknown>[];
        const byRequest = new Map<string, DeletionItemView[]>();
        for (const row of rows) {
          const item = itemView(toItemEntity(row));
          const id = row.request_id as string;
          byRequest.set(id, [...(byRequest.get(id) ?? []), item]);
        }
        for (const k of group) {
          const all = byRequest.get(k.requestId) ?? [];
          const items = all.slice(0, limit);
          const last = items.at(-1);
          pages.set(k, {
            items,
            nextCursor:
              all.length > limit && last
                ? encodeListCursor(itemsCursorScope(k), { after: last.position })
                : null,
          });
        }
      }),
    );
    return keys.map((k) => refused.get(k) ?? pages.get(k)!);
  }

  /**
   * The SQL condition of the requests the caller may read; null: all of them; 'none': not one. Mirrors
   * assertMayRead: every repository of a request must be covered, or the request is the caller's own.
   */
  private visibleCondition(ctx: RequestContext, params: SqlParams): string | null | 'none' {
    const access = ctx.access ?? DENY_ALL;
    const scope = accessScope(access, 'deletions:read');
    if (scope.everywhere) return null;
    const parts: string[] = [];
    if (scope.registries.length) parts.push(`r.registry = ANY(${params.p(scope.registries)}::text[])`);
    for (const [registry, regex] of scope.repositories)
      parts.push(`(r.registry = ${params.p(registry)}
        AND EXISTS (SELECT 1 FROM deletion_items i WHERE i.request_id = r.id)
        AND NOT EXISTS (SELECT 1 FROM deletion_items i WHERE i.request_id = r.id AND i.repository !~ ${params.p(regex)}))`);
    if (access.canAnywhere('deletions:read-own') && ctx.actor.id)
      parts.push(`(r.actor_type = ${params.p(ctx.actor.type)} AND r.actor_id = ${params.p(ctx.actor.id)})`);
    return parts.length ? `(${parts.join(' OR ')})` : 'none';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function toRequestView(r: RequestRow): DeletionRequestView {
  const entity: DeletionRequestEntity = {
    id: r.id as string,
    registry: r.registry as string,
    registryId: r.registry_id as string,
    status: r.status as DeletionStatus,
    dryRun: r.dry_run as boolean,
    reason: r.reason as string | null,
    maxDeletions: r.max_deletions as number | null,
    actorType: r.actor_type as string,
    actorId: r.actor_id as string | null,
    actorName: r.actor_name as string | null,
    sourceIp: r.source_ip as string | null,
    requestId: r.request_id as string | null,
    itemCount: r.item_count as number,
    estimatedBytes: r.estimated_bytes as string,
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
    executedAt: r.executed_at as Date | null,
    enqueuedAt: r.enqueued_at as Date | null,
    finishedAt: r.finished_at as Date | null,
  };
  const counts = Object.entries(r.counts ?? {}).map(([status, n]) => ({
    status: status as DeletionItemStatus,
    n,
  }));
  return requestView(entity, countsOf(counts));
}

function toItemEntity(r: Record<string, unknown>): DeletionItemEntity {
  return {
    id: r.id as string,
    requestId: r.request_id as string,
    position: r.position as number,
    chunk: r.chunk as number,
    repository: r.repository as string,
    reference: r.reference as string,
    kind: r.kind as DeletionItemEntity['kind'],
    digest: r.digest as string | null,
    mediaType: r.media_type as string | null,
    tags: r.tags as string[],
    estimatedBytes: r.estimated_bytes as string,
    status: r.status as DeletionItemStatus,
    attempts: r.attempts as number,
    alreadyGone: r.already_gone as boolean | null,
    method: r.method as string | null,
    upstreamStatus: r.upstream_status as number | null,
    errorCode: r.error_code as string | null,
    errorMessage: r.error_message as string | null,
    updatedAt: r.updated_at as Date,
    finishedAt: r.finished_at as Date | null,
  };
}

/** A request's items continue only with the same request and status filter, in request order. */
function itemsCursorScope(k: Pick<ItemsKey, 'requestId' | 'status'>): CursorScope {
  return {
    list: 'deletion-items',
    order: 'asc',
    filter: { status: k.status },
    parent: { kind: 'deletion request', id: k.requestId },
  };
}

function isItemCursor(v: unknown): v is { after: number } {
  const after = (v as { after?: unknown })?.after;
  return typeof after === 'number' && Number.isSafeInteger(after) && after >= 0;
}
