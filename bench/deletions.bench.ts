import { cpSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Agent } from 'undici';
import { envSchema } from '../src/config/config.schema.js';
import { Queues } from '../src/queue/queue.constants.js';
import { redisOptions } from '../src/queue/redis-options.js';
import { TEST_REDIS_URL, TestEnvironment } from '../test/support/environment.js';
import { MANIFEST_ACCEPT, runPool } from '../test/support/image-pusher.js';
import { RegistryProcess } from '../test/support/registry-process.js';
import { BenchFailure } from './support/bench.js';
import type { BenchContext, BenchReport, Benchmark, Metric } from './support/bench.js';
import { GatewayProcess } from './support/gateway-process.js';
import {
  busyShare,
  cpuSeconds,
  cpuSecondsBetween,
  cpuSecondsByCommand,
  machineCpu,
  peakRssBytes,
} from './support/proc.js';
import { seedRepositories, storedDataset } from './support/dataset.js';
import { formatBytes, formatMs, formatSeconds, median } from './support/stats.js';

/*
 * Issue spec: delete 5,000 manifests through the gateway (queued, audited) and, in the same run, on an
 * identical registry with a direct client making 16 concurrent DELETEs; print gateway/direct, target
 * <= 1.5. Also print the audit rows written per second.
 *
 * Three registries start from copies of one stored template (500 repositories x 10 tags, every tag its
 * own manifest, one shared layer), since a delete run consumes its dataset. Both sides get the same input,
 * the 5,000 tags, and must end with those manifests deleted:
 * - direct: what an operator's script does (DESIGN, steps 3 and 4): for each tag, HEAD with the full Accept
 *   list for its digest, then `DELETE /v2/<repo>/manifests/<digest>`; DIRECT_CONCURRENCY tags at once, so
 *   16 DELETEs in flight. A registry refuses a DELETE by tag, so the digest has to come from somewhere.
 * - gateway: one `POST /api/v1/deletions` with the tags as `{repository, reference}` items; it plans them
 *   (resolves each tag, lists the tags sharing each digest, guards multi-arch children, estimates bytes),
 *   queues them and deletes with the registry's `deletes.concurrency` set to DIRECT_CONCURRENCY. Its clock
 *   runs from that POST until the request reports a final status.
 * For reference, a third copy is deleted by a client that was handed the digests (DELETEs only).
 * Every tag is resolved on all three copies before any clock, so each registry's caches are equally warm.
 */
const SPEC = { repositories: 500, tagsPerRepository: 10 };
const DIRECT_CONCURRENCY = 16;
/** One registry copy per contender: direct (HEAD + DELETE), reference (DELETEs of known digests), gateway. */
const COPIES = ['direct', 'reference', 'gateway'] as const;
const TARGET_RATIO = 1.5;
const REGISTRY_NAME = 'bench';
const POLL_MS = 150;
const PAGE_SIZE = 1000;
/** Bump when the seeded content changes, so stored templates are seeded again. */
const DATASET_VERSION = 1;
const SEED = { prefix: 'bench', concurrency: 16, format: 'oci', layerSize: 1024 } as const;
/** Gateway variables passed through from the bench's environment, for experiments. */
const GATEWAY_KNOBS = [
  'DELETE_CHUNK_SIZE',
  'DELETE_WORKER_CONCURRENCY',
  'UPSTREAM_CONNECTIONS',
  'UPSTREAM_CONCURRENCY',
  'DATABASE_POOL_SIZE',
];

/** repository -> tag -> digest */
type Listing = Map<string, Map<string, string>>;

interface CpuWindow {
  ms: number;
  gatewayApi?: number;
  gatewayWorker?: number;
  registry?: number;
  postgres: number;
  redis: number;
  bench: number;
  machineBusy?: number;
  /** CPU seconds no measured process accounts for. */
  other?: number;
}

interface DeletionView {
  id: string;
  status: string;
  itemCount: number;
  counts: Record<string, number>;
  items?: {
    position: number;
    status: string;
    upstreamStatus: number | null;
    alreadyGone: boolean | null;
    tags: string[];
    error: { code: string; message: string } | null;
  }[];
}

export const deletionsBench: Benchmark = {
  name: 'deletions',
  title: 'Bulk manifest deletes through the gateway (queued, audited) vs a direct concurrent client',
  run: runDeletionsBench,
};

