import pLimit from 'p-limit';
import { DomainError } from '../common/domain-error.js';
import type { GcExecutor } from './executors/gc-executor.js';
import type { RepositoryDigest } from './gc-output.js';
import type { GcStorageProblem } from './gc.entity.js';

/*
 * What the registry's storage holds, read through the executor (where the registry lives) with the tools
 * every registry image has (`du`, `grep`, `stat`), in Distribution's storage layout:
 *
 *   <root>/docker/registry/v2/blobs/<alg>/<xx>/<hex>/data
 *   <root>/docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
 *   <root>/docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
 *   <root>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
 *
 * One `du -ak` of each of its two big trees is both the measurement and the listing a run needs: blob
 * sizes for the estimate, which repositories link which blob, and after the collection, the structure the
 * storage-side verification checks.
 */

/** The prefix of the storage reads that may wait for the registry (`nice` is in coreutils and busybox). */
const NICE = ['nice', '-n', '10'];
/** Paths per command line: well inside ARG_MAX everywhere (exec in containers included). */
const PATH_BATCH = 200;
/** Batches of paths (file reads, stats) in flight at once. */
const COMMANDS_IN_FLIGHT = 3;
/** How many problems a verification lists. */
export const MAX_PROBLEMS = 100;
/** Suspects looked at again at most: enough to list MAX_PROBLEMS when most turn out fine. */
const MAX_RECHECKS = 100 * MAX_PROBLEMS;
/** Manifests read (and held) at once by the storage check. */
const MANIFEST_SLICE = 5 * PATH_BATCH;

export interface StorageSnapshot {
  /** Disk usage of the whole storage root (`du -k` blocks, in bytes). */
  bytes: number;
  /** Blob digest -> disk usage of its data file. */
  blobs: Map<string, number>;
  /** Repository -> blob digests it links (`_layers`): what it serves as blobs. */
  layers: Map<string, Set<string>>;
  /** Repository -> manifest digests it has a revision of: what it serves as manifests. */
  revisions: Map<string, Set<string>>;
  /** Every tag's `current/link`, to be read for the digest it points at. */
  tags: { repository: string; tag: string }[];
}

export function v2Root(root: string): string {
  return `${root.replace(/\/+$/, '')}/docker/registry/v2`;
}

export function blobDataPath(root: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  return `${v2Root(root)}/blobs/${alg}/${hex.slice(0, 2)}/${hex}/data`;
}

function linkPath(root: string, repository: string, kind: '_layers' | 'revisions', digest: string) {
  const [alg, hex] = digest.split(':');
  const dir = kind === '_layers' ? '_layers' : '_manifests/revisions';
  return `${v2Root(root)}/repositories/${repository}/${dir}/${alg}/${hex}/link`;
}

function tagLinkPath(root: string, repository: string, tag: string) {
  return `${v2Root(root)}/repositories/${repository}/_manifests/tags/${tag}/current/link`;
}

/**
 * Runs a listing command and hands each output line to `onLine` as it streams, so a listing larger than
 * the executor's output cap is still read whole. A missing folder (nothing pushed yet) lists nothing.
 * The command runs under `nice` unless `urgent`: the registry (serving, collecting, restarting) comes
 * first, the gateway's reads of its storage take the CPU left.
 */
export async function execLines(
  executor: GcExecutor,
  argv: string[],
  signal: AbortSignal | undefined,
  onLine: (line: string) => void,
  okExitCodes: number[] = [0],
  urgent = false,
): Promise<void> {
  let pending = '';
  const r = await executor.exec(urgent ? argv : [...NICE, ...argv], {
    signal,
    onOutput: (chunk) => {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop()!;
      for (const p of parts) onLine(p);
    },
  });
  if (pending) onLine(pending);
  if (!okExitCodes.includes(r.exitCode) && !/No such file or directory/.test(r.output))
    throw new DomainError(
      'EXECUTOR_COMMAND_FAILED',
      `${argv[0]} exited with ${r.exitCode}: ${r.output.slice(-500)}`,
      502,
      {
        command: argv.slice(0, 2),
      },
    );
}

/**
 * The storage's size and structure, read in parts side by side: its two big trees, `blobs` and
 * `repositories`, with a `du -ak` each, and everything else under the root (its folders down to `v2`,
 * anything an operator keeps beside) with one `find ... -prune` and `stat`. `outsideRepositories` settles
 * once all but the `repositories` tree is read, `whole` once everything is. `besideCollector`: the walk
 * of `blobs` races a collector started beside it (which deletes blobs once it has marked and listed them
 * all itself), so it runs first and at the registry's priority; `repositories` is walked after it.
 */
