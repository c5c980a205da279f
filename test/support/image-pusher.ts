import { createCipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Agent, request } from 'undici';

export const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** Without all four, a registry may answer with a converted or child manifest and so the wrong digest. */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerManifest,
].join(', ');

export type ImageFormat = 'oci' | 'docker';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PushedImage {
  repository: string;
  tags: string[];
  digest: string;
  mediaType: string;
  manifestSize: number;
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
  /** config + layer blob bytes, as stored (compressed); the manifest itself is not counted. */
  totalSize: number;
  created: string;
  platform: Platform;
}

export interface PushedIndex {
  repository: string;
  tags: string[];
  digest: string;
  mediaType: string;
  manifestSize: number;
  children: PushedImage[];
}

export interface PushImageOptions {
  format?: ImageFormat;
  /** Number of layers; default 1. */
  layers?: number;
  /** Uncompressed file size inside each layer; default 1024. */
  layerSize?: number;
  /** Same seed, same blobs and digest; default a random seed, so every push is a new image. */
  seed?: string;
  /** Seed for the layer contents only (default: seed); lets distinct images share layers. */
  layerSeed?: string;
  /** Written into the config; default 2024-01-01T00:00:00Z so that seeded pushes are reproducible. */
  created?: Date;
  platform?: Platform;
  /** PUT the manifest by digest only, leaving it untagged; `tags` is then ignored. */
  pushByDigestOnly?: boolean;
}

export interface PushIndexOptions {
  format?: ImageFormat;
  layerSize?: number;
  seed?: string;
  created?: Date;
}

