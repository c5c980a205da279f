import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { SqlParams } from '../auth/access-scope.js';
import { ValidationError } from '../common/domain-error.js';
import { checkTimeRange } from '../common/list-filter.js';
import { ReclaimedBucket, ReclaimedSpaceView } from './reclaimed.dto.js';

const DAY_MS = 86_400_000;
/** A report has at most this many periods per registry. */
const MAX_PERIODS = 400;

export interface ReclaimedQuery {
  bucket: ReclaimedBucket;
  from?: Date;
  to?: Date;
  /** Only these registries; undefined: all of them. */
  registries?: string[];
}

/**
 * Space reclaimed per registry and day or week, summed in Postgres (date_trunc in UTC) from succeeded GC
 * runs and succeeded deletion items: two grouped scans of the period, joined.
 */
@Injectable()
export class ReclaimedService {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  async report(q: ReclaimedQuery): Promise<ReclaimedSpaceView[]> {
    const to = q.to ?? new Date();
    const from = q.from ?? new Date(to.getTime() - (q.bucket === 'week' ? 12 * 7 : 30) * DAY_MS);
    checkTimeRange(from, to);
    const periods = (to.getTime() - from.getTime()) / (q.bucket === 'week' ? 7 * DAY_MS : DAY_MS);
    if (periods > MAX_PERIODS)
      throw new ValidationError(`at most ${MAX_PERIODS} ${q.bucket}s per report`, { field: 'from' });
    if (q.registries && q.registries.length === 0) return [];
    const params = new SqlParams();
    const bucket = params.p(q.bucket);
    const range = (col: string) => `${col} >= ${params.p(from)} AND ${col} < ${params.p(to)}`;
    const registries = q.registries ? params.p(q.registries) : null;
    const only = (col: string) => (registries ? `AND ${col} = ANY(${registries}::text[])` : '');
    const rows = (await this.ds.query(
      `WITH gc AS (
         SELECT registry, date_trunc(${bucket}, finished_at, 'UTC') AS period,
                sum(COALESCE(bytes_freed, 0))::text AS bytes_freed, count(*)::int AS runs,
                sum(COALESCE(blobs_deleted, 0))::text AS blobs, sum(COALESCE(manifests_deleted, 0))::text AS manifests
           FROM gc_runs
          WHERE status = 'succeeded' AND NOT dry_run AND ${range('finished_at')} ${only('registry')}
          GROUP BY 1, 2),
       -- Items are summed per request and settle time first (an index-only read of
       -- deletion_items_succeeded_idx; a worker settles a chunk at one instant), so few rows meet the
       -- requests and date_trunc.
       per_request AS (
         SELECT request_id, finished_at,
                count(*) FILTER (WHERE kind = 'manifest' AND already_gone IS NOT TRUE) AS manifests,
                count(*) FILTER (WHERE kind = 'tag') AS tags
           FROM deletion_items
          WHERE status = 'succeeded' AND ${range('finished_at')}
          GROUP BY 1, 2),
       del AS (
         SELECT r.registry, date_trunc(${bucket}, d.finished_at, 'UTC') AS period,
                sum(d.manifests)::text AS manifests, sum(d.tags)::text AS tags
           FROM per_request d JOIN deletion_requests r ON r.id = d.request_id
          WHERE true ${only('r.registry')}
          GROUP BY 1, 2)
       SELECT COALESCE(gc.registry, del.registry) AS registry, COALESCE(gc.period, del.period) AS period,
              COALESCE(gc.bytes_freed, '0') AS bytes_freed, COALESCE(gc.runs, 0) AS runs,
              COALESCE(gc.blobs, '0') AS blobs, COALESCE(gc.manifests, '0') AS gc_manifests,
              COALESCE(del.manifests, '0') AS del_manifests, COALESCE(del.tags, '0') AS tags
         FROM gc FULL JOIN del ON del.registry = gc.registry AND del.period = gc.period
        ORDER BY 2, 1`,
      params.values,
    )) as {
      registry: string;
      period: Date;
      bytes_freed: string;
      runs: number;
      blobs: string;
      gc_manifests: string;
      del_manifests: string;
      tags: string;
    }[];
    return rows.map((r) => ({
      registry: r.registry,
      period: r.period,
      bytesFreed: Number(r.bytes_freed),
      gcRuns: r.runs,
      blobsDeleted: Number(r.blobs),
      manifestsDeletedByGc: Number(r.gc_manifests),
      manifestsDeletedByRequests: Number(r.del_manifests),
      manifestsDeleted: Number(r.gc_manifests) + Number(r.del_manifests),
      tagsDeleted: Number(r.tags),
    }));
  }
}
