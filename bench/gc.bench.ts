import { spawn } from 'node:child_process';
import { cpSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { GcVerification } from '../src/gc/gc.entity.js';
import { TestEnvironment } from '../test/support/environment.js';
import { ImagePusher, runPool } from '../test/support/image-pusher.js';
import { RegistryService } from '../test/support/registry-service.js';
import { BenchFailure } from './support/bench.js';
import type { BenchContext, BenchReport, Benchmark, Metric } from './support/bench.js';
import { GatewayProcess } from './support/gateway-process.js';
import { childPids, measureCpu, peakRssBytes } from './support/proc.js';
import { storedDataset } from './support/dataset.js';
import { formatBytes, formatList, formatMs, median } from './support/stats.js';

/*
 * Issue spec: GC through the gateway versus the bare `garbage-collect` command on an identical registry
 * in the same run (500 images, half deleted); print the ratio of wall times. Target: <= 1.2 plus the
 * registry restart.
 *
 * A stored template holds 50 repositories x 10 tags, each tag its own image with its own five layers;
 * the manifests of half the tags are deleted (by digest, through the v2 API), so their blobs are garbage.
 * Two copies: the bare command runs on one (`docker-registry garbage-collect <config>`, its wall time);
 * the gateway runs a GC on the other through its API (fence `gateway`, the default in-memory cache, so
 * the registry is restarted; verification `sample`, the default), from the POST until the run reports a
 * final status (the client waits with `GET ?wait=`, as a script would). The gateway is a running one: its
 * worker takes jobs before anything is timed, and one GC of a small registry of its own warms it up. The
 * restart the gateway does is timed on the bare copy too (the same lifecycle command, until /v2/ answers)
 * and is what the target adds to 1.2. Both sides are timed in BENCH_GC_ROUNDS rounds (5) on fresh copies,
 * taking turns to go first; the median of the rounds' ratios is the result (one run of either side varies
 * by 10 to 20% on two cores).
 */
// Five layers of 256 KiB: small next to a real CI image (tens to hundreds of MiB), but with the layer count
// such images have, which is what the collector's time (and the gateway's reads of the storage) grow with.
const SPEC = { repositories: 50, tagsPerRepository: 10, layersPerImage: 5 };
const TARGET_RATIO = 1.2;
const LAYER_SIZE = 256 * 1024;
const DATASET_VERSION = 2;
const REGISTRY_NAME = 'bench';
const WARMUP_NAME = 'bench-warmup';
const WAIT_SECONDS = 60;
/** Rounds, each on fresh copies; the median ratio is the result (one run of each varies by 10 to 20%). */
const ROUNDS = Math.max(1, Number(process.env.BENCH_GC_ROUNDS ?? 5));

interface RunView {
  id: string;
  status: string;
  phase: string;
  blobsDeleted: number | null;
  manifestsDeleted: number | null;
  bytesFreed: number | null;
  bytesEstimated: number | null;
  verification: GcVerification | null;
  error: { code: string; message: string } | null;
  phaseMs: Record<string, number>;
  startedAt: string | null;
  finishedAt: string | null;
}

export const gcBench: Benchmark = {
  name: 'gc',
  title: 'Garbage collection through the gateway (fenced, restarted, verified) vs the bare command',
  run: runGcBench,
};

async function runGcBench(ctx: BenchContext): Promise<BenchReport> {
  const repositories = Math.max(2, Math.round(SPEC.repositories * ctx.scale));
  const images = repositories * SPEC.tagsPerRepository;
  const metrics: Metric[] = [];
  const template = await openTemplate(ctx, repositories);
  metrics.push(
    {
      label: 'dataset',
      value: `${images} images (${repositories} repositories x ${SPEC.tagsPerRepository}; ${SPEC.layersPerImage} layers of ${formatBytes(LAYER_SIZE)} each), half deleted`,
    },
    { label: 'seeding', value: template.seeding },
  );
  const runDir = (w: string) => join(template.dir, `run-${w}`);
  let bare: RegistryService | undefined;
  let upstream: RegistryService | undefined;
  let env: TestEnvironment | undefined;
  let gateway: GatewayProcess | undefined;
  let warmup: RegistryService | undefined;
  try {
    await copyTemplate(template.storage, runDir);
    [bare, upstream] = await Promise.all([
      RegistryService.create({ storageDir: runDir('bare'), logLevel: 'warn', start: false }),
      RegistryService.create({ storageDir: runDir('gateway'), logLevel: 'warn' }),
    ]);

    env = await TestEnvironment.create('gc', 'bench');
    gateway = await GatewayProcess.start({
      env: { ...env.gatewayEnv(), GC_HEARTBEAT_MS: '1000' },
      name: 'gc',
      worker: true,
      // BENCH_CPU_PROF=<dir> writes V8 CPU profiles of the API and the worker there when they stop.
      nodeArgs: process.env.BENCH_CPU_PROF
        ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
        : undefined,
    });
    // A long-running gateway is measured, not a cold one: one GC on a small registry of its own first.
    warmup = await RegistryService.create({ logLevel: 'warn' });
    await seedWarmup(warmup);
    for (const [name, registry] of [
      [WARMUP_NAME, warmup],
      [REGISTRY_NAME, upstream],
    ] as const)
      await configure(gateway, name, registry);
    ctx.log('gc: warm-up run on a small registry');
    const warm = await runGc(gateway, WARMUP_NAME);
    if (warm.status !== 'succeeded')
      throw new BenchFailure(`the warm-up GC run ${warm.status}: ${JSON.stringify(warm.error)}`);

    // Rounds on fresh copies, the two sides in turns first (what one leaves to the disk, the other meets).
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      if (i > 0) {
        await upstream.stop();
        await copyTemplate(template.storage, runDir);
        await upstream.start();
      }
      const sides = [() => runBare(bare!, runDir('bare')), () => runGateway(gateway!, env!)];
      if (i % 2) sides.reverse();
      const [first, second] = [await sides[0](), await sides[1]()];
      const [b, g] = (i % 2 ? [second, first] : [first, second]) as [BareSide, GatewaySide];
      if (g.run.blobsDeleted !== b.deleted)
        throw new BenchFailure(
          `the gateway deleted ${g.run.blobsDeleted} blobs, the bare command ${b.deleted}`,
        );
      const round = { ...b, ...g, ratio: (g.gatewayMs - b.restartMs) / b.bareMs };
      rounds.push(round);
      ctx.log(
        `gc: round ${i + 1}/${ROUNDS}: bare ${formatMs(b.bareMs)}, restart ${formatMs(b.restartMs)}, gateway ${formatMs(g.gatewayMs)} (collecting ${formatMs(g.run.phaseMs.collecting ?? 0)}, clearing-cache ${formatMs(g.run.phaseMs['clearing-cache'] ?? 0)}, verifying ${formatMs(g.run.phaseMs.verifying ?? 0)}${g.run.bytesFreed === null ? ', bytesFreed unknown' : ''}; CPU: worker ${cpuMs(g.workerCpuMs)}, spawner ${cpuMs(g.spawnerCpuMs)}): ${round.ratio.toFixed(2)}`,
      );
    }
    const peak = { api: peakRssBytes(gateway.apiPid!), worker: peakRssBytes(gateway.workerPid!) };

    // The round with the median ratio speaks for the run; the others show the spread.
    const ratios = rounds.map((r) => r.ratio);
    const ratio = median(ratios);
    const typical = rounds.reduce((a, r) => (Math.abs(r.ratio - ratio) < Math.abs(a.ratio - ratio) ? r : a));
    const { run } = typical;
    const bareMs = median(rounds.map((r) => r.bareMs));
    const gatewayMs = median(rounds.map((r) => r.gatewayMs));
    const restartMs = median(rounds.map((r) => r.restartMs));
    const duMs = median(rounds.map((r) => r.duMs));
    const verifyMs = median(rounds.map((r) => r.run.phaseMs.verifying ?? 0));
    metrics.push(
      {
        label: 'bare garbage-collect',
        value: `${formatMs(bareMs)} median of ${ROUNDS} (${formatList(
          rounds.map((r) => r.bareMs),
          formatMs,
        )}; ${typical.deleted} blobs deleted, ${formatBytes(typical.freed)} freed)`,
      },
      {
        label: 'gateway GC',
        value: `${formatMs(gatewayMs)} median (${formatList(
          rounds.map((r) => r.gatewayMs),
          formatMs,
        )}; POST until succeeded, awaited with GET ?wait=${WAIT_SECONDS}; ${run.blobsDeleted} blobs, ${formatBytes(run.bytesFreed ?? 0)} freed, ${formatBytes(run.bytesEstimated ?? 0)} estimated)`,
      },
      {
        label: 'registry restart',
        value: `${formatMs(restartMs)} median (lifecycle restart until /v2/ answers)`,
      },
      {
        label: 'ratio (gateway - restart)/bare',
        value: `${ratio.toFixed(2)}`,
        target: `<= ${TARGET_RATIO}`,
        ok: ratio <= TARGET_RATIO,
      },
      {
        label: 'ratio per round (info)',
        value: `${formatList(ratios, (r) => r.toFixed(2))} (median above)`,
      },
      { label: 'ratio gateway/bare (info)', value: (gatewayMs / bareMs).toFixed(2) },
      {
        label: 'ratio without verification (info)',
        value:
          `${((gatewayMs - restartMs - verifyMs) / bareMs).toFixed(2)} (gateway - restart - verifying ${formatMs(verifyMs)}) / bare; ` +
          `${((gatewayMs - restartMs - verifyMs) / (bareMs + 2 * duMs)).toFixed(2)} against the manual recipe (du -sk, garbage-collect, du -sk: ${formatMs(bareMs + 2 * duMs)})`,
      },
      { label: 'gateway phases (median round)', value: typical.phases },
      {
        label: 'gateway CPU per run (median)',
        value: `worker ${cpuMs(medianOf(rounds.map((r) => r.workerCpuMs)))}, its spawner of commands ${cpuMs(medianOf(rounds.map((r) => r.spawnerCpuMs)))} (the commands' own CPU not counted; /proc ticks of 10 ms)`,
      },
      {
        label: 'verification',
        value: (() => {
          const v = run.verification;
          if (!v) return 'none';
          return (
            `storage: ${v.storage.tagsChecked} tags, ${v.storage.manifestsChecked} manifests, ${v.storage.blobsChecked} blobs, ${v.storage.deletedBlobsChecked} deleted blobs; ` +
            `registry API (${v.mode}): ${v.deletedBlobsChecked} deleted blobs, ${v.manifestsChecked} manifests and ${v.blobsChecked} of their blobs`
          );
        })(),
      },
      {
        label: 'gateway peak RSS (VmHWM)',
        value: `API ${peak.api ? formatBytes(peak.api) : 'n/a'}, worker ${peak.worker ? formatBytes(peak.worker) : 'n/a'}`,
      },
    );
    return { name: gcBench.name, metrics };
  } finally {
    await gateway?.stop();
    await Promise.all([bare?.cleanup(), upstream?.cleanup(), warmup?.cleanup()]);
    await Promise.all(['bare', 'gateway'].map((w) => rm(runDir(w), { recursive: true, force: true })));
    await env?.destroy().catch(() => undefined);
  }
}