export class RegistryHttpError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${url} answered ${status}: ${body.slice(0, 1_000)}`);
    this.name = 'RegistryHttpError';
  }
}

interface Blob {
  digest: string;
  bytes: Buffer;
}

interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const DEFAULT_CREATED = new Date('2024-01-01T00:00:00.000Z');
const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

export const sha256 = (bytes: Buffer | string): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Deterministic incompressible bytes: AES-256-CTR keystream keyed by the seed. */
export function pseudoRandomBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(`key:${seed}`).digest();
  const iv = createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(length));
}

function writeOctal(header: Buffer, offset: number, fieldLength: number, value: number): void {
  // NUL-terminated, zero-padded octal, as GNU tar writes it
  header.write(value.toString(8).padStart(fieldLength - 1, '0') + '\0', offset, fieldLength, 'ascii');
}

/** A POSIX ustar archive holding one regular file. */
export function tarSingleFile(name: string, content: Buffer, mtime = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, 100, 8, 0o644); // mode
  writeOctal(header, 108, 8, 0); // uid
  writeOctal(header, 116, 8, 0); // gid
  writeOctal(header, 124, 12, content.length);
  writeOctal(header, 136, 12, mtime);
  header.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  header.write('0', 156, 1, 'ascii'); // regular file
  header.write('ustar\u000000', 257, 8, 'ascii'); // magic "ustar\0" + version "00"
  header.write('root', 265, 32, 'ascii');
  header.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  const padding = (512 - (content.length % 512)) % 512;
  // two zero blocks end the archive
  return Buffer.concat([header, content, Buffer.alloc(padding), Buffer.alloc(1024)]);
}

interface BuiltLayer {
  blob: Blob;
  diffId: string;
}

/** Pushes real images (gzip'd tar layers, OCI image configs) through the v2 upload API. */
export class ImagePusher {
  readonly registryUrl: string;
  private readonly agent: Agent;
  private readonly authorization?: string;
  /** digest -> repositories of this registry where this pusher put or found it, for cross-repo mounts */
  private readonly blobRepositories = new Map<string, Set<string>>();
  private readonly layerCache = new Map<string, BuiltLayer>();

  constructor(
    registryUrl: string,
    opts: { username?: string; password?: string; connections?: number; ca?: string } = {},
  ) {
    this.registryUrl = registryUrl.replace(/\/+$/, '');
    this.agent = new Agent({
      connections: opts.connections ?? 16,
      keepAliveTimeout: 10_000,
      connect: opts.ca ? { ca: opts.ca } : undefined,
    });
    if (opts.username !== undefined) {
      const token = Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64');
      this.authorization = `Basic ${token}`;
    }
  }

  async pushImage(repository: string, tags: string[], opts: PushImageOptions = {}): Promise<PushedImage> {
    const format = opts.format ?? 'oci';
    const seed = opts.seed ?? randomUUID();
    const layerSeed = opts.layerSeed ?? seed;
    const layerCount = opts.layers ?? 1;
    const layerSize = opts.layerSize ?? 1024;
    const created = (opts.created ?? DEFAULT_CREATED).toISOString();
    const platform = opts.platform ?? DEFAULT_PLATFORM;
    const types =
      format === 'oci'
        ? { manifest: MEDIA_TYPES.ociManifest, config: MEDIA_TYPES.ociConfig, layer: MEDIA_TYPES.ociLayer }
        : {
            manifest: MEDIA_TYPES.dockerManifest,
            config: MEDIA_TYPES.dockerConfig,
            layer: MEDIA_TYPES.dockerLayer,
          };

    const layers = Array.from({ length: layerCount }, (_, i) =>
      this.buildLayer(`${layerSeed}/layer-${i}`, layerSize),
    );
    const configJson = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
      // the seed makes configs of otherwise identical images distinct
      history: [{ created, created_by: `registry-gateway test image ${seed}` }],
    };
    const configBytes = Buffer.from(JSON.stringify(configJson));
    const config: Blob = { digest: sha256(configBytes), bytes: configBytes };

    await Promise.all([
      ...layers.map((layer) => this.pushBlob(repository, layer.blob)),
      this.pushBlob(repository, config),
    ]);

    const manifest = {
      schemaVersion: 2,
      mediaType: types.manifest,
      config: { mediaType: types.config, digest: config.digest, size: config.bytes.length },
      layers: layers.map((layer) => ({
        mediaType: types.layer,
        digest: layer.blob.digest,
        size: layer.blob.bytes.length,
      })),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const pushedTags = opts.pushByDigestOnly ? [] : tags;
    const digest = await this.putManifest(repository, pushedTags, types.manifest, manifestBytes);

    const layerRefs = layers.map((layer) => ({ digest: layer.blob.digest, size: layer.blob.bytes.length }));
    return {
      repository,
      tags: [...pushedTags],
      digest,
      mediaType: types.manifest,
      manifestSize: manifestBytes.length,
      config: { digest: config.digest, size: config.bytes.length },
      layers: layerRefs,
      totalSize: config.bytes.length + layerRefs.reduce((sum, layer) => sum + layer.size, 0),
      created,
      platform: { ...platform },
    };
  }

  /** Children go up by digest first: the registry refuses an index whose manifests it lacks. */
  async pushIndex(
    repository: string,
    tags: string[],
    platforms: Platform[],
    opts: PushIndexOptions = {},
  ): Promise<PushedIndex> {
    const format = opts.format ?? 'oci';
    const seed = opts.seed ?? randomUUID();
    const children: PushedImage[] = [];
    for (const platform of platforms) {
      const key = [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
      children.push(
        await this.pushImage(repository, [], {
          format,
          seed: `${seed}/${key}`,
          layerSize: opts.layerSize,
          created: opts.created,
          platform,
          pushByDigestOnly: true,
        }),
      );
    }
    const mediaType = format === 'oci' ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.dockerManifestList;
    const index = {
      schemaVersion: 2,
      mediaType,
      manifests: children.map((child) => ({
        mediaType: child.mediaType,
        digest: child.digest,
        size: child.manifestSize,
        platform: {
          architecture: child.platform.architecture,
          os: child.platform.os,
          ...(child.platform.variant ? { variant: child.platform.variant } : {}),
        },
      })),
    };
    const bytes = Buffer.from(JSON.stringify(index));
    const digest = await this.putManifest(repository, tags, mediaType, bytes);
    return { repository, tags: [...tags], digest, mediaType, manifestSize: bytes.length, children };
  }

  /** Re-PUTs the stored manifest bytes under another tag, so the digest stays the same. */
  async tag(repository: string, tag: string, digest: string): Promise<void> {
    const res = await this.send('GET', `/v2/${repository}/manifests/${digest}`, {
      headers: { accept: MANIFEST_ACCEPT },
      expect: [200],
    });
    const contentType = header(res, 'content-type');
    if (!contentType) throw new Error(`GET manifest ${repository}@${digest} has no Content-Type`);
    await this.putManifest(repository, [tag], contentType, res.body);
  }

  /** The blob bytes as served, unverified: tests compare them byte for byte. */
  async pullBlob(repository: string, digest: string): Promise<Buffer> {
    const res = await this.send('GET', `/v2/${repository}/blobs/${digest}`, { expect: [200] });
    return res.body;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private buildLayer(seed: string, size: number): BuiltLayer {
    const key = `${seed}#${size}`;
    let layer = this.layerCache.get(key);
    if (!layer) {
      const tar = tarSingleFile('data.bin', pseudoRandomBytes(seed, size));
      // node's gzip header carries no mtime, so equal seeds give equal digests across runs
      const gz = gzipSync(tar);
      layer = { blob: { digest: sha256(gz), bytes: gz }, diffId: sha256(tar) };
      // bulk seeding reuses a few shared layers; unique ones need not stay in memory
      if (this.layerCache.size >= 64) this.layerCache.delete(this.layerCache.keys().next().value as string);
      this.layerCache.set(key, layer);
    }
    return layer;
  }

  private async pushBlob(repository: string, blob: Blob): Promise<void> {
    const known = this.blobRepositories.get(blob.digest);
    const source = known && [...known].find((repo) => repo !== repository);
    if (known?.has(repository) || !source) {
      const head = await this.send('HEAD', `/v2/${repository}/blobs/${blob.digest}`, { expect: [200, 404] });
      if (head.status === 200) return this.remember(blob.digest, repository);
    }

    let uploadLocation: string;
    if (source) {
      const mount = await this.send(
        'POST',
        `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(source)}`,
        { expect: [201, 202] },
      );
      if (mount.status === 201) return this.remember(blob.digest, repository);
      // 202: the registry could not mount and opened an ordinary upload instead
      uploadLocation = requireLocation(mount);
    } else {
      uploadLocation = requireLocation(
        await this.send('POST', `/v2/${repository}/blobs/uploads/`, { expect: [202] }),
      );
    }

    const target = new URL(uploadLocation, this.registryUrl);
    const url = `${target.href}${target.search ? '&' : '?'}digest=${encodeURIComponent(blob.digest)}`;
    const put = await this.send('PUT', url, {
      headers: { 'content-type': 'application/octet-stream' },
      body: blob.bytes,
      expect: [201],
    });
    const stored = header(put, 'docker-content-digest');
    if (stored && stored !== blob.digest) {
      throw new Error(`blob upload to ${repository} stored ${stored}, expected ${blob.digest}`);
    }
    this.remember(blob.digest, repository);
  }

  private remember(digest: string, repository: string): void {
    let repos = this.blobRepositories.get(digest);
    if (!repos) this.blobRepositories.set(digest, (repos = new Set()));
    repos.add(repository);
  }

  /** PUT under each tag, or by digest when there is none; returns the digest the registry reports. */
  private async putManifest(
    repository: string,
    tags: string[],
    mediaType: string,
    bytes: Buffer,
  ): Promise<string> {
    const digest = sha256(bytes);
    for (const reference of tags.length > 0 ? tags : [digest]) {
      const res = await this.send('PUT', `/v2/${repository}/manifests/${reference}`, {
        headers: { 'content-type': mediaType },
        body: bytes,
        expect: [201],
      });
      const stored = header(res, 'docker-content-digest');
      if (stored && stored !== digest) {
        throw new Error(`manifest ${repository}:${reference} stored as ${stored}, expected ${digest}`);
      }
    }
    return digest;
  }

  private async send(
    method: 'GET' | 'HEAD' | 'POST' | 'PUT',
    pathOrUrl: string,
    opts: { headers?: Record<string, string>; body?: Buffer; expect: number[] },
  ): Promise<Response> {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : `${this.registryUrl}${pathOrUrl}`;
    const headers: Record<string, string> = { ...opts.headers };
    if (this.authorization) headers.authorization = this.authorization;
    // a POST that opens an upload still needs a length, or some registries wait for a body
    if (method === 'POST' && !opts.body) headers['content-length'] = '0';
    const res = await request(url, { method, headers, body: opts.body, dispatcher: this.agent });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (!opts.expect.includes(res.statusCode)) {
      throw new RegistryHttpError(method, url, res.statusCode, body.toString('utf8'));
    }
    return { status: res.statusCode, headers: res.headers, body };
  }
}