export function snapshotInParts(
  executor: GcExecutor,
  root: string,
  signal?: AbortSignal,
  opts: { besideCollector?: boolean } = {},
): { outsideRepositories: Promise<void>; whole: Promise<StorageSnapshot> } {
  const { snapshot, walk } = snapshotReader(executor, root, signal);
  const base = root.replace(/\/+$/, '') || '/';
  const [blobs, repositories] = [`${v2Root(root)}/blobs`, `${v2Root(root)}/repositories`];
  const rest = [base, '(', '-path', blobs, '-o', '-path', repositories, ')', '-prune', '-o'];
  const outsideRepositories = Promise.all([
    walk(blobs, opts.besideCollector),
    execLines(executor, ['find', ...rest, '-exec', 'stat', '-c', '%b %B', '{}', '+'], signal, (line) => {
      const m = /^(\d+) (\d+)$/.exec(line.trim());
      if (m) snapshot.bytes += Number(m[1]) * Number(m[2]);
    }),
  ]).then(() => undefined);
  const repositoriesRead = opts.besideCollector
    ? outsideRepositories.then(() => walk(repositories))
    : walk(repositories);
  const whole = Promise.all([outsideRepositories, repositoriesRead]).then(() => snapshot);
  // Whoever awaits only one part must not leave the other's failure unhandled.
  whole.catch(() => undefined);
  return { outsideRepositories, whole };
}

/** A snapshot being filled, and the `du -ak` walk that adds a tree of the storage to it. */
function snapshotReader(executor: GcExecutor, root: string, signal?: AbortSignal) {
  const v2 = `${v2Root(root)}/`;
  const snapshot: StorageSnapshot = {
    bytes: 0,
    blobs: new Map(),
    layers: new Map(),
    revisions: new Map(),
    tags: [],
  };
  const add = (map: Map<string, Set<string>>, repository: string, digest: string) => {
    let set = map.get(repository);
    if (!set) map.set(repository, (set = new Set()));
    set.add(digest);
  };
  const blobRe = /^blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)\/data$/;
  const layerRe = /^repositories\/(.+)\/_layers\/([a-z0-9]+)\/([0-9a-f]+)\/link$/;
  const revisionRe = /^repositories\/(.+)\/_manifests\/revisions\/([a-z0-9]+)\/([0-9a-f]+)\/link$/;
  const tagRe = /^repositories\/(.+)\/_manifests\/tags\/([^/]+)\/current\/link$/;
  const walk = (top: string, urgent?: boolean) =>
    execLines(
      executor,
      ['du', '-ak', top],
      signal,
      (line) => {
        const tab = /^(\d+)\s+(.*)$/.exec(line.trimEnd());
        if (!tab) return;
        const kib = Number(tab[1]);
        const path = tab[2];
        // The walked tree's own line is its total.
        if (path === top) {
          snapshot.bytes += kib * 1024;
          return;
        }
        if (!path.startsWith(v2)) return;
        const rel = path.slice(v2.length);
        let m: RegExpExecArray | null;
        if ((m = blobRe.exec(rel))) snapshot.blobs.set(`${m[1]}:${m[2]}`, kib * 1024);
        else if ((m = layerRe.exec(rel))) add(snapshot.layers, m[1], `${m[2]}:${m[3]}`);
        else if ((m = revisionRe.exec(rel))) add(snapshot.revisions, m[1], `${m[2]}:${m[3]}`);
        else if ((m = tagRe.exec(rel))) snapshot.tags.push({ repository: m[1], tag: m[2] });
      },
      [0],
      urgent,
    );
  return { snapshot, walk };
}

/**
 * The contents of small text files (links, manifests), by path, through `grep -sH ''` in batches. A file
 * that is gone (or unreadable) is simply absent from the result.
 */