async function runDeletionsBench(ctx: BenchContext): Promise<BenchReport> {
  const repositories = Math.max(1, Math.round(SPEC.repositories * ctx.scale));
  const { tagsPerRepository } = SPEC;
  const manifests = repositories * tagsPerRepository;
  const metrics: Metric[] = [];

  const template = await openTemplate(ctx, repositories, tagsPerRepository);
  metrics.push(
    {
      label: 'dataset',
      value: `${repositories} repositories x ${tagsPerRepository} tags = ${manifests} manifests (one shared layer)`,
    },
    { label: 'seeding', value: template.seeding },
  );

  const runDir = (which: string) => join(template.dir, `run-${which}`);
  let direct: RegistryProcess | undefined;
  let digestsOnly: RegistryProcess | undefined;
  let upstream: RegistryProcess | undefined;
  let env: TestEnvironment | undefined;
  let gateway: GatewayProcess | undefined;
  try {
    // Fresh copies of the template, one per registry: deletes consume them. cpSync rather than the
    // promise-based cp: its native copy is about 2.5x faster on a storage tree of mostly directories.
    const c0 = performance.now();
    for (const which of COPIES) {
      await rm(runDir(which), { recursive: true, force: true });
      cpSync(template.storage, runDir(which), { recursive: true });
    }
    const copyMs = performance.now() - c0;
    // BENCH_REGISTRY_LOG=info logs every request on both registries (fair, but it costs registry CPU),
    // and the summary then shows what each registry saw: request counts and DELETEs in flight.
    const logLevel = process.env.BENCH_REGISTRY_LOG === 'info' ? 'info' : 'warn';
    [direct, digestsOnly, upstream] = await Promise.all(
      COPIES.map((which) => RegistryProcess.start({ rootDir: runDir(which), logLevel })),
    );
    metrics.push({
      label: 'storage copies',
      value: `${COPIES.length} x template copied in ${formatMs(copyMs)}`,
    });

    // Outside every clock: what is stored, and where each tag points.
    const http = new Agent({ connections: DIRECT_CONCURRENCY, pipelining: 1, keepAliveTimeout: 30_000 });
    let listing: Listing;
    try {
      ctx.log(`deletions: resolving ${manifests} tags on each registry copy`);
      listing = await resolveAll(http, direct.url, DIRECT_CONCURRENCY);
      assertDataset(listing, repositories, tagsPerRepository);
      for (const copy of [digestsOnly, upstream])
        assertSameTags(listing, await resolveAll(http, copy.url, DIRECT_CONCURRENCY));
    } finally {
      await http.close();
    }

    // --- direct baseline --------------------------------------------------------------------------
    ctx.log(
      `deletions: direct client deleting ${manifests} tags' manifests (HEAD + DELETE), ${DIRECT_CONCURRENCY} at once`,
    );
    const directRun = await measureCpu({ registry: direct.pid }, () =>
      directDeletes(direct!.url, listing, DIRECT_CONCURRENCY, 'resolve'),
    );
    assertAll202('direct', directRun.result.statuses, manifests);
    ctx.log(`deletions: direct ${formatMs(directRun.cpu.ms)}`);
    ctx.log(`deletions: reference client deleting ${manifests} known digests, ${DIRECT_CONCURRENCY} at once`);
    const digestRun = await measureCpu({ registry: digestsOnly.pid }, () =>
      directDeletes(digestsOnly!.url, listing, DIRECT_CONCURRENCY, 'digests'),
    );
    assertAll202('reference', digestRun.result.statuses, manifests);

    // --- gateway ------------------------------------------------------------------------------------
    env = await TestEnvironment.create('deletions', 'bench');
    const gatewayEnv: Record<string, string> = env.gatewayEnv();
    for (const key of GATEWAY_KNOBS) {
      const value = process.env[key];
      if (value !== undefined) gatewayEnv[key] = value;
    }
    const knobs = resolvedKnobs(gatewayEnv);
    gateway = await GatewayProcess.start({
      env: gatewayEnv,
      name: 'deletions',
      worker: true,
      // BENCH_CPU_PROF=<dir> writes V8 CPU profiles of the API and the worker there when they stop.
      nodeArgs: process.env.BENCH_CPU_PROF
        ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
        : [],
    });
    await gateway.request('POST', '/api/v1/registries', {
      name: REGISTRY_NAME,
      url: upstream.url,
      deletes: { concurrency: DIRECT_CONCURRENCY },
    });
    const registryView = JSON.parse(await gateway.request('GET', `/api/v1/registries/${REGISTRY_NAME}`)) as {
      deletes?: { concurrency?: number };
    };
    if (registryView.deletes?.concurrency !== DIRECT_CONCURRENCY) {
      throw new BenchFailure(
        `registry "${REGISTRY_NAME}" reports deletes ${JSON.stringify(registryView.deletes)}, not concurrency ${DIRECT_CONCURRENCY}`,
      );
    }
    const items = [...listing].flatMap(([repository, tags]) =>
      [...tags.keys()].map((tag) => ({ repository, reference: tag })),
    );

    ctx.log(`deletions: gateway deleting ${manifests} manifests (one request)`);
    const gw = gateway;
    const pids = { registry: upstream.pid, gatewayApi: gw.apiPid, gatewayWorker: gw.workerPid };
    const planning = await measureCpu(pids, () =>
      gw.request('POST', '/api/v1/deletions', {
        registry: REGISTRY_NAME,
        items,
        reason: 'deletions benchmark',
      }),
    );
    const accepted = JSON.parse(planning.result) as DeletionView;
    ctx.log(`deletions: gateway planned ${accepted.itemCount} items in ${formatMs(planning.cpu.ms)}`);
    const deadlineMs = Math.max(120_000, 30 * directRun.cpu.ms);
    const execution = await measureCpu(pids, () => waitUntilFinal(gw, accepted.id, deadlineMs));
    const gatewayMs = planning.cpu.ms + execution.cpu.ms;
    ctx.log(
      `deletions: gateway ${formatMs(gatewayMs)} (planning ${formatMs(planning.cpu.ms)}, execution ${formatMs(execution.cpu.ms)})`,
    );
    const peak = { api: peakRssBytes(gw.apiPid!), worker: peakRssBytes(gw.workerPid!) };

    // --- checks (outside the clocks) ------------------------------------------------------------------
    const final = JSON.parse(await gw.request('GET', `/api/v1/deletions/${accepted.id}`)) as DeletionView;
    assertGatewayResult(final, manifests);
    const readCost = await pollCost(gw, accepted.id);
    const check = new Agent({ connections: DIRECT_CONCURRENCY, pipelining: 1 });
    try {
      for (const [what, registry] of [
        ['direct', direct],
        ['reference', digestsOnly],
        ['gateway', upstream],
      ] as const) {
        const left = await listTags(check, registry.url, DIRECT_CONCURRENCY, [...listing.keys()]);
        const remaining = [...left.values()].reduce((n, t) => n + t.size, 0);
        if (remaining) {
          const example = [...left].find(([, t]) => t.size > 0)!;
          throw new BenchFailure(
            `${remaining} tags are left on the ${what} registry after deleting every manifest, e.g. ${example[0]}: ${[...example[1].keys()].join(', ')}`,
          );
        }
      }
    } finally {
      await check.close();
    }
    const verify = JSON.parse(await gw.request('GET', '/api/v1/audit/verify')) as {
      ok: boolean;
      checked: number;
      reason?: string;
    };
    if (!verify.ok) throw new BenchFailure(`GET /api/v1/audit/verify: ${JSON.stringify(verify)}`);
    const audit = await auditRows(env, accepted.id);
    if (audit.items !== manifests) {
      throw new BenchFailure(
        `${audit.items} deletion.item.* audit rows for request ${accepted.id}, expected ${manifests} (${JSON.stringify(audit.byAction)})`,
      );
    }
    const profile = await chunkProfile(env, accepted.id, gatewayEnv.REDIS_PREFIX);
    const server = await serverTimes(env, accepted.id);
    if (logLevel === 'info') {
      metrics.push(
        { label: 'direct registry saw (log)', value: await registryLogProfile(direct.logPath) },
        { label: 'reference registry saw (log)', value: await registryLogProfile(digestsOnly.logPath) },
        { label: 'gateway registry saw (log)', value: await registryLogProfile(upstream.logPath) },
      );
    }

    const directMs = directRun.cpu.ms;
    const ratio = gatewayMs / directMs;
    const executionSeconds = execution.cpu.ms / 1000;
    const auditSpanSeconds = audit.lastItemMs !== null ? (audit.lastItemMs - audit.firstItemMs!) / 1000 : 0;
    const rate = (n: number, ms: number) => `${Math.round((n * 1000) / ms)}/s`;
    const cpu = (v: number | undefined) => (v === undefined ? 'n/a' : formatSeconds(v));
    const share = (v: number | undefined) => (v === undefined ? 'n/a' : `${Math.round(v * 100)}%`);

    metrics.push(
      {
        label: 'direct deletes',
        value: `${formatSeconds(directMs / 1000)} (${manifests} tags, each HEAD for its digest then DELETE by digest, all 202, ${DIRECT_CONCURRENCY} tags in flight, ${rate(manifests, directMs)})`,
      },
      {
        label: 'gateway deletes',
        value: `${formatSeconds(gatewayMs / 1000)} (POST /deletions with ${manifests} tags until status succeeded, ${rate(manifests, gatewayMs)})`,
      },
      {
        label: 'ratio gateway/direct',
        value: ratio.toFixed(2),
        target: `<= ${TARGET_RATIO}`,
        ok: ratio <= TARGET_RATIO,
      },
      {
        label: 'ratio gateway/DELETEs of known digests (info)',
        value:
          `${(gatewayMs / digestRun.cpu.ms).toFixed(2)}: a client handed the ${manifests} digests sent only the ` +
          `DELETEs, ${DIRECT_CONCURRENCY} in flight, in ${formatSeconds(digestRun.cpu.ms / 1000)} ` +
          `(registry CPU ${digestRun.cpu.registry === undefined ? 'n/a' : formatSeconds(digestRun.cpu.registry)})`,
      },
      {
        label: 'CPU ratio gateway/direct (info)',
        value: cpuRatio(directRun.cpu, [planning.cpu, execution.cpu]),
      },
      {
        label: 'gateway time split',
        value:
          `planning ${formatSeconds(planning.cpu.ms / 1000)} (until the POST answered 202: tags/list + GET of every tag), ` +
          `execution ${formatSeconds(executionSeconds)} (queued until a final status, polled every ${POLL_MS} ms on GET /deletions?limit=1)`,
      },
      {
        label: 'gateway, server side',
        value: server,
      },
      {
        label: 'audit rows per second',
        value:
          `${Math.round(audit.total / executionSeconds)}/s (${audit.total} rows for the request / execution); ` +
          `item rows were written over ${formatSeconds(auditSpanSeconds)}` +
          (auditSpanSeconds > 0 ? ` = ${Math.round(audit.items / auditSpanSeconds)}/s while writing` : ''),
      },
      {
        label: 'GET /deletions/:id, all items (info)',
        value:
          `${formatMs(readCost.ms)}, ${formatBytes(readCost.bytes)}, API CPU ${readCost.apiCpu === undefined ? 'n/a' : formatMs(readCost.apiCpu * 1000)} ` +
          `per read (not polled during the run: every ${POLL_MS} ms it would compete with the worker)`,
      },
      {
        label: 'worker chunks',
        value: profile,
      },
      {
        label: 'gateway config',
        value: `registry deletes.concurrency ${DIRECT_CONCURRENCY}; ${knobs}`,
      },
      {
        label: 'gateway peak RSS (VmHWM)',
        value: `API ${peak.api ? formatBytes(peak.api) : 'n/a'}, worker ${peak.worker ? formatBytes(peak.worker) : 'n/a'}`,
      },
      {
        label: 'CPU, direct run',
        value:
          `registry ${cpu(directRun.cpu.registry)}, client ${cpu(directRun.cpu.bench)}; machine busy ${share(directRun.cpu.machineBusy)} ` +
          `(reference run: registry ${cpu(digestRun.cpu.registry)}, client ${cpu(digestRun.cpu.bench)})`,
      },
      {
        label: 'CPU, gateway planning',
        value: cpuLine(planning.cpu),
      },
      {
        label: 'CPU, gateway execution',
        value: cpuLine(execution.cpu),
      },
      otherLoad({
        direct: directRun.cpu,
        reference: digestRun.cpu,
        planning: planning.cpu,
        execution: execution.cpu,
      }),
      {
        label: 'checks',
        value:
          `${final.counts.succeeded} items succeeded (all upstream 202, none already gone); no tags left on either ` +
          `registry; ${audit.total} audit rows for the request (${audit.items} item rows); audit chain ok (${verify.checked} rows)`,
      },
    );
    return { name: deletionsBench.name, metrics };
  } finally {
    await gateway?.stop();
    await Promise.all([direct?.cleanup(), digestsOnly?.cleanup(), upstream?.cleanup()]);
    await Promise.all(COPIES.map((w) => rm(runDir(w), { recursive: true, force: true })));
    await env?.destroy().catch(() => undefined);
  }
}

