import { describe, expect, it } from 'vitest';
import { blobDataPath, references } from './gc-storage.js';

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
      { digest: d('a'), manifest: false },
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