export async function readFiles(
  executor: GcExecutor,
  paths: string[],
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await inBatches(paths, readBatch);
  return out;

  async function readBatch(batch: string[]) {
    // grep prints `<path>:<line>` for every line, file by file in the order given; which file a line
    // belongs to is the longest listed path it starts with.
    let at = 0;
    const append = (path: string, text: string) => {
      const prev = out.get(path);
      out.set(path, prev === undefined ? text : `${prev}\n${text}`);
    };
    await execLines(
      executor,
      ['grep', '-sH', '', '--', ...batch],
      signal,
      (line) => {
        for (let j = at; j < batch.length; j++) {
          if (line.startsWith(`${batch[j]}:`)) {
            at = j;
            append(batch[j], line.slice(batch[j].length + 1));
            return;
          }
        }
      },
      [0, 1, 2], // 1: nothing matched (empty files), 2: some file was gone
    );
  }
}

/**
 * `stat -c <format> -- <paths>` in batches, each output line to `onLine`. A path that is gone makes stat
 * exit 1; the others are still listed.
 */
export async function statPaths(
  executor: GcExecutor,
  paths: string[],
  format: string,
  signal: AbortSignal | undefined,
  onLine: (line: string) => void,
): Promise<void> {
  await inBatches(paths, (batch) =>
    execLines(executor, ['stat', '-c', format, '--', ...batch], signal, onLine, [0, 1]),
  );
}

/**
 * Runs `run` on PATH_BATCH paths at a time, a few batches at once: each command waits on the storage and
 * on the executor's round trip.
 */
async function inBatches(paths: string[], run: (batch: string[]) => Promise<void>): Promise<void> {
  const limit = pLimit(COMMANDS_IN_FLIGHT);
  const batches: Promise<void>[] = [];
  for (let i = 0; i < paths.length; i += PATH_BATCH) {
    const batch = paths.slice(i, i + PATH_BATCH);
    batches.push(limit(() => run(batch)));
  }
  await Promise.all(batches);
}

/** Which of these paths exist now. */
export async function existingPaths(
  executor: GcExecutor,
  paths: string[],
  signal?: AbortSignal,
): Promise<Set<string>> {
  const wanted = new Set(paths);
  const found = new Set<string>();
  await statPaths(executor, paths, '%n', signal, (line) => {
    if (wanted.has(line)) found.add(line);
  });
  return found;
}

export interface StorageCheck {
  tagsChecked: number;
  manifestsChecked: number;
  blobsChecked: number;
  deletedBlobsChecked: number;
  problems: GcStorageProblem[];
  truncated: boolean;
}

interface Expectation {
  path: string;
  problem: GcStorageProblem;
}

/**
 * After a collection, on the storage: every tag points at a manifest the repository still has (revision
 * link and data), every blob such a manifest needs (config, layers, and for an index its platform
 * manifests and theirs) is stored and linked in the repository, and no blob the collector deleted is
 * still stored. What the snapshot misses is looked up once more before it counts as a problem, so a push
 * that lands during the check (the `gateway` fence lets pushes through) is not reported as corruption.
 */