interface BareSide {
  bareMs: number;
  restartMs: number;
  duMs: number;
  deleted: number;
  freed: number;
}

interface GatewaySide {
  gatewayMs: number;
  run: RunView;
  phases: string;
  /** CPU the worker process used during the run, and its spawner of commands (not the commands'). */
  workerCpuMs?: number;
  spawnerCpuMs?: number;
}

type Round = BareSide & GatewaySide & { ratio: number };

/** A CPU figure, or that /proc could not tell. */
const cpuMs = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? 'unknown' : formatMs(ms));
const medianOf = (values: (number | undefined)[]) =>
  median(values.filter((v): v is number => v !== undefined));

/** Fresh copies of the template for both sides, on disk before anything is timed. */
async function copyTemplate(storage: string, runDir: (w: string) => string): Promise<void> {
  for (const w of ['bare', 'gateway']) {
    await rm(runDir(w), { recursive: true, force: true });
    cpSync(storage, runDir(w), { recursive: true, preserveTimestamps: true });
  }
  await command(['sync']);
}

/**
 * The bare command on its copy (registry stopped, as by hand), and the restart the gateway adds (in-memory
 * cache), timed the same way the gateway's lifecycle command runs: until /v2/ answers.
 */
async function runBare(bare: RegistryService, dir: string): Promise<BareSide> {
  const before = await diskBytes(dir);
  // The manual recipe (DESIGN, steps 5 and 6) also measures the storage before and after: timed apart.
  const d0 = performance.now();
  await command(['du', '-sk', dir]);
  const duMs = performance.now() - d0;
  const t0 = performance.now();
  const gc = await command(['docker-registry', 'garbage-collect', bare.configPath]);
  const bareMs = performance.now() - t0;
  if (gc.code !== 0)
    throw new BenchFailure(`bare garbage-collect exited ${gc.code}: ${gc.output.slice(-500)}`);
  const deleted = (gc.output.match(/^blob eligible for deletion: /gm) ?? []).length;
  const freed = before - (await diskBytes(dir));
  await bare.start();
  const r0 = performance.now();
  await command(bare.lifecycle.restart);
  const restartMs = performance.now() - r0;
  await bare.stop();
  return { bareMs, restartMs, duMs, deleted, freed };
}

