import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GcOutputParser, parseGcOutput } from './gc-output.js';

// See fixtures/README.md: 2.8 files are real output of Debian's docker-registry 2.8.2, 3.x files are
// written from the v3 source's print statements for the same scenario.
const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

interface Image {
  digest: string;
  config: string;
  layers: string[];
}
const scenario = JSON.parse(fixture('gc-2.8-scenario.json')) as {
  v1: Image;
  v2: Image;
  untagged: Image;
  index: { digest: string; children: Image[] };
};
const { v1, v2, untagged, index } = scenario;
const [amd64, arm64] = index.children;
const blobsOf = (image: Image) => [image.digest, image.config, ...image.layers];
const sorted = (digests: string[]) => [...digests].sort();

describe('parseGcOutput on Distribution 2.8 (real output)', () => {
  it('reads a dry run: repositories, kept manifests, counts and the blobs it would delete', () => {
    const s = parseGcOutput(fixture('gc-2.8-dry-run.txt'));
    expect(s.repositories).toEqual(['multi/arch', 'team/app']);
    expect(s.markedManifests).toEqual([
      { repository: 'multi/arch', digest: index.digest },
      { repository: 'multi/arch', digest: amd64.digest },
      { repository: 'multi/arch', digest: arm64.digest },
      { repository: 'team/app', digest: untagged.digest },
      { repository: 'team/app', digest: v2.digest },
    ]);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([13, 4, 0]);
    expect(sorted(s.blobsDeleted)).toEqual(sorted(blobsOf(v1)));
    expect(s.manifestsDeleted).toEqual([]);
    expect(s.referencedManifestsDeleted).toEqual([]);
    expect(s.layerLinksDeleted).toEqual([]);
    expect(s.confirmed).toEqual({ blobs: [], manifests: [] });
    expect(s.errors).toEqual([]);
    expect(s.summarySeen).toBe(true);
    // without --delete-untagged, 2.8 and 3.x print nothing that tells them apart
    expect(s.version).toBe('unknown');
  });

  it('reads a real run, and the info-level log confirms each deleted blob', () => {
    const s = parseGcOutput(fixture('gc-2.8-real-run.txt'));
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([13, 4, 0]);
    expect(sorted(s.blobsDeleted)).toEqual(sorted(blobsOf(v1)));
    expect(sorted(s.confirmed.blobs)).toEqual(sorted(blobsOf(v1)));
    expect(s.errors).toEqual([]);
  });

  it('flags the platform manifests of a tagged index that --delete-untagged lists on 2.8', () => {
    const s = parseGcOutput(fixture('gc-2.8-dry-run-delete-untagged.txt'));
    expect(s.version).toBe('2.8');
    // 2.8 prints bare digests; the repository is the one whose name came last
    expect(s.manifestsDeleted).toEqual([
      { repository: 'multi/arch', digest: amd64.digest },
      { repository: 'multi/arch', digest: arm64.digest },
      { repository: 'team/app', digest: untagged.digest },
    ]);
    expect(s.referencedManifestsDeleted).toEqual([
      { repository: 'multi/arch', digest: amd64.digest },
      { repository: 'multi/arch', digest: arm64.digest },
    ]);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([6, 7, 3]);
    // the children's configs and layers go too: the index is left pointing at nothing
    expect(sorted(s.blobsDeleted)).toEqual(
      sorted([amd64.config, ...amd64.layers, arm64.config, ...arm64.layers, ...blobsOf(untagged)]),
    );
  });

  it('confirms manifest deletions of a real --delete-untagged run from the log', () => {
    const s = parseGcOutput(fixture('gc-2.8-delete-untagged.txt'));
    expect(s.version).toBe('2.8');
    expect(s.confirmed.manifests).toEqual(s.manifestsDeleted);
    expect(sorted(s.confirmed.blobs)).toEqual(sorted(s.blobsDeleted));
    expect(s.referencedManifestsDeleted).toHaveLength(2);
  });

  it('reads a run that skipped a repository with a missing manifest blob (exit 0, no error printed)', () => {
    const s = parseGcOutput(fixture('gc-2.8-missing-manifest-blob.txt'));
    expect(s.errors).toEqual([]);
    expect(s.markedManifests.map((m) => m.repository)).toEqual(['multi/arch']);
    expect(s.repositories).toEqual(['multi/arch', 'team/app']);
    // v2 is still tagged, yet its config and layer are listed for deletion
    expect(sorted(s.blobsDeleted)).toEqual(sorted([v2.config, ...v2.layers]));
  });

  it('reports a failed run (no trailing newline) and no counts', () => {
    const s = parseGcOutput(fixture('gc-2.8-failed.txt'));
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]).toMatch(
      new RegExp(
        `^failed to garbage collect: failed to mark: .*failed to retrieve manifest for digest ${index.digest}`,
      ),
    );
    expect(s.summarySeen).toBe(false);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([null, null, null]);
    expect(s.blobsDeleted).toEqual([]);
  });

  it('reports a configuration error and does not take the usage text for repositories', () => {
    const s = parseGcOutput(fixture('gc-2.8-missing-config.txt'));
    expect(s.errors).toEqual([
      'configuration error: open /nonexistent/config.yml: no such file or directory',
    ]);
    expect(s.repositories).toEqual([]);
    expect(s.summarySeen).toBe(false);
  });
});

