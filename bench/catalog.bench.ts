import { createHash } from 'node:crypto';
import { Agent } from 'undici';
import { MANIFEST_ACCEPT } from '../test/support/image-pusher.js';
import { envSchema } from '../src/config/config.schema.js';
import { RegistryProcess } from '../test/support/registry-process.js';
import { BenchFailure } from './support/bench.js';
import type { BenchContext, BenchReport, Benchmark, Metric } from './support/bench.js';
import { TestEnvironment } from '../test/support/environment.js';
import { GatewayProcess } from './support/gateway-process.js';
import { busyShare, cpuSeconds, machineCpu, peakRssBytes } from './support/proc.js';
import { seedRepositories, storedDataset } from './support/dataset.js';
import { formatBytes, formatList, formatMs, formatSeconds, median } from './support/stats.js';

/*
 * Issue spec: a catalog crawl of a registry with 2,000 repositories x 5 tags (with digests) through
 * the gateway, against a direct concurrent crawler in the same run; print gateway/direct, target <= 1.3.
 *
 * Both crawlers keep CLIENT_CONCURRENCY repositories in flight and read all tags of a repository at
 * once. The direct crawler talks to the registry over one keep-alive pool as large as the gateway's
 * (UPSTREAM_CONNECTIONS, default 32; the variable, when set, reaches both), so the two differ only
 * by what the gateway adds. It does the gateway's upstream work: `_catalog` pages (n=1000, following
 * Link), tags/list per repository (empty ones are hidden), and per tag a GET of the manifest with the
 * full Accept list and a GET of its config blob, both checked against their sha256 digests.
 */
const SPEC = { repositories: 2000, tagsPerRepository: 5 };
const CLIENT_CONCURRENCY = 16;
const RUNS = 3;
const TARGET_RATIO = 1.3;
const REGISTRY_NAME = 'bench';
const PAGE_SIZE = 1000;
/** Bump when the seeded content changes, so stored datasets are seeded again. */
const DATASET_VERSION = 1;
const SEED = { prefix: 'bench', concurrency: 16, format: 'oci', layerSize: 1024 } as const;

interface TagRecord {
  digest: string;
  /** config + layers, as the gateway's `size`. */
  size: number;
  created: string | null;
}

type CrawlData = Map<string, Map<string, TagRecord>>;

interface Crawl {
  data: CrawlData;
  ms: number;
  /** Requests this crawler sent (to the registry for direct, to the gateway for gateway crawls). */
  requests: number;
  cpu: {
    bench?: number;
    gateway?: number;
    registry?: number;
    /** Busy share of all cores. */
    machineBusy?: number;
    /** CPU seconds no measured process accounts for: other load on the machine, plus Postgres. */
    other?: number;
  };
}

export const catalogBench: Benchmark = {
  name: 'catalog',
  title: 'Catalog crawl through the gateway vs a direct crawler',
  run: runCatalogBench,
};