function header(res: Response, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function requireLocation(res: Response): string {
  const location = header(res, 'location');
  if (!location) throw new Error(`upload answered ${res.status} without a Location header`);
  return location;
}

/** Runs fn over items with at most `concurrency` in flight; the first failure stops new work. */
export async function runPool<T>(
  items: T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Big fixtures: every tag is its own manifest (a distinct small config), while one layer is shared
 * by the whole registry: uploaded once, then mounted into each repository.
 */
export async function seedManyRepositories(
  pusher: ImagePusher,
  opts: {
    prefix: string;
    repositories: number;
    tagsPerRepository: number;
    concurrency?: number;
    format?: ImageFormat;
    layerSize?: number;
    onProgress?: (done: number) => void;
  },
): Promise<{ repositories: string[] }> {
  const width = Math.max(4, String(opts.repositories).length);
  const repositories = Array.from(
    { length: opts.repositories },
    (_, i) => `${opts.prefix}/repo-${String(i + 1).padStart(width, '0')}`,
  );
  const layerSeed = `${opts.prefix}/shared-layer`;
  let done = 0;
  const seedRepository = async (repository: string) => {
    for (let t = 1; t <= opts.tagsPerRepository; t++) {
      const tag = `v${t}`;
      await pusher.pushImage(repository, [tag], {
        seed: `${repository}:${tag}`,
        layerSeed,
        format: opts.format,
        layerSize: opts.layerSize,
      });
    }
    opts.onProgress?.(++done);
  };
  if (repositories.length === 0) return { repositories };
  // the first repository alone, so that the shared layer exists once before everyone mounts it
  await seedRepository(repositories[0]);
  await runPool(repositories.slice(1), opts.concurrency ?? 16, seedRepository);
  return { repositories };
}

/**
 * A blob uploaded with no manifest naming it: what an upload whose manifest is still to come leaves,
 * which a GC's grace window must protect. Returns its digest, having checked the registry took it (201).
 */
export async function uploadOrphanBlob(registryUrl: string, repository: string, size = 512): Promise<string> {
  const bytes = randomBytes(size);
  const upload = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  await upload.arrayBuffer();
  const digest = sha256(bytes);
  const put = await fetch(`${new URL(upload.headers.get('location')!, registryUrl).href}&digest=${digest}`, {
    method: 'PUT',
    body: bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
  await put.arrayBuffer();
  if (put.status !== 201) throw new Error(`the orphan blob's upload answered ${put.status}`);
  return digest;
}