describe('parseGcOutput on Distribution 3.x (fixtures from the source)', () => {
  it('reads a run: children marked through the index, layer links listed', () => {
    const s = parseGcOutput(fixture('gc-3-run.txt'));
    expect(s.version).toBe('3');
    expect(s.markedManifests).toHaveLength(5);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([13, 4, 0]);
    expect(sorted(s.blobsDeleted)).toEqual(sorted(blobsOf(v1)));
    expect(s.layerLinksDeleted).toEqual(
      sorted([v1.config, ...v1.layers]).map((digest) => ({ repository: 'team/app', digest })),
    );
    expect(s.manifestsDeleted).toEqual([]);
    expect(s.errors).toEqual([]);
  });

  it('reads --delete-untagged: only the untagged image, the index children are kept', () => {
    const s = parseGcOutput(fixture('gc-3-delete-untagged.txt'));
    expect(s.version).toBe('3');
    expect(s.manifestsDeleted).toEqual([{ repository: 'team/app', digest: untagged.digest }]);
    expect(s.referencedManifestsDeleted).toEqual([]);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([10, 3, 1]);
    expect(sorted(s.blobsDeleted)).toEqual(sorted(blobsOf(untagged)));
    expect(s.layerLinksDeleted.map((l) => l.digest)).toEqual(sorted([untagged.config, ...untagged.layers]));
  });

  it('reads the 3.x struct line with several tags and with none', () => {
    const d = `sha256:${'ab'.repeat(32)}`;
    const s = parseGcOutput(
      `manifest eligible for deletion: {a/b ${d} [x y z]}\nmanifest eligible for deletion: {c ${d} []}\n`,
    );
    expect(s.manifestsDeleted).toEqual([
      { repository: 'a/b', digest: d },
      { repository: 'c', digest: d },
    ]);
  });
});

