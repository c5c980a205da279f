import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalGcExecutor } from './executors/local-executor.js';
import {
  blobDataPath,
  checkStorage,
  execLines,
  manifestFolders,
  missingBefore,
  readTagged,
  references,
  sameFolders,
  snapshotInParts,
  type StorageSnapshot,
  v2Root,
} from './gc-storage.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('references of a stored manifest', () => {
  it('lists an image’s config and layers as blobs, skipping foreign layers', () => {
    const text = JSON.stringify({
      schemaVersion: 2,
      config: { digest: d('a') },
      layers: [
        { digest: d('b') },
        { digest: d('c'), mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip' },
        { digest: d('e'), urls: ['https://example.com/layer'] },
      ],
      subject: { digest: d('f') },
    });
    expect(references(text)).toEqual([
      { digest: d('a'), manifest: false, config: true },
      { digest: d('b'), manifest: false },
    ]);
  });

  it('lists an index’s platform manifests as manifests, and schema 1 layers as blobs', () => {
    expect(references(JSON.stringify({ manifests: [{ digest: d('1') }, { digest: 'nonsense' }] }))).toEqual([
      { digest: d('1'), manifest: true },
    ]);
    expect(references(`{\n  "fsLayers": [\n    { "blobSum": "${d('2')}" }\n  ]\n}`)).toEqual([
      { digest: d('2'), manifest: false },
    ]);
  });

  it('finds nothing in what is not JSON', () => {
    expect(references('not json')).toEqual([]);
  });

  it('places blobs where Distribution stores them', () => {
    expect(blobDataPath('/var/lib/registry/', d('ab'))).toBe(
      `/var/lib/registry/docker/registry/v2/blobs/sha256/ab/${'ab'.repeat(64)}/data`,
    );
  });
});