function cpuLine(c: CpuWindow): string {
  const cpu = (v: number | undefined) => (v === undefined ? 'n/a' : formatSeconds(v));
  return (
    `gateway API ${cpu(c.gatewayApi)}, worker ${cpu(c.gatewayWorker)}, registry ${cpu(c.registry)}, ` +
    `postgres ${cpu(c.postgres)}, redis ${cpu(c.redis)}, bench ${cpu(c.bench)}; ` +
    `machine busy ${c.machineBusy === undefined ? 'n/a' : `${Math.round(c.machineBusy * 100)}%`}`
  );
}

/** All CPU the gateway path used (gateway, registry, Postgres, Redis, client) over what the direct path used. */
function cpuRatio(direct: CpuWindow, gateway: CpuWindow[]): string {
  if (
    direct.registry === undefined ||
    gateway.some((c) => c.registry === undefined || c.gatewayWorker === undefined)
  )
    return 'n/a';
  const d = direct.registry + direct.bench;
  const g = gateway.reduce(
    (n, c) => n + c.registry! + (c.gatewayApi ?? 0) + c.gatewayWorker! + c.postgres + c.redis + c.bench,
    0,
  );
  return `${(g / d).toFixed(2)} (${formatSeconds(g)} / ${formatSeconds(d)} of CPU)`;
}

