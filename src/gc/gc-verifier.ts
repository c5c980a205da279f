import { Redis } from 'ioredis';
import pLimit from 'p-limit';
import { DomainError } from '../common/domain-error.js';
import { catalogPageKey, type RegistryClient } from '../registries/client/registry-client.js';
import { isIndex, type FetchedManifest } from '../registries/client/oci-types.js';
import { UpstreamError, unlessGone } from '../registries/client/upstream-error.js';
import type { RepositoryDigest } from './gc-output.js';
import type { GcCacheSettings, GcVerification } from './gc.entity.js';
import { MAX_PROBLEMS, references, type Reference, type WasMissing } from './gc-storage.js';

const CATALOG_PAGE = 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const served = (status: number) => status === 200 || status === 206 || (status >= 300 && status < 400);

const READY_POLL_MIN_MS = 10;
const READY_POLL_MAX_MS = 250;

/** Waits until the registry answers /v2/ again (after a restart); 401 counts: it is up, just asking for credentials. */
export async function waitReady(
  client: RegistryClient,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  let pause = READY_POLL_MIN_MS / 2;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      const { status } = await client.ping();
      if (status === 200 || status === 401) return;
      last = `status ${status}`;
    } catch (err) {
      if (err instanceof UpstreamError && err.upstreamStatus === 401) return;
      last = (err as Error).message;
    }
    // Soon after a restart, the registry answers within milliseconds: ask often at first.
    await sleep((pause = Math.min(READY_POLL_MAX_MS, pause * 2)));
  }
  throw new DomainError(
    'REGISTRY_NOT_READY',
    `registry "${client.name}" did not answer /v2/ within ${Math.round(timeoutMs / 1000)} s after a restart (${last})`,
    504,
    { registry: client.name },
  );
}

/**
 * Empties a Redis blob descriptor cache (distribution's keys `blobs::<digest>` and
 * `repository::<name>::blobs[::<digest>]`); the registry refills it from storage. Returns the keys removed.
 */
export async function flushRedisCache(cache: GcCacheSettings, password: string | undefined): Promise<number> {
  const [host, port] = (cache.addr ?? '').split(':');
  const redis = new Redis({
    host,
    port: Number(port),
    db: cache.db ?? 0,
    password,
    tls: cache.tls ? {} : undefined,
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    connectTimeout: 10_000,
  });
  // A failure reaches the caller through connect() or the command; the client's own events add nothing.
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let removed = 0;
    for (const match of ['blobs::*', 'repository::*::blobs*']) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        if (keys.length) removed += await redis.unlink(...keys);
      } while (cursor !== '0');
    }
    return removed;
  } catch (err) {
    throw new DomainError(
      'CACHE_FLUSH_FAILED',
      `could not empty the registry's redis cache at ${cache.addr}: ${(err as Error).message}`,
      502,
      { addr: cache.addr },
    );
  } finally {
    redis.disconnect();
  }
}

/**
 * A tag to check, and, when the storage was read for it, the manifest it pointed at and that manifest's
 * blobs: those are asked for at once, beside the manifest, instead of after it.
 */
export interface TaggedSample {
  repository: string;
  tag: string;
  /** Read from the storage (readTagged): the manifest's digest and what it refers to. */
  expected?: { digest: string; references: Reference[] };
}

export interface RegistryCheck {
  deletedBlobsChecked: number;
  stillServed: GcVerification['stillServed'];
  manifestsChecked: number;
  blobsChecked: number;
  missing: GcVerification['missing'];
  /** Not served, and already missing from the storage before the collection (wasMissing). */
  preexisting: GcVerification['preexisting'];
  truncated: boolean;
}

/**
 * After a collection, through the registry's API: no blob it deleted may still be claimed (HEAD, which is
 * what a client pushing the blob again asks, and what a stale blob descriptor cache still answers 200 to)
 * in a repository that linked it; and every blob of the tagged manifests checked (platform manifests of
 * indexes included) must be served: the config read (a one-byte ranged GET, so the bytes are really
 * there), the layers asked for (HEAD; the storage check has seen every layer's data). `tagged` is
 * either a list of tags (a sample; it may come later than the deleted blobs) or `catalog`: every tag of
 * every repository.
 */