async function runGateway(gateway: GatewayProcess, env: TestEnvironment): Promise<GatewaySide> {
  // The worker's one child, its spawner of commands, was started by the warm-up run and lives on.
  const worker = gateway.workerPid;
  const spawner = worker === undefined ? undefined : childPids(worker)[0];
  const [g0, posted] = [performance.now(), Date.now()];
  const [[run, spawnerCpu], workerCpu] = await measureCpu(worker, () =>
    measureCpu(spawner, () => runGc(gateway, REGISTRY_NAME)),
  );
  const gatewayMs = performance.now() - g0;
  const answered = Date.now();
  if (run.status !== 'succeeded')
    throw new BenchFailure(`the gateway's GC run ${run.status}: ${JSON.stringify(run.error)}`);
  return {
    gatewayMs,
    run,
    phases: await phaseTimes(env, run, posted, answered),
    workerCpuMs: workerCpu === undefined ? undefined : workerCpu * 1000,
    spawnerCpuMs: spawnerCpu === undefined ? undefined : spawnerCpu * 1000,
  };
}

/** The gateway's GC settings for a test registry: local executor, fence `gateway`, in-memory cache. */
async function configure(gateway: GatewayProcess, name: string, registry: RegistryService): Promise<void> {
  await gateway.request('POST', '/api/v1/registries', { name, url: registry.url });
  await gateway.request('PUT', `/api/v1/registries/${name}/gc-settings`, {
    executor: registry.localExecutor,
    fence: 'gateway',
    cache: { type: 'inmemory' },
    // The copies' blobs are minutes old; the grace window is about uploads still waiting for a manifest.
    graceSeconds: 0,
  });
}

