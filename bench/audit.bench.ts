import pg from 'pg';
import { Pool } from 'undici';
import { auditPageSql, type AuditFilter, type SortOrder } from '../src/audit/audit-query.js';
import { Access, ALLOW_ALL } from '../src/auth/access.js';
import { TEST_REDIS_URL, TEST_SECRETS_KEY } from '../test/support/environment.js';
import { benchDatabaseUrl, DATABASE, REGISTRIES, seedAuditDataset, SPEC } from './audit-seed.js';
import { BenchFailure } from './support/bench.js';
import type { BenchContext, BenchReport, Benchmark, Metric } from './support/bench.js';
import { GatewayProcess } from './support/gateway-process.js';
import { formatSeconds, median } from './support/stats.js';

/*
 * Issue spec: with 1,000,000 audit events and 200,000 deletion items in Postgres, the filtered, paginated
 * audit queries answer p95 <= 50 ms. Measured through the real API process (`node dist/src/main.js`):
 * REST `GET /api/v1/audit-events` and the GraphQL `auditEvents` query, one request at a time on a
 * keep-alive connection, for filters an auditor uses: a registry, a repository glob, an actor, failed
 * deletes, an action prefix, a time range (recent and six months back), oldest first, deep pages through
 * cursors, and as an auditor bound to one registry (the binding narrows the query). The baseline is the
 * same SQL run directly on a pg connection in the same run: what the API adds is the difference.
 * Deletion lists (with paged items), events with their related deletion requests (DataLoader) and the
 * reclaimed-space report are measured too, for information.
 */

const TARGET_P95_MS = 50;
const WARMUP = 10;
const SAMPLES = 100;
const DEEP_PAGES = 20;
const DAY = 86_400_000;
const PAGE = 50;

interface Case {
  name: string;
  /** Counted in the target (a filtered, paginated audit query). */
  audit: boolean;
  run(): Promise<unknown>;
  /** The same page's SQL, run directly. */
  direct?(): Promise<unknown>;
}

interface Timing {
  p50: number;
  p95: number;
  max: number;
  samples: number[];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function time(fn: () => Promise<unknown>, samples: number, warmup = WARMUP): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  const sorted = [...out].sort((a, b) => a - b);
  return { p50: median(out), p95: percentile(sorted, 95), max: sorted.at(-1)!, samples: out };
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

export const auditBench: Benchmark = {
  name: 'audit',
  title: `Filtered, paged audit queries on ${SPEC.events.toLocaleString('en')} events (REST and GraphQL) vs the same SQL run directly`,
  run: runAuditBench,
};

async function runAuditBench(ctx: BenchContext): Promise<BenchReport> {
  const metrics: Metric[] = [];
  const seed = await seedAuditDataset({ scale: ctx.scale, reseed: ctx.reseed }, ctx.log);
  metrics.push(
    {
      label: 'dataset',
      value: `${seed.events.toLocaleString('en')} audit events over a year, ${seed.items.toLocaleString('en')} deletion items, ${REGISTRIES.length} registries, 2,000 repositories, 300 actors`,
    },
    {
      label: 'seeding',
      value: seed.reused
        ? `reused database ${DATABASE} (seeded in ${formatSeconds(seed.seconds)}; --reseed to redo)`
        : `seeded now in ${formatSeconds(seed.seconds)}: ${Object.entries(seed.steps)
            .map(([k, v]) => `${k} ${formatSeconds(v)}`)
            .join('; ')}`,
    },
  );
  if (seed.verified)
    metrics.push({
      label: 'hash chain of the seeded trail',
      value: `${seed.verified.ok ? 'verified' : 'BROKEN'}: ${seed.verified.checked.toLocaleString('en')} rows in ${formatSeconds(seed.verified.seconds)}`,
      ok: seed.verified.ok,
    });

  const db = new pg.Client({ connectionString: benchDatabaseUrl() });
  await db.connect();
  let gateway: GatewayProcess | undefined;
  let http: Pool | undefined;
  try {
    gateway = await GatewayProcess.start({
      name: 'audit',
      env: {
        DATABASE_URL: benchDatabaseUrl(),
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: 'rgbench:audit',
        SECRETS_KEY: TEST_SECRETS_KEY,
      },
    });
    const admin = gateway.authorization;
    http = new Pool(gateway.url, { connections: 1, pipelining: 1 });
    const pool = http;

    // An auditor bound to one registry: its lists are narrowed in the query.
    const stamp = Date.now().toString(36);
    const sa = JSON.parse(
      await gateway.request('POST', '/api/v1/service-accounts', { name: `bench-auditor-${stamp}` }),
    ) as { id: string };
    await gateway.request('POST', '/api/v1/role-bindings', {
      subject: { type: 'service_account', id: sa.id },
      role: 'auditor',
      registry: 'reg-03',
    });
    const scopedToken = `Bearer ${
      (
        JSON.parse(await gateway.request('POST', `/api/v1/service-accounts/${sa.id}/tokens`, {})) as {
          token: string;
        }
      ).token
    }`;
    const scopedAccess = new Access([
      { role: 'auditor', registry: 'reg-03', repository: null, source: 'bench' },
    ]);

    const get = async (path: string, authorization = admin): Promise<unknown> => {
      const res = await pool.request({ method: 'GET', path, headers: { authorization } });
      const body = await res.body.text();
      if (res.statusCode !== 200)
        throw new BenchFailure(`GET ${path} answered ${res.statusCode}: ${body.slice(0, 300)}`);
      return JSON.parse(body);
    };
    const graphql = async (query: string, variables: Record<string, unknown>, authorization = admin) => {
      const res = await pool.request({
        method: 'POST',
        path: '/graphql',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ query, variables }),
      });
      const body = JSON.parse(await res.body.text()) as { data?: unknown; errors?: unknown[] };
      if (res.statusCode !== 200 || body.errors)
        throw new BenchFailure(
          `GraphQL answered ${res.statusCode}: ${JSON.stringify(body.errors).slice(0, 300)}`,
        );
      return body.data;
    };
    const direct = (filter: AuditFilter, sort: SortOrder = 'desc', access: Access = ALLOW_ALL) => {
      const { sql, params } = auditPageSql({ filter, sort, limit: PAGE, access });
      return () => db.query(sql, params);
    };
    const rest = (filter: Record<string, string>, authorization = admin) => {
      const qs = new URLSearchParams({ ...filter, limit: String(PAGE) });
      return () => get(`/api/v1/audit-events?${qs}`, authorization);
    };

