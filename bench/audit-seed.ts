/**
 * Seeds the audit benchmark's database: 1,000,000 audit events and 200,000 deletion items (times --scale)
 * spread over a year, 10 registries, 2,000 repositories and 300 actors, plus GC runs.
 *
 *   npx tsx bench/audit-seed.ts [--scale 0.1]     # or through `npm run bench -- --only audit`
 *
 * A dedicated database (rg_bench_audit), reused while its marker row matches. The fast path: deletion
 * requests and items are generated in SQL (generate_series); audit events are generated here, each row
 * hashed onto the chain with the gateway's own chainHash (seq, prev_hash and hash exactly as AuditService
 * writes them), and written with COPY with triggers off for this session (session_replication_role =
 * replica: the per-row chain check would re-read the head a million times) and the secondary indexes
 * built afterwards. The chain stays valid: the seed ends with the gateway's own verification of all rows.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { AuditService } from '../src/audit/audit.service.js';
import { chainHash, type ChainedRow } from '../src/audit/audit-chain.js';
import { createDataSource } from '../src/database/data-source.js';
import { TEST_DATABASE_URL } from '../test/support/environment.js';

export const SPEC = { events: 1_000_000, requests: 20_000, itemsPerRequest: 10, gcRuns: 2_000 };
/** Bump when the generated content changes, so stored datasets are seeded again. */
export const DATASET_VERSION = 4;
export const DATABASE = 'rg_bench_audit';
export const REGISTRIES = Array.from({ length: 10 }, (_, i) => `reg-${String(i).padStart(2, '0')}`);
const TEAMS = 20;
const APPS = 10;
const ACTORS = 300;
const YEAR_MS = 365 * 86_400_000;
const COPY_BATCH = 5_000;

export interface SeedReport {
  reused: boolean;
  events: number;
  items: number;
  seconds: number;
  /** What seeding took, step by step, when it ran now. */
  steps: Record<string, number>;
  verified?: { ok: boolean; checked: number; seconds: number };
  /** The dataset's "now": the newest event's time. */
  end: Date;
}