/** POST a run, then wait for its end the way a script would: `GET ?wait=` until it is final. */
async function runGc(gateway: GatewayProcess, registry: string): Promise<RunView> {
  const t0 = performance.now();
  let run = JSON.parse(await gateway.request('POST', `/api/v1/registries/${registry}/gc`, {})) as RunView;
  while (run.status === 'queued' || run.status === 'running') {
    if (performance.now() - t0 > 600_000) throw new BenchFailure(`GC run still ${run.status}/${run.phase}`);
    run = JSON.parse(
      await gateway.request('GET', `/api/v1/gc-runs/${run.id}?wait=${WAIT_SECONDS}`),
    ) as RunView;
  }
  return run;
}

/** Two images, one of them deleted: garbage for the warm-up run. */
async function seedWarmup(registry: RegistryService): Promise<void> {
  const pusher = new ImagePusher(registry.url);
  try {
    const [gone] = await Promise.all(
      ['old', 'new'].map((tag) => pusher.pushImage('warmup/app', [tag], { layerSize: LAYER_SIZE })),
    );
    const res = await fetch(`${registry.url}/v2/warmup/app/manifests/${gone.digest}`, { method: 'DELETE' });
    await res.arrayBuffer();
    if (res.status !== 202) throw new BenchFailure(`warm-up DELETE answered ${res.status}`);
  } finally {
    await pusher.close();
  }
}

