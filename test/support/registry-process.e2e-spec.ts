import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ImagePusher,
  MANIFEST_ACCEPT,
  MEDIA_TYPES,
  RegistryHttpError,
  seedManyRepositories,
  sha256,
} from './image-pusher.js';
import { RegistryProcess } from './registry-process.js';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function http(
  method: 'GET' | 'HEAD' | 'DELETE' | 'POST',
  url: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const res = await request(url, { method, headers });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Follows the Link header until the last page. */
async function listCatalog(registryUrl: string, pageSize: number, headers: Record<string, string> = {}) {
  const names: string[] = [];
  let next: string | undefined = `/v2/_catalog?n=${pageSize}`;
  let pages = 0;
  while (next) {
    const res = await http('GET', new URL(next, registryUrl).href, headers);
    expect(res.status).toBe(200);
    names.push(...(JSON.parse(res.text) as { repositories: string[] }).repositories);
    pages++;
    next = first(res.headers.link)?.match(/<([^>]+)>;\s*rel="next"/)?.[1];
  }
  return { names, pages };
}

function describeAnswer(res: RawResponse): string {
  const interesting = ['allow', 'content-type', 'docker-distribution-api-version', 'content-length'];
  const shown = interesting
    .filter((h) => res.headers[h] !== undefined)
    .map((h) => `${h}: ${first(res.headers[h])}`);
  return `${res.status} [${shown.join('; ')}] ${res.text.trim()}`;
}

describe('RegistryProcess and ImagePusher on a default registry', () => {
  let registry: RegistryProcess;
  let pusher: ImagePusher;

  beforeAll(async () => {
    registry = await RegistryProcess.start();
    pusher = new ImagePusher(registry.url);
  });

  afterAll(async () => {
    await pusher?.close();
    await registry?.cleanup();
  });

  it('pushes Docker and OCI images that are served back with their media types and digests', async () => {
    const docker = await pusher.pushImage('apps/web', ['1.0'], { format: 'docker', seed: 'web' });
    const oci = await pusher.pushImage('apps/api', ['1.0', 'latest'], {
      format: 'oci',
      layers: 2,
      seed: 'api',
    });
    expect(docker.mediaType).toBe(MEDIA_TYPES.dockerManifest);
    expect(oci.mediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(oci.layers).toHaveLength(2);
    expect(oci.totalSize).toBe(oci.config.size + oci.layers[0].size + oci.layers[1].size);

    for (const image of [docker, oci]) {
      const res = await http('GET', `${registry.url}/v2/${image.repository}/manifests/${image.tags[0]}`, {
        accept: MANIFEST_ACCEPT,
      });
      expect(res.status).toBe(200);
      expect(first(res.headers['content-type'])).toBe(image.mediaType);
      expect(first(res.headers['docker-content-digest'])).toBe(image.digest);
      expect(sha256(res.text)).toBe(image.digest);
      expect(Buffer.byteLength(res.text)).toBe(image.manifestSize);
    }

    // the blobs are what a real client would unpack: an image config and gzip'd ustar layers
    const config = JSON.parse((await pusher.pullBlob('apps/api', oci.config.digest)).toString('utf8'));
    expect(config).toMatchObject({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers' } });
    expect(config.rootfs.diff_ids).toHaveLength(2);
    for (const [i, layer] of oci.layers.entries()) {
      const tar = gunzipSync(await pusher.pullBlob('apps/api', layer.digest));
      expect(sha256(tar)).toBe(config.rootfs.diff_ids[i]);
      expect(tar.toString('ascii', 257, 262)).toBe('ustar');
      expect(parseInt(tar.toString('ascii', 124, 135), 8)).toBe(1024);
      expect(tar.length % 512).toBe(0);
    }

    // same seed, same image; another seed, another digest
    const again = await pusher.pushImage('apps/web-copy', ['1.0'], { format: 'docker', seed: 'web' });
    expect(again.digest).toBe(docker.digest);
    const other = await pusher.pushImage('apps/web-copy', ['2.0'], { format: 'docker', seed: 'web-2' });
    expect(other.digest).not.toBe(docker.digest);
  });

  it('pushes 2-platform indexes whose digest only a HEAD with the full Accept list returns', async () => {
    const platforms = [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ];
    const ociIndex = await pusher.pushIndex('multi/oci', ['1.0'], platforms, {
      format: 'oci',
      seed: 'oci-idx',
    });
    const dockerList = await pusher.pushIndex('multi/docker', ['1.0'], platforms, {
      format: 'docker',
      seed: 'docker-list',
    });
    expect(ociIndex.mediaType).toBe(MEDIA_TYPES.ociIndex);
    expect(dockerList.mediaType).toBe(MEDIA_TYPES.dockerManifestList);
    expect(ociIndex.children.map((c) => c.platform.architecture)).toEqual(['amd64', 'arm64']);
    expect(ociIndex.children[0].digest).not.toBe(ociIndex.children[1].digest);

    for (const index of [ociIndex, dockerList]) {
      const head = await http('HEAD', `${registry.url}/v2/${index.repository}/manifests/1.0`, {
        accept: MANIFEST_ACCEPT,
      });
      expect(head.status).toBe(200);
      expect(first(head.headers['docker-content-digest'])).toBe(index.digest);
      expect(first(head.headers['content-type'])).toBe(index.mediaType);

      const body = JSON.parse(
        (
          await http('GET', `${registry.url}/v2/${index.repository}/manifests/${index.digest}`, {
            accept: MANIFEST_ACCEPT,
          })
        ).text,
      );
      expect(body.manifests.map((m: { digest: string }) => m.digest)).toEqual(
        index.children.map((c) => c.digest),
      );
      expect(body.manifests[1].platform).toEqual({ architecture: 'arm64', os: 'linux', variant: 'v8' });

      // the children are untagged and stay reachable by digest
      for (const child of index.children) {
        const res = await http('HEAD', `${registry.url}/v2/${index.repository}/manifests/${child.digest}`, {
          accept: MANIFEST_ACCEPT,
        });
        expect(res.status).toBe(200);
      }

      const bare = await http('HEAD', `${registry.url}/v2/${index.repository}/manifests/1.0`);
      console.log(
        `[fact] HEAD ${index.mediaType} without Accept -> ${bare.status} ${first(bare.headers['content-type'])} ` +
          `${first(bare.headers['docker-content-digest'])} (index ${index.digest}, amd64 child ${index.children[0].digest})`,
      );
    }
    const tags = JSON.parse((await http('GET', `${registry.url}/v2/multi/oci/tags/list`)).text);
    expect(tags).toEqual({ name: 'multi/oci', tags: ['1.0'] });
  });

  it('tags a second name onto an existing digest', async () => {
    const image = await pusher.pushImage('apps/shared', ['1.0'], { format: 'oci' });
    await pusher.tag('apps/shared', 'stable', image.digest);
    const digests = await Promise.all(
      ['1.0', 'stable'].map(async (tag) => {
        const res = await http('HEAD', `${registry.url}/v2/apps/shared/manifests/${tag}`, {
          accept: MANIFEST_ACCEPT,
        });
        return first(res.headers['docker-content-digest']);
      }),
    );
    expect(digests).toEqual([image.digest, image.digest]);
    const tags = JSON.parse((await http('GET', `${registry.url}/v2/apps/shared/tags/list`)).text);
    expect(tags.tags.sort()).toEqual(['1.0', 'stable']);

    // tagging an index keeps the index digest
    const index = await pusher.pushIndex(
      'multi/tagged',
      ['1.0'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    await pusher.tag('multi/tagged', 'latest', index.digest);
    const head = await http('HEAD', `${registry.url}/v2/multi/tagged/manifests/latest`, {
      accept: MANIFEST_ACCEPT,
    });
    expect(first(head.headers['docker-content-digest'])).toBe(index.digest);
  });

  it('lists every pushed repository in the catalog and every tag in tags/list', async () => {
    const { names } = await listCatalog(registry.url, 2);
    expect(names).toEqual(
      expect.arrayContaining([
        'apps/api',
        'apps/shared',
        'apps/web',
        'apps/web-copy',
        'multi/docker',
        'multi/oci',
      ]),
    );
    const tags = JSON.parse((await http('GET', `${registry.url}/v2/apps/api/tags/list`)).text);
    expect(tags.tags.sort()).toEqual(['1.0', 'latest']);
  });

  it('returns pushed blobs byte for byte and mounts known blobs across repositories', async () => {
    const a = await pusher.pushImage('blobs/a', ['1'], { layerSize: 200_000, seed: 'blob-a' });
    const bytes = await pusher.pullBlob('blobs/a', a.layers[0].digest);
    expect(bytes.length).toBe(a.layers[0].size);
    expect(sha256(bytes)).toBe(a.layers[0].digest);
    // same layers, new config: the layer is mounted from blobs/a and still served by blobs/b
    const b = await pusher.pushImage('blobs/b', ['1'], {
      layerSize: 200_000,
      seed: 'blob-b',
      layerSeed: 'blob-a',
    });
    expect(b.layers[0].digest).toBe(a.layers[0].digest);
    expect((await pusher.pullBlob('blobs/b', b.layers[0].digest)).equals(bytes)).toBe(true);
  });

  it('answers a DELETE by tag without deleting anything (recorded for 2.8)', async () => {
    const image = await pusher.pushImage('del/by-tag', ['1.0']);
    const res = await http('DELETE', `${registry.url}/v2/del/by-tag/manifests/1.0`);
    console.log(`[fact] 2.8 DELETE /v2/<name>/manifests/<tag> -> ${describeAnswer(res)}`);
    expect(res.status).toBeGreaterThanOrEqual(400);
    const head = await http('HEAD', `${registry.url}/v2/del/by-tag/manifests/1.0`, {
      accept: MANIFEST_ACCEPT,
    });
    expect(first(head.headers['docker-content-digest'])).toBe(image.digest);
  });

  it('keeps its data across a restart on the same port', async () => {
    const pidBefore = registry.pid;
    await registry.restart();
    expect(registry.pid).not.toBe(pidBefore);
    expect(registry.running).toBe(true);
    const tags = JSON.parse((await http('GET', `${registry.url}/v2/apps/api/tags/list`)).text);
    expect(tags.tags.sort()).toEqual(['1.0', 'latest']);
    // keep-alive sockets of the pusher died with the old process; the pool must recover
    const image = await pusher.pushImage('apps/after-restart', ['1']);
    expect(image.digest).toMatch(/^sha256:/);
  });

  it('frees disk when garbage-collect runs after a manifest delete', async () => {
    const image = await pusher.pushImage('gc/big', ['1.0'], { layers: 2, layerSize: 512 * 1024 });
    const before = await registry.diskUsage();

    const del = await http('DELETE', `${registry.url}/v2/gc/big/manifests/${image.digest}`);
    expect(del.status).toBe(202);
    expect(await registry.diskUsage()).toBeGreaterThan(before - 1024 * 1024); // the blobs stay until GC

    const dry = await registry.garbageCollect({ dryRun: true });
    expect(dry.code).toBe(0);
    expect(dry.output).toContain(image.layers[0].digest.slice('sha256:'.length));
    expect(await registry.diskUsage()).toBeGreaterThan(before - 1024 * 1024);

    const gc = await registry.garbageCollect();
    expect(gc.code).toBe(0);
    const after = await registry.diskUsage();
    console.log(`[fact] diskUsage before GC ${before} B, after ${after} B`);
    expect(after).toBeLessThan(before - 1024 * 1024);
  });

  it('rejects with the log tail when the registry exits during start', async () => {
    // an unparsable proxy URL makes 2.8 panic while it builds the app
    await expect(RegistryProcess.start({ proxyRemoteUrl: 'http://[::1' })).rejects.toThrow(
      /exited early[\s\S]*missing '\]' in host/,
    );
  });

  it('refuses a port that another server already listens on', async () => {
    await expect(RegistryProcess.start({ port: registry.port })).rejects.toThrow(/already in use/);
    expect((await http('GET', `${registry.url}/v2/`)).status).toBe(200);
  });
});

describe('RegistryProcess with basic auth', () => {
  let registry: RegistryProcess;
  const credentials = { username: 'ci', password: 's3cret-pa55' };

  beforeAll(async () => {
    registry = await RegistryProcess.start({ basicAuth: credentials });
  });
  afterAll(() => registry?.cleanup());

  it('answers 401 without credentials and accepts them through the pusher', async () => {
    const anonymous = await http('GET', `${registry.url}/v2/`);
    expect(anonymous.status).toBe(401);
    expect(first(anonymous.headers['www-authenticate'])).toMatch(/^Basic realm=/);
    const wrong = await http('GET', `${registry.url}/v2/`, {
      authorization: `Basic ${Buffer.from('ci:nope').toString('base64')}`,
    });
    expect(wrong.status).toBe(401);
    const basic = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    expect((await http('GET', `${registry.url}/v2/`, { authorization: basic })).status).toBe(200);

    const anonymousPusher = new ImagePusher(registry.url);
    try {
      await expect(anonymousPusher.pushImage('secure/app', ['1'])).rejects.toMatchObject({ status: 401 });
      await expect(anonymousPusher.pushImage('secure/app', ['1'])).rejects.toBeInstanceOf(RegistryHttpError);
    } finally {
      await anonymousPusher.close();
    }

    const pusher = new ImagePusher(registry.url, credentials);
    try {
      const image = await pusher.pushImage('secure/app', ['1']);
      expect((await pusher.pullBlob('secure/app', image.config.digest)).length).toBe(image.config.size);
      const { names } = await listCatalog(registry.url, 100, { authorization: basic });
      expect(names).toEqual(['secure/app']);
    } finally {
      await pusher.close();
    }
  });
});

describe('RegistryProcess where deletes are refused', () => {
  const started: RegistryProcess[] = [];
  afterAll(() => Promise.all(started.map((r) => r.cleanup())));

  it('answers a manifest DELETE with 405 UNSUPPORTED when delete is disabled', async () => {
    const registry = await RegistryProcess.start({ deleteEnabled: false });
    started.push(registry);
    const pusher = new ImagePusher(registry.url);
    const image = await pusher.pushImage('app', ['1']);
    await pusher.close();

    const res = await http('DELETE', `${registry.url}/v2/app/manifests/${image.digest}`);
    console.log(`[fact] delete disabled: DELETE manifest by digest -> ${describeAnswer(res)}`);
    expect(res.status).toBe(405);
    expect(res.text).toContain('UNSUPPORTED');
    const blob = await http('DELETE', `${registry.url}/v2/app/blobs/${image.layers[0].digest}`);
    console.log(`[fact] delete disabled: DELETE blob -> ${describeAnswer(blob)}`);
    const byTag = await http('DELETE', `${registry.url}/v2/app/manifests/1`);
    console.log(`[fact] delete disabled: DELETE manifest by tag -> ${describeAnswer(byTag)}`);
  });

  it('answers a manifest DELETE with 405 when the registry is read-only, and keeps serving reads', async () => {
    const registry = await RegistryProcess.start();
    started.push(registry);
    const pusher = new ImagePusher(registry.url);
    const image = await pusher.pushImage('app', ['1']);

    await registry.restart({ readOnly: true });
    expect(registry.options.readOnly).toBe(true);
    const res = await http('DELETE', `${registry.url}/v2/app/manifests/${image.digest}`);
    console.log(`[fact] read-only: DELETE manifest by digest -> ${describeAnswer(res)}`);
    expect(res.status).toBe(405);
    const upload = await http('POST', `${registry.url}/v2/app/blobs/uploads/`, { 'content-length': '0' });
    console.log(`[fact] read-only: POST blob upload -> ${describeAnswer(upload)}`);
    expect(upload.status).toBe(405);
    const byTag = await http('DELETE', `${registry.url}/v2/app/manifests/1`);
    console.log(`[fact] read-only: DELETE manifest by tag -> ${describeAnswer(byTag)}`);

    expect((await pusher.pullBlob('app', image.layers[0].digest)).length).toBe(image.layers[0].size);
    await pusher.close();

    await registry.restart({ readOnly: false });
    expect((await http('DELETE', `${registry.url}/v2/app/manifests/${image.digest}`)).status).toBe(202);
  });

  it('serves a pull-through cache of another registry and refuses deletes on it', async () => {
    const upstream = await RegistryProcess.start();
    started.push(upstream);
    const pusher = new ImagePusher(upstream.url);
    const image = await pusher.pushImage('library/app', ['1']);
    await pusher.close();

    const cache = await RegistryProcess.start({ proxyRemoteUrl: upstream.url });
    started.push(cache);
    const pulled = await http('GET', `${cache.url}/v2/library/app/manifests/1`, { accept: MANIFEST_ACCEPT });
    expect(first(pulled.headers['docker-content-digest'])).toBe(image.digest);

    const res = await http('DELETE', `${cache.url}/v2/library/app/manifests/${image.digest}`);
    console.log(`[fact] pull-through cache: DELETE manifest by digest -> ${describeAnswer(res)}`);
    expect(res.status).toBe(405);
    const upload = await http('POST', `${cache.url}/v2/library/app/blobs/uploads/`, {
      'content-length': '0',
    });
    console.log(`[fact] pull-through cache: POST blob upload -> ${describeAnswer(upload)}`);
  });
});

describe('seedManyRepositories', () => {
  let registry: RegistryProcess;
  let pusher: ImagePusher;

  beforeAll(async () => {
    registry = await RegistryProcess.start();
    pusher = new ImagePusher(registry.url);
  });
  afterAll(async () => {
    await pusher?.close();
    await registry?.cleanup();
  });

  it(
    'seeds 1,100 repositories with one tag each, all listed in the paginated catalog',
    { timeout: 600_000 },
    async () => {
      let progress = 0;
      const startedAt = performance.now();
      const { repositories } = await seedManyRepositories(pusher, {
        prefix: 'bulk',
        repositories: 1_100,
        tagsPerRepository: 1,
        onProgress: (done) => (progress = done),
      });
      const seconds = (performance.now() - startedAt) / 1000;
      console.log(`[fact] seedManyRepositories 1,100 repos x 1 tag took ${seconds.toFixed(1)} s`);
      expect(progress).toBe(1_100);
      expect(repositories[0]).toBe('bulk/repo-0001');
      expect(repositories.at(-1)).toBe('bulk/repo-1100');

      const { names, pages } = await listCatalog(registry.url, 500);
      expect(pages).toBeGreaterThan(1);
      expect(names.sort()).toEqual([...repositories].sort());

      // one shared layer, distinct manifests
      const heads = await Promise.all(
        ['bulk/repo-0001', 'bulk/repo-1100'].map((name) =>
          http('GET', `${registry.url}/v2/${name}/manifests/v1`, { accept: MANIFEST_ACCEPT }),
        ),
      );
      const [m1, m2] = heads.map((h) => JSON.parse(h.text));
      expect(m1.layers[0].digest).toBe(m2.layers[0].digest);
      expect(m1.config.digest).not.toBe(m2.config.digest);
    },
  );
});