/**
 * This machine is shared; CPU that none of the measured processes used means the timings competed with
 * something else (more than a tenth of what the measured processes needed marks the run noisy).
 */
function otherLoad(windows: Record<string, CpuWindow>): Metric {
  const entries = Object.entries(windows);
  if (entries.some(([, c]) => c.other === undefined))
    return { label: 'CPU of other processes', value: 'n/a' };
  const measured = (c: CpuWindow) =>
    (c.registry ?? 0) + (c.gatewayApi ?? 0) + (c.gatewayWorker ?? 0) + c.postgres + c.redis + c.bench;
  const noisy = entries.filter(([, c]) => c.other! > 0.1 * measured(c)).map(([name]) => name);
  return {
    label: 'CPU of other processes',
    value:
      entries.map(([name, c]) => `${name} ${formatSeconds(c.other!)}`).join(', ') +
      (noisy.length ? `; NOISY (${noisy.join(', ')}): other load competed, rerun on an idle machine` : ''),
  };
}

function resolvedKnobs(gatewayEnv: Record<string, string>): string {
  const shape = envSchema.shape as unknown as Record<string, { parse(v: unknown): unknown }>;
  return GATEWAY_KNOBS.map((key) => `${key}=${String(shape[key].parse(gatewayEnv[key]))}`).join(' ');
}