/**
 * Where the gateway's time went: from the POST until the run's row was written, the wait before a worker
 * took it, the run's own phase timings, and from its end until the client had the answer.
 */
async function phaseTimes(
  env: TestEnvironment,
  run: RunView,
  posted: number,
  answered: number,
): Promise<string> {
  const [r] = await env.query<{ created_at: Date; started_at: Date; finished_at: Date }>(
    'SELECT created_at, started_at, finished_at FROM gc_runs WHERE id = $1',
    [run.id],
  );
  const phases = Object.entries(run.phaseMs)
    .map(([phase, ms]) => `${phase} ${formatMs(ms)}`)
    .join(', ');
  return (
    `posted ${formatMs(r.created_at.getTime() - posted)}; queued ${formatMs(r.started_at.getTime() - r.created_at.getTime())}; ${phases}; ` +
    `finished ${formatMs(r.finished_at.getTime() - r.started_at.getTime() - Object.values(run.phaseMs).reduce((a, b) => a + b, 0))} after the last phase, answered ${formatMs(answered - r.finished_at.getTime())} after`
  );
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  return total;
}

function command(argv: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

/** 500 images of their own layers, half of them deleted: seeded once and reused (bench/support/dataset.ts). */
function openTemplate(ctx: BenchContext, repositories: number) {
  const key = {
    version: DATASET_VERSION,
    repositories,
    tags: SPEC.tagsPerRepository,
    layers: SPEC.layersPerImage,
    layer: LAYER_SIZE,
  };
  return storedDataset(
    ctx,
    `gc-${repositories}x${SPEC.tagsPerRepository}x${SPEC.layersPerImage}`,
    key,
    async (storage) => {
      const registry = await RegistryService.create({ storageDir: storage, logLevel: 'warn' });
      try {
        ctx.log(`gc: seeding ${repositories * SPEC.tagsPerRepository} images, deleting half`);
        const pusher = new ImagePusher(registry.url, { connections: 8 });
        const refs = Array.from({ length: repositories }, (_, r) =>
          Array.from({ length: SPEC.tagsPerRepository }, (_, t) => ({
            repository: `gc/repo-${String(r + 1).padStart(3, '0')}`,
            tag: `v${t + 1}`,
            t,
          })),
        ).flat();
        // Pushes first, deletes after: Distribution's manifest DELETE walks the repository's tags and answers
        // 500 when it meets a tag another upload is still writing.
        const digests = new Map<string, string>();
        await runPool(refs, 8, async ({ repository, tag }) => {
          const image = await pusher.pushImage(repository, [tag], {
            layers: SPEC.layersPerImage,
            layerSize: LAYER_SIZE,
            seed: `${repository}:${tag}`,
          });
          digests.set(`${repository}:${tag}`, image.digest);
        });
        await runPool(
          refs.filter(({ t }) => t % 2 === 0),
          8,
          async ({ repository, tag }) => {
            const digest = digests.get(`${repository}:${tag}`)!;
            const res = await fetch(`${registry.url}/v2/${repository}/manifests/${digest}`, {
              method: 'DELETE',
            });
            await res.arrayBuffer();
            if (res.status !== 202)
              throw new BenchFailure(`DELETE ${repository}@${digest} answered ${res.status}`);
          },
        );
        await pusher.close();
        return { images: refs.length };
      } finally {
        await registry.cleanup();
      }
    },
  );
}
