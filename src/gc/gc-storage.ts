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
const NICE = ['nice', '-n', '19'];
/** What the result of a listing command (execLines) keeps of its output: its head and its tail. */
const LISTING_OUTPUT_CAP = 16 * 1024;
/** How much of a listing command's stderr its error message carries: the end of it. */
const STDERR_KEPT = 500;
/** Paths per command line: well inside ARG_MAX everywhere (exec in containers included). */
const PATH_BATCH = 200;
/** Batches of paths (file reads, stats) in flight at once. */
const COMMANDS_IN_FLIGHT = 3;
/** How many problems a verification lists. */
export const MAX_PROBLEMS = 100;
/** Suspects looked at again at most: enough to list MAX_PROBLEMS when most turn out fine. */
const MAX_RECHECKS = 100 * MAX_PROBLEMS;
const DIGEST = /^[a-z0-9]+:[0-9a-f]+$/;
/** Manifests read at once by the storage check. */
const MANIFEST_SLICE = 5 * PATH_BATCH;

export interface StorageSnapshot {
  /** Disk usage of the whole storage root (`du -k` blocks, in bytes). */
  bytes: number;
  /** The part of `bytes` under `repositories`. */
  repositoryBytes: number;
  /** Blob digest -> disk usage of its data file. */
  blobs: Map<string, number>;
  /** Repository -> blob digests it links (`_layers`): what it serves as blobs. */
  layers: Map<string, Set<string>>;
  /** Repository -> manifest digests it has a revision of: what it serves as manifests. */
  revisions: Map<string, Set<string>>;
  /** Every tag's `current/link`, to be read for the digest it points at. */
  tags: { repository: string; tag: string }[];
}