describe('execLines', () => {
  const executor = new LocalGcExecutor({
    type: 'local',
    command: ['true'],
    configPath: '/',
    storagePath: '/',
  });

  it('hands on stdout a line at a time, with stderr written in the middle of a line kept out of it', async () => {
    // What `du` does when a file goes away under it: a complaint on stderr between two writes of stdout.
    const lines: string[] = [];
    await execLines(
      executor,
      [
        'sh',
        '-c',
        `printf '12\t/a/b'; sleep 0.1; echo 'du: cannot access x' >&2; sleep 0.1; printf '/data\n3\t/c\n'`,
      ],
      undefined,
      (line) => lines.push(line),
      { urgent: true },
    );
    expect(lines).toEqual(['12\t/a/b/data', '3\t/c']);
  });

  it('hands on every line of a listing far longer than the output it keeps, and fails with its last words', async () => {
    let count = 0;
    let last = '';
    // Lines cut across the chunks the output arrives in come out whole: each is the next number.
    const broken: string[] = [];
    const listing = execLines(
      executor,
      ['sh', '-c', `seq 1 200000; echo 'du: fts_read failed: Input/output error' >&2; exit 1`],
      undefined,
      (line) => {
        count++;
        if (line !== String(count) && broken.length < 5) broken.push(line);
        last = line;
      },
      { urgent: true, manyLines: true },
    );
    await expect(listing).rejects.toMatchObject({
      code: 'EXECUTOR_COMMAND_FAILED',
      message: expect.stringMatching(/exited with 1: .*fts_read failed: Input\/output error\n?$/s),
    });
    expect([count, last, broken]).toEqual([200_000, '200000', []]);
  });

  it('reads a missing folder in any locale, and never takes a command that could not run for one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'execlines-'));
    try {
      // The host's language does not reach the command: its message is the C locale's, and read as such.
      const seen: string[] = [];
      await execLines(
        executor,
        [
          'sh',
          '-c',
          `test "$LC_ALL" = C && echo "du: cannot access '${dir}/gone': No such file or directory" >&2; exit 1`,
        ],
        undefined,
        (line) => seen.push(line),
        { urgent: true },
      );
      expect(seen).toEqual([]);
      // exit 127 with the same words on stderr: the program itself is missing.
      await expect(
        execLines(executor, ['no-such-program-here', dir], undefined, () => undefined),
      ).rejects.toMatchObject({ code: 'EXECUTOR_COMMAND_FAILED', message: expect.stringContaining('127') });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Disk usage of a path by one `du -sk`, in bytes. */
const duBytes = (path: string) =>
  Number(execFileSync('du', ['-sk', path], { encoding: 'utf8' }).split('\t')[0]) * 1024;

describe('storage snapshot', () => {
  it('follows a blob folder moved to another disk behind a symlink, in a storage path with glob characters', async () => {
    // `[` and `*` in the path: as find -path patterns they would match nothing, and nothing would be pruned.
    const root = await mkdtemp(join(tmpdir(), 'gc-snap[1]*-'));
    const moved = await mkdtemp(join(tmpdir(), 'gc-moved-blobs-'));
    try {
      const v2 = v2Root(root);
      for (const c of ['a', 'b']) {
        const data = blobDataPath(root, d(c)).replace(`${v2}/blobs`, moved);
        await mkdir(join(data, '..'), { recursive: true });
        await writeFile(data, Buffer.alloc(20_000, 1));
      }
      await mkdir(`${v2}/repositories/app/_manifests/tags/latest/current`, { recursive: true });
      await writeFile(`${v2}/repositories/app/_manifests/tags/latest/current/link`, d('a'));
      execFileSync('ln', ['-s', moved, `${v2}/blobs`]);
      const executor = new LocalGcExecutor({
        type: 'local',
        command: ['true'],
        configPath: join(root, 'config.yml'),
        storagePath: root,
      });
      const snap = await snapshotInParts(executor, root).whole;
      expect([...snap.blobs.keys()].sort()).toEqual([d('a'), d('b')]);
      // The moved blobs once (the link itself takes no block), the rest of the root once.
      expect(snap.bytes).toBe(duBytes(root) + duBytes(moved));
      expect(snap.tags).toEqual([{ repository: 'app', tag: 'latest' }]);
    } finally {
      await rm(root, { recursive: true, force: true });
      await rm(moved, { recursive: true, force: true });
    }
  });

  it('walks the two trees side by side to the total of one du of the root, and lists the structure', async () => {
    const root = await mkdtemp(join(tmpdir(), 'gc-snapshot-'));
    try {
      const v2 = v2Root(root);
      const file = async (path: string, bytes: number) => {
        await mkdir(join(path, '..'), { recursive: true });
        await writeFile(path, Buffer.alloc(bytes, 1));
      };
      for (const c of ['a', 'b', 'c']) await file(blobDataPath(root, d(c)), 10_000 * (c.charCodeAt(0) - 96));
      // A repository called `blobs`: the prune must not skip it (only <v2>/blobs is the blob tree).
      for (const repo of ['app', 'team/blobs']) {
        await file(`${v2}/repositories/${repo}/_layers/sha256/${'a'.repeat(64)}/link`, 71);
        await file(`${v2}/repositories/${repo}/_manifests/revisions/sha256/${'b'.repeat(64)}/link`, 71);
        await file(`${v2}/repositories/${repo}/_manifests/tags/latest/current/link`, 71);
      }
      // Beside the registry's trees, counted in the total only.
      await file(join(root, 'scheduler-state.json'), 50_000);
      await file(join(root, 'lost+found', 'x'), 9_000);

      const executor = new LocalGcExecutor({
        type: 'local',
        command: ['true'],
        configPath: join(root, 'config.yml'),
        storagePath: root,
      });
      // `du -a` flushes every line: its output goes through files, not a pipe woken per line.
      const walks: { argv: string[]; manyLines?: boolean }[] = [];
      const exec = executor.exec.bind(executor);
      executor.exec = (argv, opts) => {
        walks.push({ argv, manyLines: opts?.manyLines });
        return exec(argv, opts);
      };
      const parts = snapshotInParts(executor, root);
      await parts.outsideRepositories;
      const split = await parts.whole;
      const du = walks.filter((w) => w.argv.includes('du'));
      expect(du.map((w) => w.argv.at(-1)).sort()).toEqual([`${v2}/blobs`, `${v2}/repositories`]);
      expect(du.every((w) => w.manyLines)).toBe(true);
      // What one `du` of the whole root says.
      expect(split.bytes).toBe(duBytes(root));
      expect(split.bytes).toBeGreaterThan(90_000);
      expect([...split.blobs.keys()].sort()).toEqual([d('a'), d('b'), d('c')]);
      expect(split.blobs.get(d('c'))).toBe(duBytes(blobDataPath(root, d('c'))));
      expect([...split.layers].sort()).toEqual([
        ['app', new Set([d('a')])],
        ['team/blobs', new Set([d('a')])],
      ]);
      expect([...split.revisions].sort()).toEqual([
        ['app', new Set([d('b')])],
        ['team/blobs', new Set([d('b')])],
      ]);
      expect(split.tags.sort((x, y) => x.repository.localeCompare(y.repository))).toEqual([
        { repository: 'app', tag: 'latest' },
        { repository: 'team/blobs', tag: 'latest' },
      ]);
      // An empty storage (nothing pushed yet) measures what is there, without failing.
      const empty = await mkdtemp(join(tmpdir(), 'gc-snapshot-empty-'));
      try {
        const none = await snapshotInParts(executor, empty).whole;
        expect(none.bytes).toBe(duBytes(empty));
        expect(none.blobs.size).toBe(0);
      } finally {
        await rm(empty, { recursive: true, force: true });
      }

      // What must be read before `repositories` (the folders a push writes into, beside a collector) is:
      // the tree is walked only once it has settled, so a repository it saw being made is in the walk.
      for (const besideCollector of [true, false]) {
        const repo = `late-${besideCollector}`;
        const late = snapshotInParts(executor, root, undefined, {
          besideCollector,
          beforeRepositories: async () => {
            await new Promise((r) => setTimeout(r, 300));
            await file(`${v2}/repositories/${repo}/_manifests/tags/latest/current/link`, 71);
            return repo;
          },
        });
        expect(await late.first).toBe(repo);
        expect((await late.whole).tags).toContainEqual({ repository: repo, tag: 'latest' });
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

/** A storage folder of its own, read through a local executor, with a helper to write files in it. */
async function scratchStorage(name: string) {
  const root = await mkdtemp(join(tmpdir(), `gc-${name}-`));
  const executor = new LocalGcExecutor({
    type: 'local',
    command: ['true'],
    configPath: join(root, 'config.yml'),
    storagePath: root,
  });
  const file = async (path: string, content: string | number) => {
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, typeof content === 'number' ? Buffer.alloc(content, 1) : content);
  };
  return {
    root,
    executor,
    file,
    v2: v2Root(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

describe('what a push changes under repositories', () => {
  it('sees a new manifest, a deleted one and a new repository; not uploads, layer links or tags', async () => {
    const { root, executor, file, v2, cleanup } = await scratchStorage('folders');
    try {
      const repo = `${v2}/repositories/team/app`;
      await file(`${repo}/_manifests/revisions/sha256/${'b'.repeat(64)}/link`, d('b'));
      await file(`${repo}/_manifests/tags/v1/current/link`, d('b'));
      await file(`${repo}/_layers/sha256/${'a'.repeat(64)}/link`, d('a'));
      await mkdir(`${repo}/_uploads`, { recursive: true });
      const before = await manifestFolders(executor, root);
      expect([...before.keys()].sort()).toEqual(
        [
          // Walked from `repositories/`, which follows a symlinked folder.
          `${v2}/repositories/`,
          `${v2}/repositories/team`,
          repo,
          `${repo}/_manifests`,
          `${repo}/_manifests/revisions`,
          `${repo}/_manifests/revisions/sha256`,
          `${repo}/_manifests/revisions/sha256/${'b'.repeat(64)}`,
        ].sort(),
      );

      // An upload, a layer link, a tag moved to a manifest the repository has, a new tag for it.
      await file(`${repo}/_uploads/${'0'.repeat(8)}/data`, 100);
      await file(`${repo}/_layers/sha256/${'c'.repeat(64)}/link`, d('c'));
      await file(`${repo}/_manifests/tags/v1/current/link`, d('b'));
      await file(`${repo}/_manifests/tags/v2/current/link`, d('b'));
      expect(sameFolders(before, await manifestFolders(executor, root))).toBe(true);

      // A new manifest in the repository.
      await file(`${repo}/_manifests/revisions/sha256/${'e'.repeat(64)}/link`, d('e'));
      const pushed = await manifestFolders(executor, root);
      expect(sameFolders(before, pushed)).toBe(false);
      // A manifest deleted, as Distribution deletes it (the link; its folder stays), and pushed again.
      await rm(`${repo}/_manifests/revisions/sha256/${'e'.repeat(64)}/link`);
      const deleted = await manifestFolders(executor, root);
      expect(sameFolders(pushed, deleted)).toBe(false);
      await file(`${repo}/_manifests/revisions/sha256/${'e'.repeat(64)}/link`, d('e'));
      expect(sameFolders(deleted, await manifestFolders(executor, root))).toBe(false);
      // A new repository beside it.
      await file(`${v2}/repositories/team/web/_manifests/revisions/sha256/${'f'.repeat(64)}/link`, d('f'));
      expect(sameFolders(deleted, await manifestFolders(executor, root))).toBe(false);
    } finally {
      await cleanup();
    }
  });
});

describe('storage check with the manifests read before the collection', () => {
  it('checks what the tags pointed at against the storage after, index children included', async () => {
    const { root, executor, file, v2, cleanup } = await scratchStorage('check');
    try {
      const repo = `${v2}/repositories/app`;
      const link = async (kind: string, digest: string) =>
        file(`${repo}/${kind}/sha256/${digest.slice(7)}/link`, digest);
      // An index (tag `multi`) with one platform image, and a plain image (tag `plain`).
      const image = JSON.stringify({ config: { digest: d('1') }, layers: [{ digest: d('2') }] });
      const plain = JSON.stringify({ config: { digest: d('3') }, layers: [{ digest: d('4') }] });
      const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
      const index = JSON.stringify({ manifests: [{ digest: sha(image) }] });
      for (const [text, digest] of [
        [image, sha(image)],
        [plain, sha(plain)],
        [index, sha(index)],
      ]) {
        await file(blobDataPath(root, digest), text);
        await link('_manifests/revisions', digest);
      }
      for (const b of ['1', '2', '3', '4']) {
        await file(blobDataPath(root, d(b)), 1000);
        await link('_layers', d(b));
      }
      await file(`${repo}/_manifests/tags/multi/current/link`, sha(index));
      await file(`${repo}/_manifests/tags/plain/current/link`, sha(plain));
      // A tag whose link is being written: skipped.
      await file(`${repo}/_manifests/tags/pushing/current/link`, '');

      const before = await snapshotInParts(executor, root).whole;
      const tagged = await readTagged(executor, root, before.tags);
      expect(tagged.tags.map((t) => t.tag).sort()).toEqual(['multi', 'plain']);
      expect(tagged.references.get(sha(index))).toEqual([{ digest: sha(image), manifest: true }]);
      expect(tagged.references.get(sha(image))).toEqual([
        { digest: d('1'), manifest: false, config: true },
        { digest: d('2'), manifest: false },
      ]);
      const clean = await checkStorage(executor, root, tagged, before, []);
      expect(clean).toMatchObject({ tagsChecked: 2, manifestsChecked: 3, blobsChecked: 4, problems: [] });

      // The collection then loses a layer of the platform image and the plain image's manifest.
      await rm(join(blobDataPath(root, d('2')), '..'), { recursive: true });
      await rm(join(blobDataPath(root, sha(plain)), '..'), { recursive: true });
      const after = await snapshotInParts(executor, root).whole;
      const broken = await checkStorage(executor, root, tagged, after, [d('2')]);
      expect(broken.problems).toEqual(
        expect.arrayContaining([
          { repository: 'app', tag: 'multi', digest: sha(image), blob: d('2'), problem: 'blob data missing' },
          {
            repository: 'app',
            tag: 'plain',
            digest: sha(plain),
            blob: sha(plain),
            problem: 'manifest data missing',
          },
        ]),
      );
      expect(broken.problems).toHaveLength(2);
      expect(broken.deletedBlobsChecked).toBe(1);
      expect(broken.preexisting).toEqual([]);

      // Told what the storage held before: the plain image's manifest was already gone then (a blob the
      // walk before did not see, and the collector did not list), the layer was not.
      const without = (snapshot: StorageSnapshot, ...digests: string[]) => ({
        ...snapshot,
        blobs: new Map([...snapshot.blobs].filter(([digest]) => !digests.includes(digest))),
      });
      const removed = { blobs: [d('2')], manifests: [], layerLinks: [] };
      /** The check after the collection that deleted d('2'), told what the storage held before it. */
      const checkAgainst = (held: StorageSnapshot) =>
        checkStorage(executor, root, tagged, after, [d('2')], undefined, missingBefore(held, removed));
      const split = await checkAgainst(without(before, sha(plain)));
      expect(split.problems).toEqual([
        expect.objectContaining({ blob: d('2'), problem: 'blob data missing' }),
      ]);
      expect(split.preexisting).toEqual([
        expect.objectContaining({ tag: 'plain', blob: sha(plain), problem: 'manifest data missing' }),
      ]);
      // A blob the collector listed is its doing, even when the walk beside it never saw it.
      const unseen = await checkAgainst(without(before, d('2')));
      expect(unseen.problems.map((p) => p.blob).sort()).toEqual([d('2'), sha(plain)].sort());
      expect(unseen.preexisting).toEqual([]);
      // A missing layer link is judged by the links read before, and by the collector's removals of links.
      const wasMissing = missingBefore(
        { ...before, layers: new Map([['app', new Set([d('1')])]]) },
        { blobs: [], manifests: [], layerLinks: [{ repository: 'app', digest: d('3') }] },
      );
      expect([d('1'), d('3'), d('4')].map((digest) => wasMissing('layer link', 'app', digest))).toEqual([
        false,
        false,
        true,
      ]);
      expect(wasMissing('revision link', 'app', sha(plain))).toBe(false);
      // A blob pushed after the walk (data and link unseen) that the collector deleted: its doing.
      const pushedThenCollected = missingBefore(without(before, d('9')), {
        blobs: [d('9')],
        manifests: [],
        layerLinks: [],
      });
      expect(
        (['data', 'layer link', 'revision link'] as const).map((thing) =>
          pushedThenCollected(thing, 'app', d('9')),
        ),
      ).toEqual([false, false, false]);
      expect(wasMissing('revision link', 'other', sha(plain))).toBe(true);
    } finally {
      await cleanup();
    }
  });
});
