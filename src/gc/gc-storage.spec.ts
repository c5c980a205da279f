import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalGcExecutor } from './executors/local-executor.js';
import { blobDataPath, references, snapshotInParts, v2Root } from './gc-storage.js';

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

/** Disk usage of a path by one `du -sk`, in bytes. */
const duBytes = (path: string) =>
  Number(execFileSync('du', ['-sk', path], { encoding: 'utf8' }).split('\t')[0]) * 1024;

describe('storage snapshot', () => {
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
      const parts = snapshotInParts(executor, root);
      await parts.outsideRepositories;
      const split = await parts.whole;
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
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