/** A path as a `find -path` pattern that matches only itself. */
const globEscaped = (path: string) => path.replace(/[[\]*?\\]/g, '\\$&');

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
  {
    okExitCodes = [0],
    urgent = false,
    manyLines = false,
  }: { okExitCodes?: number[]; urgent?: boolean; manyLines?: boolean } = {},
): Promise<void> {
  let pending = '';
  // stderr, kept apart: its last words explain a failure (with `manyLines` the two streams come through
  // separate files, so the result's output need not end with them), and a missing folder (nothing pushed
  // yet) or a file gone meanwhile is no failure.
  let said = '';
  let missing = false;
  const r = await executor.exec(urgent ? argv : [...NICE, ...argv], {
    signal,
    // The messages read below are the C locale's, whatever the host's (a German `du` says "Datei oder
    // Verzeichnis nicht gefunden").
    env: { LC_ALL: 'C' },
    manyLines,
    // The lines go to onLine and stderr is kept above: the result's output is read only when a command
    // said nothing on stderr, so it keeps far less than a listing's megabyte.
    outputCap: LISTING_OUTPUT_CAP,
    onOutput: (chunk, stream) => {
      if (stream !== 'stdout') {
        // The words may be split between two chunks.
        missing ||= /No such file or directory/.test(said.slice(-64) + chunk);
        said = (said + chunk).slice(-STDERR_KEPT);
        return;
      }
      // Line by line out of the chunk itself: a listing is megabytes, and joining each chunk to the
      // partial line before it, then splitting, would copy it all once more.
      let start = 0;
      for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', start)) {
        const line = chunk.slice(start, nl);
        onLine(pending ? pending + line : line);
        pending = '';
        start = nl + 1;
      }
      if (start < chunk.length) pending += chunk.slice(start);
    },
  });
  if (pending) onLine(pending);
  // 126/127: the command itself could not be run (`env: 'nice': No such file or directory`), which is no
  // missing folder.
  if ((!okExitCodes.includes(r.exitCode) && !missing) || r.exitCode === 126 || r.exitCode === 127)
    throw new DomainError(
      'EXECUTOR_COMMAND_FAILED',
      `${argv[0]} exited with ${r.exitCode}: ${(said || r.output).slice(-STDERR_KEPT)}`,
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
 * `beforeRepositories`: what must be read before that tree is walked, started once the rest is read; its
 * result is `first`, and `repositories` is walked once it has settled. `blobsStarted` settles once the
 * walk of `blobs` is under way where the registry lives (its first output, or its end): a collector
 * started then starts behind it. `repositories`, when given, is what `repositories` holds (known
 * unchanged since that snapshot): that tree is not walked again.
 */
export function snapshotInParts<F = never>(
  executor: GcExecutor,
  root: string,
  signal?: AbortSignal,
  opts: {
    besideCollector?: boolean;
    repositories?: Promise<StorageSnapshot | null>;
    beforeRepositories?: () => Promise<F>;
  } = {},
): {
  blobsStarted: Promise<void>;
  outsideRepositories: Promise<void>;
  whole: Promise<StorageSnapshot>;
  first?: Promise<F>;
  /** The snapshot as it is being filled: what the walks have read so far. */
  partial: StorageSnapshot;
} {
  const { snapshot, walk } = snapshotReader(executor, root, signal);
  let started!: () => void;
  const blobsStarted = new Promise<void>((resolve) => (started = resolve));
  // The trailing slash follows a storage folder that is a symlink, as the registry does; the paths are
  // patterns to -path, so a `[`, `*` or `?` in the storage path is escaped.
  const base = `${root.replace(/\/+$/, '')}/`;
  const [blobs, repositories] = [`${v2Root(root)}/blobs`, `${v2Root(root)}/repositories`];
  const rest = [
    ...[base, '(', '-path', globEscaped(blobs), '-o', '-path', globEscaped(repositories), ')'],
    ...['-prune', '-o'],
  ];
  const outsideRepositories = Promise.all([
    walk(blobs, opts.besideCollector, started).finally(started),
    execLines(executor, ['find', ...rest, '-exec', 'stat', '-c', '%b %B', '{}', '+'], signal, (line) => {
      const m = /^(\d+) (\d+)$/.exec(line.trim());
      if (m) snapshot.bytes += Number(m[1]) * Number(m[2]);
    }),
  ]).then(() => undefined);
  const first = opts.beforeRepositories && outsideRepositories.then(opts.beforeRepositories);
  const repositoriesRead = opts.repositories
    ? opts.repositories.then((known) => (known ? copyRepositories(known, snapshot) : walk(repositories)))
    : opts.besideCollector || first
      ? (first ?? outsideRepositories).then(() => walk(repositories))
      : walk(repositories);
  const whole = Promise.all([outsideRepositories, repositoriesRead]).then(() => snapshot);
  // Whoever awaits only one part must not leave the other's failure unhandled.
  whole.catch(() => undefined);
  first?.catch(() => undefined);
  return { blobsStarted, outsideRepositories, whole, first, partial: snapshot };
}

/** What `repositories` holds, taken from a snapshot of the same tree. */
function copyRepositories(from: StorageSnapshot, to: StorageSnapshot): void {
  to.bytes += from.repositoryBytes;
  to.repositoryBytes = from.repositoryBytes;
  to.layers = from.layers;
  to.revisions = from.revisions;
  to.tags = from.tags;
}

/**
 * The folders under `repositories` that a manifest push writes into, each with what `stat` says of it
 * (modification time to the nanosecond, link count, size): the repositories' own folders and their
 * parents, `_manifests`, `_manifests/revisions`, `_manifests/revisions/<alg>` and each revision's folder
 * (a deleted manifest leaves its folder behind, empty: pushed again, only that folder changes). A new
 * manifest in a repository, a deleted one, or a new repository changes at least one of them; uploads
 * (`_uploads`), layer links (`_layers`) and tags pointing at a manifest the repository already has do not
 * and are not looked at. Read twice, the same answer both times means no manifest came or went between.
 * `urgent`: the run waits for it (execLines).
 */
export async function manifestFolders(
  executor: GcExecutor,
  root: string,
  signal?: AbortSignal,
  { urgent = false }: { urgent?: boolean } = {},
): Promise<Map<string, string>> {
  const stat = ['-exec', 'stat', '-c', '%n|%y|%h|%s', '{}', '+'];
  const out = new Map<string, string>();
  await execLines(
    executor,
    [
      'find',
      // The trailing slash follows a `repositories` that is a symlink.
      `${v2Root(root)}/repositories/`,
      ...['-path', '*/_manifests/revisions/*/*', '-prune', ...stat, '-o'],
      ...[
        '(',
        '-name',
        '_layers',
        '-o',
        '-name',
        '_uploads',
        '-o',
        '-path',
        '*/_manifests/tags',
        ')',
        '-prune',
      ],
      ...['-o', '-type', 'd', ...stat],
    ],
    signal,
    (line) => {
      const bar = line.indexOf('|');
      if (bar > 0) out.set(line.slice(0, bar), line.slice(bar + 1));
    },
    { urgent },
  );
  return out;
}

/** Whether two readings of manifestFolders are the same. */
export function sameFolders(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [path, stat] of a) if (b.get(path) !== stat) return false;
  return true;
}