export async function verifyThroughRegistry(
  client: RegistryClient,
  opts: {
    deleted: RepositoryDigest[];
    tagged: TaggedSample[] | Promise<TaggedSample[]> | 'catalog';
    concurrency: number;
    signal?: AbortSignal;
    /** What the storage lacked before the collection: not being served is then no damage of the run's. */
    wasMissing?: WasMissing;
  },
): Promise<RegistryCheck> {
  const { signal } = opts;
  const limit = pLimit(opts.concurrency);
  const result: RegistryCheck = {
    deletedBlobsChecked: 0,
    stillServed: [],
    manifestsChecked: 0,
    blobsChecked: 0,
    missing: [],
    preexisting: [],
    truncated: false,
  };
  const note = <T>(list: T[], problem: T) => {
    if (list.length < MAX_PROBLEMS) list.push(problem);
    else result.truncated = true;
  };
  const wasMissing = opts.wasMissing ?? (() => false);
  /** A blob or a platform manifest not served: the run's damage, or what the storage already lacked. */
  const notServed = (problem: GcVerification['missing'][number], manifest: boolean) => {
    const { repository, blob } = problem;
    if (
      wasMissing('data', repository, blob) ||
      wasMissing(manifest ? 'revision link' : 'layer link', repository, blob)
    ) {
      if (result.preexisting.length < MAX_PROBLEMS) result.preexisting.push(problem);
    } else note(result.missing, problem);
  };

  const deletedChecks = Promise.all(
    opts.deleted.map(({ repository, digest }) =>
      limit(async () => {
        signal?.throwIfAborted();
        const status = await client.blobHeadStatus(repository, digest);
        result.deletedBlobsChecked++;
        if (served(status)) note(result.stillServed, { repository, digest, status });
      }),
    ),
  );
  // Awaited at the end; a failure before (the tags to sample, say) must not leave it unhandled.
  deletedChecks.catch(() => undefined);

  // Every repository at once: each request takes a slot of `limit`, so `concurrency` are in flight.
  const checkRepository = async (repository: string, only?: TaggedSample[]) => {
    signal?.throwIfAborted();
    const tags: TaggedSample[] | undefined =
      only ??
      (await limit(() => orGone(() => client.listTags(repository))))?.map((tag) => ({ repository, tag }));
    if (!tags?.length) return;
    const checkedBlobs = new Map<string, Promise<number>>();
    const blobStatus = (blob: string, read: boolean) => {
      let p = checkedBlobs.get(blob);
      if (!p) {
        p = limit(() =>
          read ? client.blobStatus(repository, blob) : client.blobHeadStatus(repository, blob),
        );
        checkedBlobs.set(blob, p);
        result.blobsChecked++;
      }
      return p;
    };
    // The config is read (a one-byte GET); the layers are asked for (HEAD): with the cache just emptied,
    // the registry answers a HEAD from the storage too, at a third of a GET's cost to it. What a manifest
    // refers to is read as the storage check reads it (references): foreign layers are never stored.
    const checkBlobs = (tag: string, digest: string, refs: Reference[]) =>
      Promise.all(
        refs
          .filter((r) => !r.manifest)
          .map(async (r) => {
            const status = await blobStatus(r.digest, r.config === true);
            if (!served(status)) notServed({ repository, tag, digest, blob: r.digest, status }, false);
          }),
      );
    const checkManifest = async (tag: string, m: FetchedManifest): Promise<void> => {
      result.manifestsChecked++;
      await checkBlobs(tag, m.digest, references(m.raw.toString('utf8')));
      if (isIndex(m)) {
        await Promise.all(
          (m.json.manifests ?? []).map(async (child) => {
            const fetched = await limit(() => orGone(() => client.getManifest(repository, child.digest)));
            if (!fetched)
              notServed({ repository, tag, digest: m.digest, blob: child.digest, status: 404 }, true);
            else await checkManifest(tag, fetched);
          }),
        );
      }
    };
    await Promise.all(
      tags.map(async ({ tag, expected }) => {
        // Blobs the storage says the manifest has are asked for while the manifest is fetched.
        const early = expected && checkBlobs(tag, expected.digest, expected.references);
        const m = await limit(() => orGone(() => client.getManifest(repository, tag)));
        await early;
        // A sampled tag deleted since the storage was read is no problem; one the registry lists is.
        if (!m) {
          if (!only) note(result.missing, { repository, tag, digest: tag, blob: tag, status: 404 });
        } else if (expected?.digest === m.digest) result.manifestsChecked++;
        else await checkManifest(tag, m);
      }),
    );
  };

  const walks: Promise<void>[] = [];
  if (opts.tagged === 'catalog') {
    let last: string | undefined;
    // The pages asked for: a registry whose Link leads back to one would be walked forever.
    const asked = new Set<string>();
    do {
      asked.add(catalogPageKey(CATALOG_PAGE, last));
      const page = await client.catalogPage(CATALOG_PAGE, last);
      walks.push(...page.repositories.map((r) => checkRepository(r)));
      // A page's walks run while the next page is read; a huge catalog is bounded by `limit`, not memory of promises per page.
      if (walks.length >= 4 * CATALOG_PAGE) await Promise.all(walks.splice(0));
      last = page.next ?? undefined;
    } while (last && !asked.has(catalogPageKey(CATALOG_PAGE, last)));
  } else {
    const byRepository = new Map<string, TaggedSample[]>();
    // The deleted blobs are being asked about meanwhile.
    for (const t of await opts.tagged)
      byRepository.set(t.repository, [...(byRepository.get(t.repository) ?? []), t]);
    for (const [repository, tags] of byRepository) walks.push(checkRepository(repository, tags));
  }
  await Promise.all([deletedChecks, ...walks]);
  return result;
}

/** Up to `n` items picked at random (all of them when there are fewer). */
export function sample<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  const copy = items.slice();
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(Math.random() * (copy.length - i));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy.slice(0, n);
}

/** The value, or null when the registry says the thing does not exist (any 404). */
const orGone = <T>(fn: () => Promise<T>): Promise<T | null> => fn().catch(unlessGone(null));