async function runCatalogBench(ctx: BenchContext): Promise<BenchReport> {
  const repositories = Math.max(1, Math.round(SPEC.repositories * ctx.scale));
  const { tagsPerRepository } = SPEC;
  // What the gateway will use: the variable when set, else the gateway's own default.
  const upstreamConnections = envSchema.shape.UPSTREAM_CONNECTIONS.parse(process.env.UPSTREAM_CONNECTIONS);
  const upstreamConcurrency = envSchema.shape.UPSTREAM_CONCURRENCY.parse(process.env.UPSTREAM_CONCURRENCY);
  const metrics: Metric[] = [];

  const dataset = await openDataset(ctx, repositories, tagsPerRepository);
  metrics.push(
    { label: 'dataset', value: `${repositories} repositories x ${tagsPerRepository} tags` },
    { label: 'seeding', value: dataset.seeding },
  );

  let env: TestEnvironment | undefined;
  let gateway: GatewayProcess | undefined;
  try {
    env = await TestEnvironment.create('catalog', 'bench');
    const gatewayEnv: Record<string, string> = env.gatewayEnv();
    // Knobs for experiments (`UPSTREAM_CONNECTIONS=16 npm run bench`); the direct crawler follows too.
    for (const key of ['UPSTREAM_CONNECTIONS', 'UPSTREAM_CONCURRENCY', 'CACHE_MAX_ENTRIES']) {
      const value = process.env[key];
      if (value !== undefined) gatewayEnv[key] = value;
    }
    gateway = await GatewayProcess.start({ env: gatewayEnv, name: 'catalog' });
    await gateway.request('POST', '/api/v1/registries', { name: REGISTRY_NAME, url: dataset.registry.url });

    const registryPid = dataset.registry.pid;
    const direct = () =>
      measure({ registry: registryPid }, () =>
        directCrawl(dataset.registry.url, upstreamConnections, CLIENT_CONCURRENCY),
      );
    const throughGateway = (gw: GatewayProcess) =>
      measure({ registry: registryPid, gateway: gw.apiPid }, () =>
        gatewayCrawl(gw.url, CLIENT_CONCURRENCY, gw.authorization),
      );

    ctx.log(`catalog: warm-up direct crawl of ${repositories * tagsPerRepository} tags`);
    const reference = await direct();
    assertDataset(reference.data, repositories, tagsPerRepository);
    ctx.log(`catalog: warm-up direct crawl ${formatMs(reference.ms)}`);

    const directRuns: Crawl[] = [];
    const gatewayRuns: Crawl[] = [];
    const upstreamCounts: number[] = [];
    let peakRss = 0;
    const readyRss: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const d = await direct();
      assertSameData(reference.data, d.data, `direct run ${run}`);
      directRuns.push(d);
      ctx.log(`catalog: run ${run}/${RUNS} direct ${formatMs(d.ms)}`);

      // A fresh process per cold run: empty summary cache, no open upstream connections.
      await gateway.restart();
      readyRss.push(peakRssBytes(gateway.apiPid!) ?? 0);
      const g = await throughGateway(gateway);
      peakRss = Math.max(peakRss, peakRssBytes(gateway.apiPid!) ?? 0);
      assertSameData(reference.data, g.data, `gateway run ${run}`);
      gatewayRuns.push(g);
      upstreamCounts.push(await upstreamRequests(gateway));
      ctx.log(`catalog: run ${run}/${RUNS} gateway (cold) ${formatMs(g.ms)} = ${(g.ms / d.ms).toFixed(2)}x`);
    }

    // Same process as the last cold run: config summaries are cached now.
    const warmUpstreamBefore = upstreamCounts.at(-1)!;
    const warm = await throughGateway(gateway);
    peakRss = Math.max(peakRss, peakRssBytes(gateway.apiPid!) ?? 0);
    assertSameData(reference.data, warm.data, 'gateway warm run');
    const warmUpstream = (await upstreamRequests(gateway)) - warmUpstreamBefore;
    ctx.log(`catalog: gateway (warm) ${formatMs(warm.ms)}`);

    const directMs = median(directRuns.map((r) => r.ms));
    const gatewayMs = median(gatewayRuns.map((r) => r.ms));
    const ratio = gatewayMs / directMs;
    const tags = repositories * tagsPerRepository;
    const medianCpu = (runs: Crawl[], key: keyof Crawl['cpu']) => {
      const values = runs.map((r) => r.cpu[key]).filter((v): v is number => v !== undefined);
      return values.length ? median(values) : undefined;
    };
    const cpu = (v: number | undefined) => (v === undefined ? 'n/a' : formatSeconds(v));
    const share = (v: number | undefined) => (v === undefined ? 'n/a' : `${Math.round(v * 100)}%`);

    metrics.push(
      {
        label: 'concurrency',
        value:
          `${CLIENT_CONCURRENCY} repositories in flight, all tags of a repository at once (both crawlers); ` +
          `registry connections: direct ${upstreamConnections}, gateway UPSTREAM_CONNECTIONS=${upstreamConnections} ` +
          `(UPSTREAM_CONCURRENCY=${upstreamConcurrency})`,
      },
      {
        label: `direct crawl, median of ${RUNS}`,
        value: `${formatMs(directMs)} [${formatList(
          directRuns.map((r) => r.ms),
          formatMs,
        )}], ${Math.round((tags * 1000) / directMs)} tags/s`,
      },
      {
        label: `gateway cold crawl, median of ${RUNS}`,
        value: `${formatMs(gatewayMs)} [${formatList(
          gatewayRuns.map((r) => r.ms),
          formatMs,
        )}], ${Math.round((tags * 1000) / gatewayMs)} tags/s`,
      },
      {
        label: 'ratio gateway/direct (cold)',
        value: `${ratio.toFixed(2)} (pairs in run order: ${gatewayRuns
          .map((g, i) => (g.ms / directRuns[i].ms).toFixed(2))
          .join(', ')})`,
        target: `<= ${TARGET_RATIO}`,
        ok: ratio <= TARGET_RATIO,
      },
      {
        label: 'gateway warm crawl (info)',
        value: `${formatMs(warm.ms)}, ${(warm.ms / directMs).toFixed(2)}x direct`,
      },
      {
        label: 'gateway API peak RSS (VmHWM)',
        value: peakRss
          ? `${formatBytes(peakRss)} (${formatBytes(median(readyRss))} when ready, before a crawl)`
          : 'n/a',
      },
      {
        label: 'CPU per crawl, medians',
        value:
          `direct: registry ${cpu(medianCpu(directRuns, 'registry'))}, crawler ${cpu(medianCpu(directRuns, 'bench'))}; ` +
          `gateway cold: gateway ${cpu(medianCpu(gatewayRuns, 'gateway'))}, registry ${cpu(medianCpu(gatewayRuns, 'registry'))}, ` +
          `crawler ${cpu(medianCpu(gatewayRuns, 'bench'))}; warm: gateway ${cpu(warm.cpu.gateway)}`,
      },
      {
        // Robust to other load on the machine: the CPU the whole pipeline needs, gateway path vs direct.
        label: 'CPU ratio gateway/direct (info)',
        value: cpuRatio(directRuns, gatewayRuns),
      },
      {
        label: 'machine CPU busy, medians',
        value: `direct ${share(medianCpu(directRuns, 'machineBusy'))}, gateway cold ${share(
          medianCpu(gatewayRuns, 'machineBusy'),
        )} (of all cores)`,
      },
      otherLoad(directRuns, gatewayRuns),
      {
        label: 'registry requests per crawl',
        value: `direct ${directRuns[0].requests}, gateway cold ${median(upstreamCounts)}, gateway warm ${warmUpstream}`,
      },
      {
        label: 'data check',
        value: `identical in all ${2 * RUNS + 2} crawls: ${reference.data.size} repositories, ${tags} tags with digest, size, created`,
      },
    );
    return { name: catalogBench.name, metrics };
  } finally {
    await gateway?.stop();
    await dataset.registry.cleanup();
    await env?.destroy().catch(() => undefined);
  }
}