/** A snapshot being filled, and the `du -ak` walk that adds a tree of the storage to it. */
function snapshotReader(executor: GcExecutor, root: string, signal?: AbortSignal) {
  const v2 = `${v2Root(root)}/`;
  const snapshot: StorageSnapshot = {
    bytes: 0,
    repositoryBytes: 0,
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
  const walk = (top: string, urgent?: boolean, onFirstLine?: () => void) =>
    execLines(
      executor,
      // -H: a `blobs` or `repositories` that is a symlink (moved to another disk) is walked, as the registry
      // follows it; links inside are not (GNU and busybox du alike).
      ['du', '-akH', top],
      signal,
      (line) => {
        onFirstLine?.();
        // `<KiB>\t<path>` (GNU and busybox alike), thousands of lines: read without a match object each.
        const tab = line.indexOf('\t');
        const kib = tab > 0 ? Number(line.slice(0, tab)) : NaN;
        if (!Number.isInteger(kib)) return;
        const path = line.slice(tab + 1);
        // The walked tree's own line is its total.
        if (path === top) {
          snapshot.bytes += kib * 1024;
          if (top === `${v2}repositories`) snapshot.repositoryBytes = kib * 1024;
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
      // du writes (and flushes) a line at a time: thousands per walk, each waking a pipe's reader.
      { urgent, manyLines: true },
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
      { okExitCodes: [0, 1, 2] }, // 1: nothing matched (empty files), 2: some file was gone
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
    execLines(executor, ['stat', '-c', format, '--', ...batch], signal, onLine, { okExitCodes: [0, 1] }),
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

/** Those of these repositories that have no folder under `repositories`. */
export async function repositoriesMissing(
  executor: GcExecutor,
  root: string,
  names: string[],
  signal?: AbortSignal,
): Promise<string[]> {
  if (!names.length) return [];
  const folder = (r: string) => `${v2Root(root)}/repositories/${r}`;
  const found = await existingPaths(executor, names.map(folder), signal);
  return names.filter((r) => !found.has(folder(r)));
}

export interface StorageCheck {
  tagsChecked: number;
  manifestsChecked: number;
  blobsChecked: number;
  deletedBlobsChecked: number;
  problems: GcStorageProblem[];
  /** Problems of things that were already missing before the collection (wasMissing): not the run's doing. */
  preexisting: GcStorageProblem[];
  truncated: boolean;
}

/**
 * What a storage problem is about: a blob's or manifest's data, a repository's layer link, a repository's
 * manifest revision link.
 */
export type StoredThing = 'data' | 'layer link' | 'revision link';

/**
 * Whether something found missing after a collection was missing before it too, so the collection did not
 * remove it: absent from the snapshot taken before (or beside) the collector, and not among what the
 * collector said it removed.
 */
export type WasMissing = (thing: StoredThing, repository: string, digest: string) => boolean;

/**
 * wasMissing for a collection: `before` is the storage read before it (the walk of `blobs` may have run
 * beside the collector and missed what the collector deleted first: those are in `removed`, which must
 * be the collector's whole list, so this is used only when its output was read whole). Nothing whose blob
 * the collector removed was missing before, whichever of its links is asked about.
 */
export function missingBefore(
  before: StorageSnapshot,
  removed: { blobs: string[]; manifests: RepositoryDigest[]; layerLinks: RepositoryDigest[] },
): WasMissing {
  const blobs = new Set(removed.blobs);
  const key = (r: RepositoryDigest) => `${r.repository}@${r.digest}`;
  const manifests = new Set(removed.manifests.map(key));
  const layerLinks = new Set(removed.layerLinks.map(key));
  return (thing, repository, digest) => {
    const at = `${repository}@${digest}`;
    // What the collector removed is its doing, link or data: a blob pushed after the walk (its link
    // unseen) and deleted by the collector is not served because of the run.
    if (blobs.has(digest)) return false;
    if (thing === 'data') return !before.blobs.has(digest);
    if (thing === 'layer link') return !before.layers.get(repository)?.has(digest) && !layerLinks.has(at);
    return !before.revisions.get(repository)?.has(digest) && !manifests.has(at);
  };
}

interface Expectation {
  path: string;
  problem: GcStorageProblem;
  /** Already missing before the collection (wasMissing). */
  preexisting: boolean;
}

/** A digest a manifest refers to: a blob (config, layer) or, for an index, a manifest. */
export interface Reference {
  digest: string;
  manifest: boolean;
  /** The image's config blob. */
  config?: true;
}

/** What the tags point at: read from the storage, to be checked against a snapshot (checkStorage). */
export interface TaggedImages {
  /** Tags whose link held a digest. A tag folder without one is a push still writing, or a tag being deleted. */
  tags: { repository: string; tag: string; digest: string }[];
  /** What each manifest read refers to (index children included). A manifest not read is absent. */
  references: Map<string, Reference[]>;
}

/**
 * Reads every tag's link, the manifests they point at and, for an index, its platform manifests: a
 * slice at a time, keeping only what each refers to, so a registry with a million tags is never held in
 * memory as manifests. Manifests are content-addressed: what one refers to never changes, so they may be
 * read before a collection and checked after it.
 */
export async function readTagged(
  executor: GcExecutor,
  root: string,
  tags: { repository: string; tag: string }[],
  signal?: AbortSignal,
): Promise<TaggedImages> {
  const out: TaggedImages = { tags: [], references: new Map() };
  const tagPaths = tags.map((t) => tagLinkPath(root, t.repository, t.tag));
  const links = await readFiles(executor, tagPaths, signal);
  tags.forEach((t, i) => {
    const digest = links.get(tagPaths[i])?.trim();
    if (digest && DIGEST.test(digest)) out.tags.push({ ...t, digest });
  });
  const attempted = new Set<string>();
  let wanted = [...new Set(out.tags.map((t) => t.digest))];
  while (wanted.length) {
    const next: string[] = [];
    for (let i = 0; i < wanted.length; i += MANIFEST_SLICE) {
      const slice = wanted.slice(i, i + MANIFEST_SLICE);
      slice.forEach((d) => attempted.add(d));
      const contents = await readFiles(
        executor,
        slice.map((d) => blobDataPath(root, d)),
        signal,
      );
      for (const digest of slice) {
        const text = contents.get(blobDataPath(root, digest));
        if (text === undefined) continue;
        const refs = references(text);
        out.references.set(digest, refs);
        for (const r of refs) if (r.manifest && !attempted.has(r.digest)) next.push(r.digest);
      }
    }
    wanted = [...new Set(next)].filter((d) => !attempted.has(d));
  }
  return out;
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
  wasMissing?: WasMissing,
): Promise<StorageCheck> {
  return checkStorage(
    executor,
    root,
    await readTagged(executor, root, snapshot.tags, signal),
    snapshot,
    deleted,
    signal,
    wasMissing,
  );
}

/**
 * verifyStorage's check, with the tags and manifests already read (readTagged). What `wasMissing` says
 * was missing before the collection is listed apart (`preexisting`), within its own bounds, so damage
 * the run found cannot crowd out damage it did.
 */
export async function checkStorage(
  executor: GcExecutor,
  root: string,
  tagged: TaggedImages,
  snapshot: StorageSnapshot,
  deleted: string[],
  signal?: AbortSignal,
  wasMissing: WasMissing = () => false,
): Promise<StorageCheck> {
  const result: StorageCheck = {
    tagsChecked: 0,
    manifestsChecked: 0,
    blobsChecked: 0,
    deletedBlobsChecked: 0,
    problems: [],
    preexisting: [],
    truncated: false,
  };
  const absent: Expectation[] = [];
  // Suspects counted apart: the run's and those that were missing before it.
  const counted = { run: 0, before: 0 };
  // What the snapshot misses, to look at again; a storage broken everywhere lists the first ones.
  const expect = (present: boolean, path: string, problem: GcStorageProblem, thing: StoredThing) => {
    if (present) return;
    const preexisting = wasMissing(thing, problem.repository, problem.blob);
    const count = preexisting ? 'before' : 'run';
    if (counted[count] < MAX_RECHECKS) {
      counted[count]++;
      absent.push({ path, problem, preexisting });
    } else if (!preexisting) result.truncated = true;
  };

  const checked = new Set<string>();
  const check = (repository: string, tag: string, digest: string) => {
    const key = `${repository}@${digest}`;
    if (checked.has(key)) return;
    checked.add(key);
    result.manifestsChecked++;
    const where = { repository, tag, digest };
    expect(
      snapshot.revisions.get(repository)?.has(digest) ?? false,
      linkPath(root, repository, 'revisions', digest),
      { ...where, blob: digest, problem: 'manifest revision link missing' },
      'revision link',
    );
    const refs = tagged.references.get(digest);
    if (!refs || !snapshot.blobs.has(digest)) {
      expect(
        false,
        blobDataPath(root, digest),
        { ...where, blob: digest, problem: 'manifest data missing' },
        'data',
      );
      return;
    }
    for (const ref of refs) {
      if (ref.manifest) {
        check(repository, tag, ref.digest);
        continue;
      }
      result.blobsChecked++;
      expect(
        snapshot.blobs.has(ref.digest),
        blobDataPath(root, ref.digest),
        { ...where, blob: ref.digest, problem: 'blob data missing' },
        'data',
      );
      expect(
        snapshot.layers.get(repository)?.has(ref.digest) ?? false,
        linkPath(root, repository, '_layers', ref.digest),
        { ...where, blob: ref.digest, problem: 'blob not linked in the repository' },
        'layer link',
      );
    }
  };
  for (const t of tagged.tags) {
    result.tagsChecked++;
    check(t.repository, t.tag, t.digest);
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
  for (const a of absent)
    if (now.has(a.path)) continue;
    else if (!a.preexisting) note(a.problem);
    else if (result.preexisting.length < MAX_PROBLEMS) result.preexisting.push(a.problem);
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
export function references(text: string): Reference[] {
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
  const out: Reference[] = [];
  const isDigest = (d: unknown): d is string => typeof d === 'string' && DIGEST.test(d);
  for (const m of json.manifests ?? [])
    if (isDigest(m.digest)) out.push({ digest: m.digest, manifest: true });
  if (isDigest(json.config?.digest)) out.push({ digest: json.config.digest, manifest: false, config: true });
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