// --- measuring -----------------------------------------------------------------------------------------

async function measureCpu<T>(
  pids: { registry?: number; gatewayApi?: number; gatewayWorker?: number },
  fn: () => Promise<T>,
): Promise<{ result: T; cpu: CpuWindow }> {
  const read = () => ({
    registry: pids.registry === undefined ? undefined : cpuSeconds(pids.registry),
    gatewayApi: pids.gatewayApi === undefined ? undefined : cpuSeconds(pids.gatewayApi),
    gatewayWorker: pids.gatewayWorker === undefined ? undefined : cpuSeconds(pids.gatewayWorker),
    postgres: cpuSecondsByCommand(['postgres']),
    redis: cpuSecondsByCommand(['redis-server']),
    bench: process.cpuUsage(),
    machine: machineCpu(),
  });
  const diff = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : b - a);
  const before = read();
  const t0 = performance.now();
  const result = await fn();
  const ms = performance.now() - t0;
  const after = read();
  const usage = process.cpuUsage(before.bench);
  const c: CpuWindow = {
    ms,
    registry: diff(before.registry, after.registry),
    gatewayApi: diff(before.gatewayApi, after.gatewayApi),
    gatewayWorker: diff(before.gatewayWorker, after.gatewayWorker),
    postgres: cpuSecondsBetween(before.postgres, after.postgres),
    redis: cpuSecondsBetween(before.redis, after.redis),
    bench: (usage.user + usage.system) / 1e6,
    machineBusy: busyShare(before.machine, after.machine),
  };
  const machine = diff(before.machine?.busy, after.machine?.busy);
  if (machine !== undefined && c.registry !== undefined) {
    const known = c.registry + (c.gatewayApi ?? 0) + (c.gatewayWorker ?? 0) + c.postgres + c.redis + c.bench;
    c.other = Math.max(0, machine - known);
  }
  return { result, cpu: c };
}

/**
 * Polls until the request leaves queued/running. The list endpoint carries the status and counts without
 * the items: GET /deletions/:id returns all of them, and reading that every POLL_MS would load the API
 * (and this process) with work no client of a real deletion does while the worker runs; see pollCost.
 */