/** (gateway + registry + crawler CPU) / (registry + crawler CPU), medians; Postgres is not counted. */
function cpuRatio(directRuns: Crawl[], gatewayRuns: Crawl[]): string {
  const total = (r: Crawl) =>
    r.cpu.registry === undefined ? undefined : r.cpu.registry + (r.cpu.gateway ?? 0) + (r.cpu.bench ?? 0);
  const d = directRuns.map(total).filter((v): v is number => v !== undefined);
  const g = gatewayRuns.map(total).filter((v): v is number => v !== undefined);
  if (!d.length || !g.length || gatewayRuns.some((r) => r.cpu.gateway === undefined)) return 'n/a';
  return `${(median(g) / median(d)).toFixed(2)} (${formatSeconds(median(g))} / ${formatSeconds(median(d))} of CPU per crawl)`;
}

/**
 * This machine is shared; CPU that none of the measured processes used means the timings competed
 * with something else, and the wall-clock ratio is then less trustworthy than the CPU ratio.
 */
function otherLoad(directRuns: Crawl[], gatewayRuns: Crawl[]): Metric {
  const runs = [...directRuns, ...gatewayRuns];
  if (runs.some((r) => r.cpu.other === undefined)) return { label: 'CPU of other processes', value: 'n/a' };
  const list = (rs: Crawl[]) =>
    formatList(
      rs.map((r) => r.cpu.other!),
      formatSeconds,
    );
  // more than a tenth of what the direct path itself needs
  const threshold = 0.1 * median(directRuns.map((r) => (r.cpu.registry ?? 0) + (r.cpu.bench ?? 0)));
  const noisy = runs.some((r) => r.cpu.other! > threshold);
  return {
    label: 'CPU of other processes per crawl',
    value:
      `direct [${list(directRuns)}], gateway cold [${list(gatewayRuns)}] (Postgres and anything else)` +
      (noisy ? '; NOISY: other load competed with some crawls, rerun on an idle machine' : ''),
  };
}