describe('GcOutputParser', () => {
  it('gives the same result fed in arbitrary chunks as parsed whole', () => {
    const text = fixture('gc-2.8-delete-untagged.txt');
    const parser = new GcOutputParser();
    let at = 0;
    let step = 1;
    while (at < text.length) {
      parser.write(text.slice(at, at + step));
      at += step;
      step = (step * 7 + 3) % 97 || 1;
    }
    expect(parser.end()).toEqual(parseGcOutput(text));
  });

  it('puts lines together per stream: a log line on stderr does not cut into a half-written stdout line', () => {
    const d = `sha256:${'ab'.repeat(32)}`;
    const parser = new GcOutputParser();
    parser.write('team/app\nteam/app: marking manifest sha2', 'stdout');
    parser.write(
      'time="2026-01-01T00:00:00Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/ab/',
      'stderr',
    );
    parser.write(`56:${'ab'.repeat(32)} \nblob eligible for del`, 'stdout');
    parser.write(`${'ab'.repeat(32)}"\n`, 'stderr');
    parser.write(`etion: ${d}`, 'stdout');
    const s = parser.end();
    expect(s.markedManifests).toEqual([{ repository: 'team/app', digest: d }]);
    expect(s.blobsDeleted).toEqual([d]);
    expect(s.confirmed.blobs).toEqual([d]);
  });

  it('takes CRLF, JSON log lines, warnings, panics and the pre-2.7 summary', () => {
    const d = `sha256:${'cd'.repeat(32)}`;
    const s = parseGcOutput(
      [
        'repo/one',
        'manifest tags path of repository repo/one does not exist',
        '{"level":"error","msg":"storage driver failed","time":"2026-01-01T00:00:00Z"}',
        '{"level":"info","msg":"Deleting blob: /docker/registry/v2/blobs/sha256/cd/' + 'cd'.repeat(32) + '"}',
        'time="2026-01-01T00:00:00Z" level=fatal msg="cannot \\"open\\" it"',
        '',
        '3 blobs marked, 1 blobs eligible for deletion',
        `blob eligible for deletion: ${d}`,
        'panic: runtime error',
      ].join('\r\n'),
    );
    expect(s.repositories).toEqual(['repo/one']);
    expect(s.warnings).toEqual(['manifest tags path of repository repo/one does not exist']);
    expect(s.errors).toEqual(['storage driver failed', 'cannot "open" it', 'panic: runtime error']);
    expect(s.confirmed.blobs).toEqual([d]);
    expect([s.blobsMarked, s.blobsEligible, s.manifestsEligible]).toEqual([3, 1, null]);
    expect(s.blobsDeleted).toEqual([d]);
  });

  it('recognises the failure of a storage nothing was ever pushed to (2.8, real message)', () => {
    const s = parseGcOutput(
      'failed to garbage collect: failed to mark: filesystem: Path not found: /docker/registry/v2/repositories',
    );
    expect(s.nothingStored).toBe(true);
    expect(parseGcOutput(fixture('gc-2.8-failed.txt')).nothingStored).toBe(false);
    // Repositories but no blob folder yet (a registry where only uploads were ever started).
    expect(
      parseGcOutput(
        'failed to garbage collect: error enumerating blobs: filesystem: Path not found: /docker/registry/v2/blobs',
      ).nothingStored,
    ).toBe(true);
  });

  it('returns an empty summary for no output', () => {
    const s = parseGcOutput('');
    expect(s.version).toBe('unknown');
    expect(s.summarySeen).toBe(false);
    expect(s.repositories).toEqual([]);
  });
});

describe('whether the whole output was read (complete)', () => {
  const files = [
    'gc-2.8-dry-run.txt',
    'gc-2.8-real-run.txt',
    'gc-2.8-dry-run-delete-untagged.txt',
    'gc-2.8-delete-untagged.txt',
    'gc-2.8-missing-manifest-blob.txt',
    'gc-3-run.txt',
    'gc-3-delete-untagged.txt',
  ];

  it.each(files)('%s: every digest its summary announces is listed', (file) => {
    expect(parseGcOutput(fixture(file)).complete).toBe(true);
  });

  it('not when a blob line or a manifest line was lost, whichever side of the summary', () => {
    const text = fixture('gc-2.8-delete-untagged.txt');
    const without = (pattern: RegExp) => {
      const lines = text.split('\n');
      lines.splice(
        lines.findIndex((l) => pattern.test(l)),
        1,
      );
      return parseGcOutput(lines.join('\n'));
    };
    const blobLost = without(/^blob eligible for deletion: /);
    expect(blobLost.complete).toBe(false);
    expect(blobLost.blobsDeleted).toHaveLength(blobLost.blobsEligible! - 1);
    expect(without(/^manifest eligible for deletion: /).complete).toBe(false);
    // 3.x lists its manifests before the summary
    expect(
      parseGcOutput(
        fixture('gc-3-delete-untagged.txt')
          .split('\n')
          .filter((l) => !l.startsWith('manifest eligible for deletion: '))
          .join('\n'),
      ).complete,
    ).toBe(false);
  });

  it('not without the summary line: a failed run, or an output that is not a collector’s', () => {
    expect(parseGcOutput(fixture('gc-2.8-failed.txt')).complete).toBe(false);
    expect(parseGcOutput('').complete).toBe(false);
    const real = fixture('gc-2.8-real-run.txt');
    expect(parseGcOutput(real.replace(/^\d+ blobs marked.*$/m, '')).complete).toBe(false);
  });
});