async function waitUntilFinal(
  gateway: GatewayProcess,
  id: string,
  deadlineMs: number,
): Promise<DeletionView> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const page = JSON.parse(
      await gateway.request('GET', `/api/v1/deletions?registry=${REGISTRY_NAME}&limit=1`),
    ) as { items: DeletionView[] };
    const view = page.items[0];
    if (view?.id !== id) throw new BenchFailure(`GET /api/v1/deletions lists ${view?.id}, not request ${id}`);
    if (!['queued', 'running'].includes(view.status)) return view;
    if (Date.now() > deadline) {
      throw new BenchFailure(
        `deletion ${id} still ${view.status} after ${formatMs(deadlineMs)}: ${JSON.stringify(view.counts)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** What one GET /deletions/:id (every item) costs, after the run: wall time and API CPU, medians of 3. */
async function pollCost(
  gateway: GatewayProcess,
  id: string,
): Promise<{ ms: number; apiCpu?: number; bytes: number }> {
  const ms: number[] = [];
  const cpu: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 3; i++) {
    const before = cpuSeconds(gateway.apiPid!);
    const t0 = performance.now();
    bytes = Buffer.byteLength(await gateway.request('GET', `/api/v1/deletions/${id}`));
    ms.push(performance.now() - t0);
    const after = cpuSeconds(gateway.apiPid!);
    if (before !== undefined && after !== undefined) cpu.push(after - before);
  }
  return { ms: median(ms), apiCpu: cpu.length === 3 ? median(cpu) : undefined, bytes };
}

function assertGatewayResult(view: DeletionView, manifests: number): void {
  const items = view.items ?? [];
  const bad = items.filter(
    (i) =>
      i.status !== 'succeeded' || i.upstreamStatus !== 202 || i.alreadyGone !== false || i.tags.length !== 1,
  );
  if (
    view.status !== 'succeeded' ||
    view.counts.succeeded !== manifests ||
    items.length !== manifests ||
    bad.length
  ) {
    const example = bad[0] ? ` e.g. item ${JSON.stringify(bad[0])}` : '';
    throw new BenchFailure(
      `deletion ${view.id} ended ${view.status} with ${JSON.stringify(view.counts)} over ${items.length} items; ` +
        `expected succeeded with ${manifests} items deleted upstream (202), each removing one tag;${example}`,
    );
  }
}

async function auditRows(
  env: TestEnvironment,
  requestId: string,
): Promise<{
  total: number;
  items: number;
  byAction: Record<string, number>;
  firstItemMs: number | null;
  lastItemMs: number | null;
}> {
  const rows = await env.query<{ action: string; n: number; first: Date; last: Date }>(
    `SELECT action, count(*)::int AS n, min(occurred_at) AS first, max(occurred_at) AS last
       FROM audit_events WHERE subject_id = $1 GROUP BY action`,
    [requestId],
  );
  const byAction = Object.fromEntries(rows.map((r) => [r.action, r.n]));
  const itemRows = rows.filter((r) => r.action.startsWith('deletion.item.'));
  return {
    total: rows.reduce((n, r) => n + r.n, 0),
    items: itemRows.reduce((n, r) => n + r.n, 0),
    byAction,
    firstItemMs: itemRows.length ? Math.min(...itemRows.map((r) => r.first.getTime())) : null,
    lastItemMs: itemRows.length ? Math.max(...itemRows.map((r) => r.last.getTime())) : null,
  };
}

/** The request's own timestamps: created (end of planning), enqueued, finished. */
async function serverTimes(env: TestEnvironment, requestId: string): Promise<string> {
  const [r] = await env.query<{ created_at: Date; enqueued_at: Date | null; finished_at: Date | null }>(
    'SELECT created_at, enqueued_at, finished_at FROM deletion_requests WHERE id = $1',
    [requestId],
  );
  if (!r?.finished_at) return 'n/a';
  const s = (a: Date, b: Date | null) => (b ? formatSeconds((b.getTime() - a.getTime()) / 1000) : 'n/a');
  return (
    `request committed at planning end; enqueued +${s(r.created_at, r.enqueued_at)}, ` +
    `finished +${s(r.created_at, r.finished_at)} after commit (the poll saw it at most ${POLL_MS} ms later)`
  );
}

/**
 * Where a worker's time goes, per chunk job: before its settle transaction (claim, waiting for the
 * registry's delete slots, the upstream DELETEs) and the settle transaction itself (item updates, one
 * audit row per item, the request's status). The settle start is the items' updated_at, which is that
 * transaction's now(); the job's start and end come from BullMQ.
 */
async function chunkProfile(env: TestEnvironment, requestId: string, redisPrefix: string): Promise<string> {
  const settled = await env.query<{ chunk: number; n: number; settled_at: Date }>(
    `SELECT chunk, count(*)::int AS n, min(updated_at) AS settled_at FROM deletion_items
      WHERE request_id = $1 AND chunk >= 0 GROUP BY chunk ORDER BY chunk`,
    [requestId],
  );
  const queue = new Queue(Queues.deletions, {
    connection: redisOptions(TEST_REDIS_URL),
    prefix: redisPrefix,
  });
  try {
    const spans: { n: number; start: number; settleAt: number; end: number }[] = [];
    for (const s of settled) {
      const job = await queue.getJob(`${requestId}-${s.chunk}`);
      if (!job?.processedOn || !job.finishedOn) continue;
      spans.push({ n: s.n, start: job.processedOn, settleAt: s.settled_at.getTime(), end: job.finishedOn });
    }
    if (!spans.length) return 'n/a (jobs already removed)';
    const covered = (intervals: [number, number][]) => {
      let total = 0;
      let until = -Infinity;
      for (const [a, b] of [...intervals].sort((x, y) => x[0] - y[0])) {
        if (b <= until) continue;
        total += b - Math.max(a, until);
        until = b;
      }
      return total;
    };
    const settles = spans.map((s): [number, number] => [s.settleAt, s.end]);
    const settleSum = settles.reduce((n, [a, b]) => n + b - a, 0);
    const wall = Math.max(...spans.map((s) => s.end)) - Math.min(...spans.map((s) => s.start));
    return (
      `${spans.length} jobs of ~${median(spans.map((s) => s.n))} items; per job, medians: ` +
      `${formatMs(median(spans.map((s) => s.settleAt - s.start)))} before settling (claim, delete slots, DELETEs), ` +
      `${formatMs(median(settles.map(([a, b]) => b - a)))} settling (items + audit rows, one transaction); ` +
      `settle transactions took ${formatSeconds(settleSum / 1000)} in all and covered ` +
      `${formatSeconds(covered(settles) / 1000)} of the ${formatSeconds(wall / 1000)} from first job start to last job end`
    );
  } finally {
    await queue.close();
  }
}

/**
 * From a registry's info log ("response completed" lines with their end time and duration): requests
 * per method, and over the DELETEs' span, how many were in flight on average and how long none was.
 */
async function registryLogProfile(logPath: string): Promise<string> {
  const text = await readFile(logPath, 'utf8');
  const byMethod = new Map<string, number>();
  const deletes: [number, number][] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('msg="response completed')) continue;
    const method = /http\.request\.method=(\w+)/.exec(line)?.[1] ?? '?';
    const status = /http\.response\.status=(\d+)/.exec(line)?.[1] ?? '?';
    const key = `${method} ${status}`;
    byMethod.set(key, (byMethod.get(key) ?? 0) + 1);
    // The probe's DELETEs of a digest that exists nowhere (404) happen before any clock.
    if (key !== 'DELETE 202') continue;
    const time = /^time="([^"]+)"/.exec(line)?.[1];
    const duration = /http\.response\.duration="?([\d.]+)(µs|ms|s)"?/.exec(line);
    if (!time || !duration) continue;
    // Nanosecond timestamps: keep the sub-millisecond part Date.parse drops.
    const fraction = /\.(\d+)Z$/.exec(time)?.[1] ?? '0';
    const end = Date.parse(time.replace(/\.\d+Z$/, 'Z')) + Number(`0.${fraction}`) * 1000;
    const ms = Number(duration[1]) * (duration[2] === 's' ? 1000 : duration[2] === 'ms' ? 1 : 0.001);
    deletes.push([end - ms, end]);
  }
  const counts = [...byMethod]
    .sort()
    .map(([m, n]) => `${n} ${m}`)
    .join(', ');
  if (!deletes.length) return counts || 'no requests logged';
  deletes.sort((a, b) => a[0] - b[0]);
  const span = Math.max(...deletes.map((d) => d[1])) - deletes[0][0];
  const busy = deletes.reduce((n, [a, b]) => n + (b - a), 0);
  let idle = 0;
  let until = deletes[0][0];
  for (const [a, b] of deletes) {
    if (a > until) idle += a - until;
    until = Math.max(until, b);
  }
  return (
    `${counts}; DELETEs (202) over ${formatMs(span)}: ${(busy / span).toFixed(1)} in flight on average, ` +
    `median ${median(deletes.map(([a, b]) => b - a)).toFixed(1)} ms each, none in flight for ${formatMs(idle)}`
  );
}

// --- registry clients --------------------------------------------------------------------------------

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

async function getJson<T>(
  agent: Agent,
  origin: string,
  path: string,
): Promise<{ status: number; json: T | null; link?: string }> {
  const res = await agent.request({ origin, path, method: 'GET' });
  const text = await res.body.text();
  if (res.statusCode === 404) return { status: 404, json: null };
  if (res.statusCode !== 200)
    throw new BenchFailure(`GET ${origin}${path} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return { status: 200, json: JSON.parse(text) as T, link: first(res.headers.link) };
}

function nextLink(link: string | undefined, origin: string): string | null {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link ?? '');
  if (!m) return null;
  const url = new URL(m[1], origin);
  return url.pathname + url.search;
}