// --- dataset -----------------------------------------------------------------------------------------

/**
 * Seeding 10,000 images takes minutes and dominates a run, so the registry's storage is kept under
 * .data/bench/ and reused (bench/support/dataset.ts); the crawls read a registry started on it.
 */
async function openDataset(
  ctx: BenchContext,
  repositories: number,
  tagsPerRepository: number,
): Promise<{ registry: RegistryProcess; seeding: string }> {
  const dataset = await storedDataset(
    ctx,
    `catalog-${repositories}x${tagsPerRepository}`,
    { version: DATASET_VERSION, repositories, tagsPerRepository, seed: SEED },
    (storage) =>
      seedRepositories(ctx, storage, { what: 'catalog', ...SEED, repositories, tagsPerRepository }),
  );
  return { registry: await RegistryProcess.start({ rootDir: dataset.storage }), seeding: dataset.seeding };
}

function assertDataset(data: CrawlData, repositories: number, tagsPerRepository: number): void {
  const tags = [...data.values()].reduce((n, t) => n + t.size, 0);
  const digests = new Set([...data.values()].flatMap((t) => [...t.values()].map((r) => r.digest)));
  const expected = repositories * tagsPerRepository;
  if (data.size !== repositories || tags !== expected || digests.size !== expected) {
    throw new BenchFailure(
      `the stored dataset is not ${repositories} repositories x ${tagsPerRepository} distinct tags: the direct ` +
        `crawl saw ${data.size} repositories, ${tags} tags, ${digests.size} digests; run with --reseed`,
    );
  }
}

/** Both crawls must have seen the same repositories, tags, digests, sizes and creation times. */
function assertSameData(expected: CrawlData, actual: CrawlData, what: string): void {
  const lines = (data: CrawlData) => {
    const out: string[] = [];
    for (const [repo, tags] of data) {
      for (const [tag, r] of tags) out.push(`${repo}:${tag} ${r.digest} ${r.size} ${r.created}`);
    }
    return out.sort();
  };
  const want = lines(expected);
  const got = lines(actual);
  const wantSet = new Set(want);
  const gotSet = new Set(got);
  const missing = want.filter((l) => !gotSet.has(l));
  const extra = got.filter((l) => !wantSet.has(l));
  if (missing.length || extra.length || actual.size !== expected.size) {
    throw new BenchFailure(
      `${what} saw different data than the reference direct crawl: ${actual.size} vs ${expected.size} ` +
        `repositories, ${got.length} vs ${want.length} tags; ${missing.length} missing, e.g.\n  ` +
        `${missing.slice(0, 5).join('\n  ')}\n${extra.length} unexpected, e.g.\n  ${extra.slice(0, 5).join('\n  ')}`,
    );
  }
}

// --- crawlers -------------------------------------------------------------------------------------------