    const end = seed.end.getTime();
    const iso = (t: number) => new Date(t).toISOString();
    const filters: { name: string; rest: Record<string, string>; filter: AuditFilter; sort?: SortOrder }[] = [
      { name: 'newest page, no filter', rest: {}, filter: {} },
      { name: 'registry', rest: { registry: 'reg-03' }, filter: { registry: 'reg-03' } },
      {
        name: 'registry + repository glob team-07/**',
        rest: { registry: 'reg-03', repository: 'team-07/**' },
        filter: { registry: 'reg-03', repository: 'team-07/**' },
      },
      { name: 'actor', rest: { actor: 'user-123' }, filter: { actor: 'user-123' } },
      {
        name: 'failed deletes (action + outcome)',
        rest: { action: 'deletion.item.failed', outcome: 'failure' },
        filter: { action: 'deletion.item.failed', outcome: 'failure' },
      },
      { name: 'action prefix gc.*', rest: { action: 'gc.*' }, filter: { action: 'gc.*' } },
      {
        name: 'registry, last 7 days',
        rest: { registry: 'reg-05', from: iso(end - 7 * DAY) },
        filter: { registry: 'reg-05', from: new Date(end - 7 * DAY) },
      },
      {
        name: 'registry, one week 6 months ago',
        rest: { registry: 'reg-05', from: iso(end - 180 * DAY), to: iso(end - 173 * DAY) },
        filter: { registry: 'reg-05', from: new Date(end - 180 * DAY), to: new Date(end - 173 * DAY) },
      },
      {
        name: 'oldest first, last 30 days',
        rest: { from: iso(end - 30 * DAY), sort: 'asc' },
        filter: { from: new Date(end - 30 * DAY) },
        sort: 'asc',
      },
    ];