/** Tags of the given repositories (default: every repository in `_catalog`); digests left empty. */
async function listTags(
  agent: Agent,
  registryUrl: string,
  concurrency: number,
  repositories?: string[],
): Promise<Listing> {
  const origin = new URL(registryUrl).origin;
  let names = repositories;
  if (!names) {
    names = [];
    let path: string | null = `/v2/_catalog?n=${PAGE_SIZE}`;
    while (path) {
      const res: { json: { repositories?: string[] | null } | null; link?: string } = await getJson(
        agent,
        origin,
        path,
      );
      const page = res.json?.repositories ?? [];
      names.push(...page);
      path = page.length ? nextLink(res.link, origin) : null;
    }
  }
  const listing: Listing = new Map();
  await runPool(names, concurrency, async (repository) => {
    const tags = new Map<string, string>();
    let path: string | null = `/v2/${repository}/tags/list?n=${PAGE_SIZE}`;
    while (path) {
      const res: { json: { tags?: string[] | null } | null; link?: string } = await getJson(
        agent,
        origin,
        path,
      );
      const page = res.json?.tags ?? [];
      for (const tag of page) tags.set(tag, '');
      path = page.length ? nextLink(res.link, origin) : null;
    }
    listing.set(repository, tags);
  });
  return listing;
}