async function measure(
  pids: { registry?: number; gateway?: number },
  crawl: () => Promise<{ data: CrawlData; requests: number }>,
): Promise<Crawl> {
  const read = () => ({
    registry: pids.registry === undefined ? undefined : cpuSeconds(pids.registry),
    gateway: pids.gateway === undefined ? undefined : cpuSeconds(pids.gateway),
    bench: process.cpuUsage(),
    machine: machineCpu(),
  });
  const diff = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : b - a);
  const before = read();
  const t0 = performance.now();
  const { data, requests } = await crawl();
  const ms = performance.now() - t0;
  const after = read();
  const usage = process.cpuUsage(before.bench);
  const bench = (usage.user + usage.system) / 1e6;
  const gateway = diff(before.gateway, after.gateway);
  const registry = diff(before.registry, after.registry);
  const machine = diff(before.machine?.busy, after.machine?.busy);
  return {
    data,
    ms,
    requests,
    cpu: {
      bench,
      gateway,
      registry,
      machineBusy: busyShare(before.machine, after.machine),
      other:
        machine === undefined || registry === undefined
          ? undefined
          : Math.max(0, machine - bench - registry - (gateway ?? 0)),
    },
  };
}

/**
 * Visits repositories with `concurrency` in flight while pages keep arriving, so both crawlers
 * overlap listing and reading in the same way. `visit` returns null for a repository it hides.
 */