    const cases: Case[] = [];
    for (const f of filters) {
      const sort = f.sort ?? 'desc';
      cases.push({ name: `REST ${f.name}`, audit: true, run: rest(f.rest), direct: direct(f.filter, sort) });
    }
    cases.push({
      name: 'REST auditor bound to one registry, its events',
      audit: true,
      run: rest({ registry: 'reg-03' }, scopedToken),
      direct: direct({ registry: 'reg-03' }, 'desc', scopedAccess),
    });
    const eventsQuery = `query($f: AuditEventFilter, $l: Int, $s: SortOrder) {
      auditEvents(filter: $f, limit: $l, sort: $s) {
        items { seq occurredAt action outcome actor { type id name } registry repository tags digest subject { type id } }
        nextCursor } }`;
    for (const f of [filters[2], filters[4], filters[7]])
      cases.push({
        name: `GraphQL ${f.name}`,
        audit: true,
        run: () =>
          graphql(eventsQuery, {
            f: Object.fromEntries(
              Object.entries(f.filter).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
            ),
            l: PAGE,
            s: f.sort ?? 'desc',
          }),
        direct: direct(f.filter, f.sort ?? 'desc'),
      });
    cases.push({
      name: 'GraphQL auditor bound to one registry, no filter',
      audit: true,
      run: () => graphql(eventsQuery, { l: PAGE }, scopedToken),
      direct: direct({}, 'desc', scopedAccess),
    });
    cases.push({
      name: 'GraphQL events with their deletion requests and GC runs (info)',
      audit: false,
      run: () =>
        graphql(
          `
            query ($l: Int) {
              auditEvents(filter: { registry: "reg-01", action: "deletion.*" }, limit: $l) {
                items {
                  seq
                  action
                  deletion {
                    id
                    status
                    counts {
                      succeeded
                      failed
                    }
                  }
                  gcRun {
                    id
                    status
                    bytesFreed
                  }
                }
              }
            }
          `,
          { l: PAGE },
        ),
    });
    cases.push({
      name: 'GraphQL failed deletions with their failed items (info)',
      audit: false,
      run: () =>
        graphql(
          `
            {
              deletions(filter: { status: [failed, partially_failed] }, limit: 20) {
                items {
                  id
                  registry
                  status
                  counts {
                    failed
                  }
                  items(status: failed, limit: 10) {
                    items {
                      repository
                      error {
                        code
                      }
                    }
                  }
                }
              }
            }
          `,
          {},
        ),
    });
    cases.push({
      name: 'GraphQL bytes freed per registry per week, one year (info)',
      audit: false,
      run: () =>
        graphql(
          `
            query ($from: DateTime) {
              reclaimedSpace(bucket: week, from: $from) {
                registry
                period
                bytesFreed
                manifestsDeleted
              }
            }
          `,
          {
            from: iso(end - 364 * DAY),
          },
        ),
    });

    const allAudit: number[] = [];
    const allDirect: number[] = [];
    for (const c of cases) {
      ctx.log(`audit: ${c.name}`);
      const api = await time(c.run, SAMPLES);
      const base = c.direct ? await time(c.direct, SAMPLES) : undefined;
      if (c.audit) allAudit.push(...api.samples);
      if (base) allDirect.push(...base.samples);
      metrics.push({
        label: c.name,
        value: `p95 ${ms(api.p95)} (p50 ${ms(api.p50)}, max ${ms(api.max)})${
          base ? `; same SQL direct p95 ${ms(base.p95)} (p50 ${ms(base.p50)})` : ''
        }`,
        ...(c.audit ? { target: `p95 <= ${TARGET_P95_MS} ms`, ok: api.p95 <= TARGET_P95_MS } : {}),
      });
    }

    // Deep pages: follow nextCursor DEEP_PAGES times, each page timed.
    const deep: number[] = [];
    for (let round = 0; round < 5; round++) {
      let cursor: string | null = null;
      for (let page = 0; page < DEEP_PAGES; page++) {
        const qs = new URLSearchParams({
          registry: 'reg-02',
          limit: String(PAGE),
          ...(cursor ? { cursor } : {}),
        });
        const t0 = performance.now();
        const body = (await get(`/api/v1/audit-events?${qs}`)) as { nextCursor: string | null };
        deep.push(performance.now() - t0);
        cursor = body.nextCursor;
        if (!cursor) throw new BenchFailure('the trail ended before the deep pages');
      }
    }
    const deepSorted = [...deep].sort((a, b) => a - b);
    const deepP95 = percentile(deepSorted, 95);
    allAudit.push(...deep);
    metrics.push({
      label: `REST registry, pages 1-${DEEP_PAGES} through cursors`,
      value: `p95 ${ms(deepP95)} (p50 ${ms(median(deep))}) over ${deep.length} pages`,
      target: `p95 <= ${TARGET_P95_MS} ms`,
      ok: deepP95 <= TARGET_P95_MS,
    });

    const sorted = [...allAudit].sort((a, b) => a - b);
    const p95 = percentile(sorted, 95);
    const directSorted = [...allDirect].sort((a, b) => a - b);
    metrics.push({
      label: 'all filtered, paged audit queries through the API',
      value: `p95 ${ms(p95)} (p50 ${ms(median(allAudit))}, ${allAudit.length} requests); the same SQL direct p95 ${ms(percentile(directSorted, 95))}`,
      target: `p95 <= ${TARGET_P95_MS} ms`,
      ok: p95 <= TARGET_P95_MS,
    });
    return { name: auditBench.name, metrics };
  } finally {
    await http?.close();
    await gateway?.stop();
    await db.end();
  }
}