/** Every tag and the digest it points at (HEAD with the full Accept list, as the gateway resolves). */
async function resolveAll(agent: Agent, registryUrl: string, concurrency: number): Promise<Listing> {
  const origin = new URL(registryUrl).origin;
  const listing = await listTags(agent, registryUrl, concurrency);
  const refs = [...listing].flatMap(([repository, tags]) =>
    [...tags.keys()].map((tag) => ({ repository, tag })),
  );
  await runPool(refs, concurrency, async ({ repository, tag }) => {
    const res = await agent.request({
      origin,
      path: `/v2/${repository}/manifests/${tag}`,
      method: 'HEAD',
      headers: { accept: MANIFEST_ACCEPT },
    });
    await res.body.dump();
    const digest = first(res.headers['docker-content-digest']);
    if (res.statusCode !== 200 || !digest) {
      throw new BenchFailure(`HEAD ${repository}:${tag} answered ${res.statusCode} (digest ${digest})`);
    }
    listing.get(repository)!.set(tag, digest);
  });
  return listing;
}

/**
 * A direct client, `concurrency` tags at once on as many connections, first to last response. `resolve`
 * is the baseline: HEAD each tag (full Accept list) for its digest, then DELETE that digest. `digests`
 * is the reference: the digests are already known, so only the DELETEs are sent.
 */
async function directDeletes(
  registryUrl: string,
  listing: Listing,
  concurrency: number,
  mode: 'resolve' | 'digests',
): Promise<{ statuses: Map<number, number> }> {
  const origin = new URL(registryUrl).origin;
  const agent = new Agent({ connections: concurrency, pipelining: 1, keepAliveTimeout: 30_000 });
  const refs = [...listing].flatMap(([repository, tags]) =>
    [...tags].map(([tag, digest]) => ({ repository, tag, digest })),
  );
  const statuses = new Map<number, number>();
  try {
    await runPool(refs, concurrency, async ({ repository, tag, digest: known }) => {
      let digest = known;
      if (mode === 'resolve') {
        const head = await agent.request({
          origin,
          path: `/v2/${repository}/manifests/${tag}`,
          method: 'HEAD',
          headers: { accept: MANIFEST_ACCEPT },
        });
        await head.body.dump();
        digest = first(head.headers['docker-content-digest']) ?? '';
        if (head.statusCode !== 200 || !digest)
          throw new BenchFailure(`HEAD ${repository}:${tag} answered ${head.statusCode} (digest ${digest})`);
      }
      const res = await agent.request({
        origin,
        path: `/v2/${repository}/manifests/${digest}`,
        method: 'DELETE',
      });
      await res.body.dump();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    });
    return { statuses };
  } finally {
    await agent.close();
  }
}

function assertAll202(who: string, statuses: Map<number, number>, manifests: number): void {
  const wrong = [...statuses].filter(([status]) => status !== 202);
  if (wrong.length) {
    throw new BenchFailure(
      `${who} DELETEs answered ${wrong.map(([s, n]) => `${n} x ${s}`).join(', ')}; all ${manifests} should be 202`,
    );
  }
}

// --- dataset -----------------------------------------------------------------------------------------

function assertDataset(listing: Listing, repositories: number, tagsPerRepository: number): void {
  const tags = [...listing.values()].reduce((n, t) => n + t.size, 0);
  const digests = new Set([...listing.values()].flatMap((t) => [...t.values()]));
  const expected = repositories * tagsPerRepository;
  if (listing.size !== repositories || tags !== expected || digests.size !== expected) {
    throw new BenchFailure(
      `the stored template is not ${repositories} repositories x ${tagsPerRepository} distinct manifests: ` +
        `${listing.size} repositories, ${tags} tags, ${digests.size} digests; run with --reseed`,
    );
  }
}

function assertSameTags(expected: Listing, actual: Listing): void {
  const lines = (l: Listing) =>
    [...l].flatMap(([repo, tags]) => [...tags.keys()].map((t) => `${repo}:${t}`)).sort();
  const want = lines(expected);
  const got = lines(actual);
  if (want.length !== got.length || want.some((line, i) => line !== got[i])) {
    throw new BenchFailure(
      `the two registry copies differ: ${want.length} vs ${got.length} tags; the template copy may be incomplete`,
    );
  }
}

/** The template, seeded once and reused (bench/support/dataset.ts); runs delete from copies of it. */
function openTemplate(ctx: BenchContext, repositories: number, tagsPerRepository: number) {
  return storedDataset(
    ctx,
    `deletions-${repositories}x${tagsPerRepository}`,
    { version: DATASET_VERSION, repositories, tagsPerRepository, seed: SEED },
    (storage) =>
      seedRepositories(ctx, storage, { what: 'deletions', ...SEED, repositories, tagsPerRepository }),
  );
}