async function crawl(
  pages: AsyncIterable<string[]>,
  concurrency: number,
  visit: (repository: string) => Promise<Map<string, TagRecord> | null>,
): Promise<CrawlData> {
  const names: string[] = [];
  const result: CrawlData = new Map();
  let listed = false;
  let failed = false;
  let waiting: (() => void)[] = [];
  const wake = () => {
    const w = waiting;
    waiting = [];
    for (const resolve of w) resolve();
  };
  const producer = (async () => {
    try {
      for await (const page of pages) {
        names.push(...page);
        wake();
      }
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      listed = true;
      wake();
    }
  })();
  let next = 0;
  const worker = async () => {
    while (!failed) {
      if (next < names.length) {
        const name = names[next++];
        try {
          const tags = await visit(name);
          if (tags) result.set(name, tags);
        } catch (err) {
          failed = true;
          throw err;
        }
      } else if (listed) {
        return;
      } else {
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
    }
  };
  await Promise.all([producer, ...Array.from({ length: concurrency }, worker)]);
  return result;
}

/** A keep-alive pool to one origin that counts requests and reads whole bodies. */
class Http {
  requests = 0;
  private readonly agent: Agent;
  private readonly origin: string;

  constructor(
    baseUrl: string,
    connections: number,
    /** Sent with every request (the gateway's bearer token). */
    private readonly defaults: Record<string, string> = {},
  ) {
    this.origin = new URL(baseUrl).origin;
    this.agent = new Agent({ connections, pipelining: 1, keepAliveTimeout: 30_000 });
  }

  async get(
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    this.requests++;
    const res = await this.agent.request({
      origin: this.origin,
      path,
      method: 'GET',
      headers: { ...this.defaults, ...headers },
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) {
      throw new BenchFailure(
        `GET ${this.origin}${path} answered ${res.statusCode}: ${body.toString().slice(0, 300)}`,
      );
    }
    return { headers: res.headers, body };
  }

  async json<T>(
    path: string,
    headers?: Record<string, string>,
  ): Promise<{ headers: Record<string, string | string[] | undefined>; json: T }> {
    const res = await this.get(path, headers);
    return { headers: res.headers, json: JSON.parse(res.body.toString('utf8')) as T };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/** Path and query of the Link header's rel="next" target, or null. */
function nextLink(link: string | string[] | undefined, base: string): string | null {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(first(link) ?? '');
  if (!m) return null;
  const url = new URL(m[1], base);
  return url.pathname + url.search;
}

async function directCrawl(
  registryUrl: string,
  connections: number,
  concurrency: number,
): Promise<{ data: CrawlData; requests: number }> {
  const http = new Http(registryUrl, connections);
  try {
    async function* catalog(): AsyncGenerator<string[]> {
      let path: string | null = `/v2/_catalog?n=${PAGE_SIZE}`;
      while (path) {
        const res: {
          headers: Record<string, string | string[] | undefined>;
          json: { repositories?: string[] | null };
        } = await http.json(path);
        const page = res.json.repositories ?? [];
        yield page;
        path = page.length ? nextLink(res.headers.link, registryUrl) : null;
      }
    }
    const tagsOf = async (repository: string): Promise<string[]> => {
      const tags: string[] = [];
      let path: string | null = `/v2/${repository}/tags/list?n=${PAGE_SIZE}`;
      while (path) {
        const res: {
          headers: Record<string, string | string[] | undefined>;
          json: { tags?: string[] | null };
        } = await http.json(path);
        const page = res.json.tags ?? [];
        tags.push(...page);
        path = page.length ? nextLink(res.headers.link, registryUrl) : null;
      }
      return tags;
    };
    const readTag = async (repository: string, tag: string): Promise<TagRecord> => {
      const m = await http.get(`/v2/${repository}/manifests/${tag}`, { accept: MANIFEST_ACCEPT });
      const digest = sha256(m.body);
      const header = first(m.headers['docker-content-digest']);
      if (header && header !== digest)
        throw new BenchFailure(`${repository}:${tag}: header ${header}, body ${digest}`);
      const manifest = JSON.parse(m.body.toString('utf8')) as {
        config?: { digest: string; size: number };
        layers?: { size: number }[];
      };
      // The dataset holds single-platform images only; an index would need its children read too.
      if (!manifest.config || !Array.isArray(manifest.layers)) {
        throw new BenchFailure(
          `${repository}:${tag} is not an image manifest (${first(m.headers['content-type'])})`,
        );
      }
      const blob = await http.get(`/v2/${repository}/blobs/${manifest.config.digest}`);
      if (sha256(blob.body) !== manifest.config.digest) {
        throw new BenchFailure(`${repository}:${tag}: config blob does not match ${manifest.config.digest}`);
      }
      const config = JSON.parse(blob.body.toString('utf8')) as { created?: unknown };
      return {
        digest,
        size: manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
        created: typeof config.created === 'string' ? config.created : null,
      };
    };
    const data = await crawl(catalog(), concurrency, async (repository) => {
      const tags = await tagsOf(repository);
      if (tags.length === 0) return null; // deleted repositories stay in _catalog; the gateway hides them
      const records = await Promise.all(tags.map((tag) => readTag(repository, tag)));
      return new Map(tags.map((tag, i) => [tag, records[i]]));
    });
    return { data, requests: http.requests };
  } finally {
    await http.close();
  }
}

interface RepositoryPage {
  items: { name: string; tagCount: number }[];
  nextCursor: string | null;
}

interface TagList {
  items: { name: string; digest: string; size: number; created: string | null }[];
}

async function gatewayCrawl(
  gatewayUrl: string,
  concurrency: number,
  authorization: string,
): Promise<{ data: CrawlData; requests: number }> {
  // One connection per repository in flight: the client never waits for a socket.
  const http = new Http(gatewayUrl, concurrency, { authorization });
  const base = `/api/v1/registries/${REGISTRY_NAME}/repositories`;
  const tagCounts = new Map<string, number>();
  try {
    async function* repositories(): AsyncGenerator<string[]> {
      let cursor: string | null = null;
      do {
        const query: string = `limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const { json }: { json: RepositoryPage } = await http.json<RepositoryPage>(`${base}?${query}`);
        for (const item of json.items) tagCounts.set(item.name, item.tagCount);
        yield json.items.map((item) => item.name);
        cursor = json.nextCursor;
      } while (cursor);
    }
    const data = await crawl(repositories(), concurrency, async (repository) => {
      const { json } = await http.json<TagList>(`${base}/${repository}/tags`);
      if (json.items.length !== tagCounts.get(repository)) {
        throw new BenchFailure(
          `gateway listed ${repository} with ${tagCounts.get(repository)} tags but its tags endpoint returned ${json.items.length}`,
        );
      }
      return new Map(json.items.map((t) => [t.name, { digest: t.digest, size: t.size, created: t.created }]));
    });
    return { data, requests: http.requests };
  } finally {
    await http.close();
  }
}

/** Registry requests the gateway API process has made since it started, from its /metrics. */
async function upstreamRequests(gateway: GatewayProcess): Promise<number> {
  const metrics = await gateway.request('GET', '/metrics');
  let total = 0;
  for (const m of metrics.matchAll(/^gateway_upstream_request_duration_seconds_count\{[^}]*\} (\d+)/gm)) {
    total += Number(m[1]);
  }
  return total;
}