export async function verifyStorage(
  executor: GcExecutor,
  root: string,
  snapshot: StorageSnapshot,
  deleted: string[],
  signal?: AbortSignal,
): Promise<StorageCheck> {
  const result: StorageCheck = {
    tagsChecked: 0,
    manifestsChecked: 0,
    blobsChecked: 0,
    deletedBlobsChecked: 0,
    problems: [],
    truncated: false,
  };
  const absent: Expectation[] = [];
  // What the snapshot misses, to look at again; a storage broken everywhere lists the first ones.
  const expect = (present: boolean, path: string, problem: GcStorageProblem) => {
    if (present) return;
    if (absent.length < MAX_RECHECKS) absent.push({ path, problem });
    else result.truncated = true;
  };

  const tagPaths = snapshot.tags.map((t) => tagLinkPath(root, t.repository, t.tag));
  const tagLinks = await readFiles(executor, tagPaths, signal);
  const checked = new Set<string>();
  let manifests: { repository: string; tag: string; digest: string }[] = [];
  snapshot.tags.forEach((t, i) => {
    const digest = tagLinks.get(tagPaths[i])?.trim();
    // A tag folder without a readable link is a push still being written, or a tag being deleted.
    if (!digest || !/^[a-z0-9]+:[0-9a-f]+$/.test(digest)) return;
    result.tagsChecked++;
    manifests.push({ ...t, digest });
  });

  while (manifests.length) {
    const fresh = manifests.filter((m) => {
      const key = `${m.repository}@${m.digest}`;
      if (checked.has(key)) return false;
      checked.add(key);
      return true;
    });
    const next: typeof manifests = [];
    // A slice at a time, so a registry with a million tags is never held in memory as manifests at once.
    for (let i = 0; i < fresh.length; i += MANIFEST_SLICE) {
      const slice = fresh.slice(i, i + MANIFEST_SLICE);
      const contents = await readFiles(
        executor,
        [...new Set(slice.map((m) => blobDataPath(root, m.digest)))],
        signal,
      );
      for (const m of slice) {
        result.manifestsChecked++;
        const where = { repository: m.repository, tag: m.tag, digest: m.digest };
        expect(
          snapshot.revisions.get(m.repository)?.has(m.digest) ?? false,
          linkPath(root, m.repository, 'revisions', m.digest),
          { ...where, blob: m.digest, problem: 'manifest revision link missing' },
        );
        const dataPath = blobDataPath(root, m.digest);
        const text = contents.get(dataPath);
        if (text === undefined) {
          expect(false, dataPath, { ...where, blob: m.digest, problem: 'manifest data missing' });
          continue;
        }
        for (const ref of references(text)) {
          if (ref.manifest) {
            next.push({ repository: m.repository, tag: m.tag, digest: ref.digest });
            continue;
          }
          result.blobsChecked++;
          expect(snapshot.blobs.has(ref.digest), blobDataPath(root, ref.digest), {
            ...where,
            blob: ref.digest,
            problem: 'blob data missing',
          });
          expect(
            snapshot.layers.get(m.repository)?.has(ref.digest) ?? false,
            linkPath(root, m.repository, '_layers', ref.digest),
            { ...where, blob: ref.digest, problem: 'blob not linked in the repository' },
          );
        }
      }
    }
    manifests = next;
  }

  // Gone: a deleted blob still stored.
  const stillStored = deleted.filter((d) => snapshot.blobs.has(d));
  result.deletedBlobsChecked = deleted.length;

  // Second look at everything the snapshot says is wrong.
  const recheck = [
    ...new Set([...absent.map((a) => a.path), ...stillStored.map((d) => blobDataPath(root, d))]),
  ];
  const now = recheck.length ? await existingPaths(executor, recheck, signal) : new Set<string>();
  const note = (p: GcStorageProblem) => {
    if (result.problems.length < MAX_PROBLEMS) result.problems.push(p);
    else result.truncated = true;
  };
  for (const a of absent) if (!now.has(a.path)) note(a.problem);
  for (const d of stillStored)
    if (now.has(blobDataPath(root, d)))
      note({ repository: '', digest: d, blob: d, problem: 'deleted blob still stored' });
  return result;
}

/**
 * The digests a stored manifest refers to: config and layers (blobs), or an index's manifests. Foreign
 * layers (fetched from their URLs, never pushed) are not stored, and `subject` points at another image
 * that may legitimately be gone. A manifest that is not JSON refers to nothing (schema 1 is signed JSON too).
 */
export function references(text: string): { digest: string; manifest: boolean }[] {
  let json: {
    config?: { digest?: string };
    layers?: { digest?: string; urls?: string[]; mediaType?: string }[];
    fsLayers?: { blobSum?: string }[];
    manifests?: { digest?: string }[];
  };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    return [];
  }
  const out: { digest: string; manifest: boolean }[] = [];
  const isDigest = (d: unknown): d is string => typeof d === 'string' && /^[a-z0-9]+:[0-9a-f]+$/.test(d);
  for (const m of json.manifests ?? [])
    if (isDigest(m.digest)) out.push({ digest: m.digest, manifest: true });
  if (isDigest(json.config?.digest)) out.push({ digest: json.config.digest, manifest: false });
  for (const l of json.layers ?? [])
    if (isDigest(l.digest) && !l.urls?.length && !/foreign/.test(l.mediaType ?? ''))
      out.push({ digest: l.digest, manifest: false });
  for (const l of json.fsLayers ?? [])
    if (isDigest(l.blobSum)) out.push({ digest: l.blobSum, manifest: false });
  return out;
}

/** Repositories that link each of these blobs (where the registry served them before the collection). */
export function linkedIn(snapshot: StorageSnapshot, digests: Iterable<string>): RepositoryDigest[] {
  const wanted = new Set(digests);
  const out: RepositoryDigest[] = [];
  for (const [repository, set] of snapshot.layers)
    for (const digest of set) if (wanted.has(digest)) out.push({ repository, digest });
  return out;
}