export function benchDatabaseUrl(): string {
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${DATABASE}`;
  return url.toString();
}

/** Deterministic pseudo-random numbers (mulberry32), so every seed of a scale is the same dataset. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Registry weights: a few busy registries, a long tail. */
const REGISTRY_WEIGHTS = [30, 20, 12, 10, 8, 6, 5, 4, 3, 2];

function pickWeighted(r: number, weights: number[]): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let x = r * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i];
    if (x < 0) return i;
  }
  return weights.length - 1;
}

interface ActionKind {
  action: string;
  weight: number;
  outcome: string;
  /** repository: an item event; registry: a registry-level event; global: no registry. */
  scope: 'repository' | 'registry' | 'global';
  subject: 'deletion_request' | 'gc_run' | 'registry' | 'service_account' | null;
}

const ACTIONS: ActionKind[] = [
  {
    action: 'deletion.item.succeeded',
    weight: 560,
    outcome: 'success',
    scope: 'repository',
    subject: 'deletion_request',
  },
  {
    action: 'deletion.item.failed',
    weight: 15,
    outcome: 'failure',
    scope: 'repository',
    subject: 'deletion_request',
  },
  {
    action: 'deletion.requested',
    weight: 80,
    outcome: 'pending',
    scope: 'registry',
    subject: 'deletion_request',
  },
  { action: 'deletion.planned', weight: 40, outcome: 'info', scope: 'registry', subject: 'deletion_request' },
  {
    action: 'deletion.executed',
    weight: 30,
    outcome: 'pending',
    scope: 'registry',
    subject: 'deletion_request',
  },
  {
    action: 'deletion.completed',
    weight: 80,
    outcome: 'success',
    scope: 'registry',
    subject: 'deletion_request',
  },
  {
    action: 'deletion.cancelled',
    weight: 5,
    outcome: 'success',
    scope: 'registry',
    subject: 'deletion_request',
  },
  { action: 'registry.event.delete', weight: 100, outcome: 'info', scope: 'repository', subject: null },
  { action: 'gc.requested', weight: 20, outcome: 'pending', scope: 'registry', subject: 'gc_run' },
  { action: 'gc.started', weight: 20, outcome: 'info', scope: 'registry', subject: 'gc_run' },
  { action: 'gc.succeeded', weight: 18, outcome: 'success', scope: 'registry', subject: 'gc_run' },
  { action: 'gc.failed', weight: 2, outcome: 'failure', scope: 'registry', subject: 'gc_run' },
  { action: 'registry.updated', weight: 10, outcome: 'success', scope: 'registry', subject: 'registry' },
  {
    action: 'service_account.token.created',
    weight: 10,
    outcome: 'success',
    scope: 'global',
    subject: 'service_account',
  },
  { action: 'role_binding.created', weight: 10, outcome: 'success', scope: 'global', subject: null },
];

/** ids of the seeded deletion requests and GC runs, by registry: events point at real rows. */
interface Subjects {
  requests: string[][];
  gcRuns: string[][];
}

function uuidOf(kind: number, n: number): string {
  const hex = (kind * 0x10000000 + n).toString(16).padStart(12, '0');
  return `00000000-0000-4000-8000-${hex}`;
}

/** COPY text format: backslash escapes, \N for null. */
function copyText(v: string | null): string {
  if (v === null) return '\\N';
  return v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

function* auditRows(
  count: number,
  start: number,
  subjects: Subjects,
  seed: number,
): Generator<ChainedRow & { hash: string }> {
  const rnd = random(seed);
  const weights = ACTIONS.map((a) => a.weight);
  let prevHash: string | null = null;
  for (let seq = 1; seq <= count; seq++) {
    // Non-decreasing time, as the chain requires; a few rows share a millisecond, as batches do.
    const occurredAt = new Date(start + Math.floor(((seq - 1) * YEAR_MS) / count));
    const kind = ACTIONS[pickWeighted(rnd(), weights)];
    const reg = pickWeighted(rnd(), REGISTRY_WEIGHTS);
    const team = Math.floor(rnd() * TEAMS);
    const app = Math.floor(rnd() * APPS);
    const actorN = Math.floor(rnd() ** 2 * ACTORS);
    const system =
      kind.action.startsWith('deletion.item') ||
      kind.action.startsWith('gc.s') ||
      kind.action === 'deletion.completed';
    const actorType = system ? 'service' : actorN % 4 === 0 ? 'service' : 'user';
    const actorId = actorType === 'user' ? `user-${actorN}` : `svc-${actorN % 40}`;
    const registry = kind.scope === 'global' ? null : REGISTRIES[reg];
    const repository =
      kind.scope === 'repository' ? `team-${String(team).padStart(2, '0')}/app-${app}` : null;
    let subjectId: string | null = null;
    if (kind.subject === 'deletion_request') {
      const list = subjects.requests[reg];
      subjectId = list.length ? list[Math.floor(rnd() * list.length)] : null;
    } else if (kind.subject === 'gc_run') {
      const list = subjects.gcRuns[reg];
      subjectId = list.length ? list[Math.floor(rnd() * list.length)] : null;
    } else if (kind.subject === 'registry') subjectId = REGISTRIES[reg];
    else if (kind.subject === 'service_account') subjectId = uuidOf(9, actorN);
    const item = kind.scope === 'repository';
    const digest = item ? `sha256:${(seq * 2654435761).toString(16).padStart(64, '0').slice(-64)}` : null;
    const row: ChainedRow = {
      seq,
      id: uuidOf(1, seq),
      occurredAt,
      action: kind.action,
      actorType,
      actorId,
      actorName: actorType === 'user' ? `User ${actorN}` : `service ${actorN % 40}`,
      sourceIp: actorType === 'user' ? `10.${(actorN >> 8) & 255}.${actorN & 255}.${(seq % 250) + 1}` : null,
      requestId: `req-${seq}`,
      registry,
      repository,
      tags: item ? [`v${seq % 97}`, ...(seq % 3 === 0 ? ['latest'] : [])] : [],
      digest,
      outcome: kind.outcome,
      upstreamStatus:
        kind.action === 'deletion.item.succeeded' ? 202 : kind.action === 'deletion.item.failed' ? 500 : null,
      subjectType: subjectId === null ? null : kind.subject,
      subjectId,
      details: item ? { position: seq % 50, reference: `v${seq % 97}`, kind: 'manifest' } : null,
      prevHash,
    };
    const hash = chainHash(row);
    prevHash = hash;
    yield { ...row, hash };
  }
}

function copyLine(r: ChainedRow & { hash: string }): string {
  const tags = `{${r.tags.map((t) => `"${t}"`).join(',')}}`;
  return (
    [
      String(r.seq),
      r.id,
      r.occurredAt.toISOString(),
      r.action,
      r.actorType,
      r.actorId,
      r.actorName,
      r.sourceIp,
      r.requestId,
      r.registry,
      r.repository,
      tags,
      r.digest,
      r.outcome,
      r.upstreamStatus === null ? null : String(r.upstreamStatus),
      r.subjectType,
      r.subjectId,
      r.details === null ? null : JSON.stringify(r.details),
      r.prevHash,
      r.hash,
    ]
      .map(copyText)
      .join('\t') + '\n'
  );
}

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function withClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: benchDatabaseUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

interface Marker {
  version: number;
  events: number;
  requests: number;
  items_per_request: number;
  seeded_at: Date;
  seconds: number;
  end_at: Date;
}

async function readMarker(): Promise<Marker | undefined> {
  try {
    return await withClient(async (c) => {
      const rows = (await c.query('SELECT * FROM bench_dataset')).rows as Marker[];
      return rows[0];
    });
  } catch {
    return undefined;
  }
}

export async function seedAuditDataset(
  opts: { scale: number; reseed: boolean; verify?: boolean },
  log: (m: string) => void,
): Promise<SeedReport> {
  const events = Math.max(1000, Math.round(SPEC.events * opts.scale));
  const requests = Math.max(100, Math.round(SPEC.requests * opts.scale));
  const gcRuns = Math.max(50, Math.round(SPEC.gcRuns * opts.scale));
  const marker = await readMarker();
  if (
    !opts.reseed &&
    marker &&
    marker.version === DATASET_VERSION &&
    Number(marker.events) === events &&
    Number(marker.requests) === requests
  )
    return {
      reused: true,
      events,
      items: requests * SPEC.itemsPerRequest,
      seconds: Number(marker.seconds),
      steps: {},
      end: marker.end_at,
    };

  const steps: Record<string, number> = {};
  const t0 = performance.now();
  let last = t0;
  const step = (name: string) => {
    const now = performance.now();
    steps[name] = (now - last) / 1000;
    last = now;
    log(`audit seed: ${name} in ${steps[name].toFixed(1)} s`);
  };

  await adminQuery(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await adminQuery(`CREATE DATABASE ${DATABASE}`);
  const ds = createDataSource(benchDatabaseUrl(), 2);
  await ds.initialize();
  try {
    await ds.runMigrations();
  } finally {
    await ds.destroy();
  }
  step('database and migrations');

  // The dataset ends now, so "last week" filters hit its newest rows.
  const end = new Date(Math.floor(Date.now() / 1000) * 1000);
  const start = end.getTime() - YEAR_MS;
  const subjects: Subjects = { requests: REGISTRIES.map(() => []), gcRuns: REGISTRIES.map(() => []) };
  await withClient(async (c) => {
    // Requests round-robin over the registries, items over each registry's repositories; about 2% of
    // items failed, requests spread over the year.
    await c.query(
      `INSERT INTO deletion_requests (id, registry, registry_id, status, dry_run, actor_type, actor_id, actor_name,
         item_count, estimated_bytes, created_at, updated_at, executed_at, finished_at)
       SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(2 * 268435456 + n), 12, '0'))::uuid,
              'reg-' || lpad((n % 10)::text, 2, '0'), gen_random_uuid(),
              CASE WHEN n % 50 = 0 THEN 'partially_failed' WHEN n % 97 = 0 THEN 'failed' ELSE 'succeeded' END,
              n % 5 = 0, 'user', 'user-' || (n % ${ACTORS}), 'User ' || (n % ${ACTORS}), $2, 1000000 * (n % 13),
              t, t, t, t + interval '1 minute'
         FROM generate_series(0, $1 - 1) AS n,
              LATERAL (SELECT to_timestamp($3::double precision / 1000) + (n * ($4::double precision / $1)) * interval '1 millisecond') AS x(t)`,
      [requests, SPEC.itemsPerRequest, start, YEAR_MS],
    );
    await c.query(
      `INSERT INTO deletion_items (request_id, position, chunk, repository, reference, kind, digest, tags, status,
         estimated_bytes, attempts, upstream_status, error_code, error_message, finished_at)
       SELECT r.id, p, p / 50,
              'team-' || lpad(((hashtext(r.id::text) & 1023) % ${TEAMS})::text, 2, '0') || '/app-' || (p % ${APPS}),
              'v' || p, CASE WHEN p % 10 = 9 THEN 'tag' ELSE 'manifest' END,
              'sha256:' || md5(r.id::text || p) || md5(p || r.id::text), ARRAY['v' || p], s,
              100000, 1, CASE WHEN s = 'failed' THEN 500 ELSE 202 END,
              CASE WHEN s = 'failed' THEN 'UPSTREAM_ERROR' END,
              CASE WHEN s = 'failed' THEN 'the registry answered 500' END,
              r.finished_at
         FROM deletion_requests r, generate_series(0, $1 - 1) AS p,
              LATERAL (SELECT CASE WHEN r.status <> 'succeeded' AND p % 3 = 0 THEN 'failed' ELSE 'succeeded' END) AS x(s)`,
      [SPEC.itemsPerRequest],
    );
    await c.query(
      `INSERT INTO gc_runs (id, registry, registry_id, trigger, actor_type, actor_id, dry_run, delete_untagged, fence,
         executor, status, phase, blobs_deleted, manifests_deleted, bytes_before, bytes_after, bytes_freed,
         created_at, started_at, finished_at)
       SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(3 * 268435456 + n), 12, '0'))::uuid,
              'reg-' || lpad((n % 10)::text, 2, '0'), gen_random_uuid(),
              CASE WHEN n % 4 = 0 THEN 'schedule' ELSE 'manual' END, 'user', 'user-' || (n % 50), n % 9 = 0, false,
              'readonly', 'local', CASE WHEN n % 23 = 0 THEN 'failed' ELSE 'succeeded' END, 'done',
              n % 400, n % 7, 10000000000, 10000000000 - (n % 1000) * 1048576, (n % 1000) * 1048576,
              t, t, t + interval '5 minutes'
         FROM generate_series(0, $1 - 1) AS n,
              LATERAL (SELECT to_timestamp($2::double precision / 1000) + (n * ($3::double precision / $1)) * interval '1 millisecond') AS x(t)`,
      [gcRuns, start, YEAR_MS],
    );
    for (const r of (await c.query('SELECT id, registry FROM deletion_requests')).rows as {
      id: string;
      registry: string;
    }[])
      subjects.requests[REGISTRIES.indexOf(r.registry)].push(r.id);
    for (const r of (await c.query('SELECT id, registry FROM gc_runs')).rows as {
      id: string;
      registry: string;
    }[])
      subjects.gcRuns[REGISTRIES.indexOf(r.registry)].push(r.id);
  });
  step(`${requests} deletion requests, ${requests * SPEC.itemsPerRequest} items, ${gcRuns} GC runs (SQL)`);

  await withClient(async (c) => {
    const indexes = (
      await c.query(
        `SELECT indexname, indexdef FROM pg_indexes
          WHERE tablename = 'audit_events' AND indexdef NOT LIKE 'CREATE UNIQUE INDEX%'`,
      )
    ).rows as { indexname: string; indexdef: string }[];
    for (const i of indexes) await c.query(`DROP INDEX ${i.indexname}`);
    // Triggers off for this session only: the chain is computed here, row by row, as the writer does.
    await c.query('SET session_replication_role = replica');
    const rows = auditRows(events, start, subjects, 20_261_122);
    async function* lines() {
      let batch: string[] = [];
      for (const r of rows) {
        batch.push(copyLine(r));
        if (batch.length === COPY_BATCH) {
          yield batch.join('');
          batch = [];
        }
      }
      if (batch.length) yield batch.join('');
    }
    await pipeline(
      Readable.from(lines()),
      c.query(
        copyFrom(`COPY audit_events (seq, id, occurred_at, action, actor_type, actor_id, actor_name, source_ip,
          request_id, registry, repository, tags, digest, outcome, upstream_status, subject_type, subject_id, details,
          prev_hash, hash) FROM STDIN`),
      ),
    );
    await c.query('SET session_replication_role = origin');
    step(`${events} audit events hashed and copied`);
    await c.query("SET maintenance_work_mem = '256MB'");
    for (const i of indexes) await c.query(i.indexdef);
    step(`${indexes.length} audit indexes built`);
    // What autovacuum does on a live database: statistics, and the visibility map for index-only reads.
    await c.query('VACUUM ANALYZE');
    step('vacuum analyze');
  });

  let verified: SeedReport['verified'];
  if (opts.verify !== false) {
    const vds = createDataSource(benchDatabaseUrl(), 2);
    await vds.initialize();
    try {
      const v0 = performance.now();
      const result = await new AuditService(vds).verify();
      verified = { ok: result.ok, checked: result.checked, seconds: (performance.now() - v0) / 1000 };
      if (!result.ok) throw new Error(`the seeded chain does not verify: ${JSON.stringify(result)}`);
    } finally {
      await vds.destroy();
    }
    step(`chain verified (${verified.checked} rows)`);
  }

  const seconds = (performance.now() - t0) / 1000;
  await withClient(async (c) => {
    await c.query(`CREATE TABLE bench_dataset (version int, events int, requests int, items_per_request int,
      seeded_at timestamptz, seconds double precision, end_at timestamptz)`);
    await c.query('INSERT INTO bench_dataset VALUES ($1, $2, $3, $4, now(), $5, $6)', [
      DATASET_VERSION,
      events,
      requests,
      SPEC.itemsPerRequest,
      seconds,
      end,
    ]);
  });
  return { reused: false, events, items: requests * SPEC.itemsPerRequest, seconds, steps, verified, end };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: { scale: { type: 'string', default: '1' }, reseed: { type: 'boolean', default: true } },
  });
  seedAuditDataset({ scale: Number(values.scale), reseed: values.reseed ?? true }, (m) =>
    console.error(m),
  ).then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
