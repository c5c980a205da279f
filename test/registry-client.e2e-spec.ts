import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../src/common/domain-error.js';
import {
  ClientOptions,
  RegistryClient,
  RegistryTarget,
  SendOptions,
  UpstreamResponse,
} from '../src/registries/client/registry-client.js';
import { EMPTY_CONFIG, THROWAWAY_FOR } from '../src/registries/client/tag-delete.js';
import { UpstreamError } from '../src/registries/client/upstream-error.js';
import { ImagePusher, MANIFEST_ACCEPT, PushedImage, sha256 } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';
import { TokenServer } from './support/token-server.js';

const OPTIONS: ClientOptions = { timeoutMs: 10_000, connections: 8 };
const V2 = { distributionVersion: '2.x' };

function target(registry: RegistryProcess, auth: RegistryTarget['auth'] = { type: 'none' }): RegistryTarget {
  return { name: 'under-test', url: registry.url, auth, tls: { insecure: false } };
}

/** Every upstream exchange as `METHOD status`, in order: what the registry answered at each step. */
function recorder(): { options: ClientOptions; steps: string[] } {
  const steps: string[] = [];
  return { steps, options: { ...OPTIONS, observe: (method, status) => steps.push(`${method} ${status}`) } };
}

async function tagsOf(client: RegistryClient, repository: string): Promise<string[]> {
  try {
    return (await client.listTags(repository)).sort();
  } catch (err) {
    if (err instanceof UpstreamError && err.code === 'NAME_UNKNOWN') return [];
    throw err;
  }
}

async function digestOf(client: RegistryClient, repository: string, tag: string): Promise<string> {
  return (await client.headManifest(repository, tag)).digest;
}

/** Status of a plain GET of a manifest by digest, outside the client under test. */
async function manifestStatus(
  registry: RegistryProcess,
  repository: string,
  digest: string,
): Promise<number> {
  const res = await request(`${registry.url}/v2/${repository}/manifests/${digest}`, {
    headers: { accept: MANIFEST_ACCEPT },
  });
  await res.body.dump();
  return res.statusCode;
}

async function blobStatus(registry: RegistryProcess, repository: string, digest: string): Promise<number> {
  const res = await request(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
  await res.body.dump();
  return res.statusCode;
}

/** Every blob of the image still comes back with the exact bytes pushed (same digest, same size). */
async function expectImageIntact(pusher: ImagePusher, image: PushedImage): Promise<void> {
  for (const blob of [image.config, ...image.layers]) {
    const bytes = await pusher.pullBlob(image.repository, blob.digest);
    expect(sha256(bytes)).toBe(blob.digest);
    expect(bytes.length).toBe(blob.size);
  }
}

async function rejection(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    return err as DomainError;
  }
  throw new Error('expected a rejection');
}

/**
 * Test seam: `send` is the client's one door to the registry, so a subclass can act between two of its
 * exchanges (a concurrent push, a lost connection) without any hook in production code.
 */
class InterceptingClient extends RegistryClient {
  constructor(
    target: RegistryTarget,
    options: ClientOptions,
    private readonly intercept: (
      opts: SendOptions,
      next: () => Promise<UpstreamResponse>,
    ) => Promise<UpstreamResponse>,
  ) {
    super(target, options);
  }

  override send(opts: SendOptions): Promise<UpstreamResponse> {
    return this.intercept(opts, () => super.send(opts));
  }
}

const isThrowawayDelete = (opts: SendOptions) =>
  opts.method === 'DELETE' && /\/manifests\/sha256:/.test(opts.path) && !/:0{64}$/.test(opts.path);

describe('RegistryClient deletes on distribution 2.8', () => {
  let registry: RegistryProcess;
  let pusher: ImagePusher;
  let client: RegistryClient;

  beforeAll(async () => {
    registry = await RegistryProcess.start();
    pusher = new ImagePusher(registry.url);
    client = new RegistryClient(target(registry), OPTIONS);
  });

  afterAll(async () => {
    await client?.close();
    await pusher?.close();
    await registry?.cleanup();
  });

  it('deletes one tag of a shared digest and keeps the image for the other tags', async () => {
    const image = await pusher.pushImage('tagonly/app', ['a', 'b', 'c'], { layers: 2 });
    const { steps, options } = recorder();
    const recorded = new RegistryClient(target(registry), options);
    try {
      const result = await recorded.deleteTag('tagonly/app', 'b', V2);
      expect(result).toEqual({
        method: 'throwaway-manifest',
        throwawayDigest: expect.stringMatching(/^sha256:[a-f0-9]{64}$/),
        previousDigest: image.digest,
        alreadyGone: false,
      });
      console.log(`[fact] 2.8 tag-only delete, exchange by exchange: ${steps.join(' -> ')}`);
      expect(steps).toEqual([
        'HEAD 200', // the tag exists
        'DELETE 404', // deletes are allowed: an absent digest is MANIFEST_UNKNOWN, not 405
        'HEAD 404', // the empty config blob is not in the repository yet
        'POST 202', // upload session
        'PUT 201', // empty config blob
        'PUT 201', // throwaway manifest under the tag
        'HEAD 200', // the tag still points at the throwaway
        'DELETE 202', // throwaway deleted by digest, and with it the tag
      ]);

      expect(await tagsOf(client, 'tagonly/app')).toEqual(['a', 'c']);
      expect(await digestOf(client, 'tagonly/app', 'a')).toBe(image.digest);
      expect(await digestOf(client, 'tagonly/app', 'c')).toBe(image.digest);
      expect((await client.getManifest('tagonly/app', image.digest)).digest).toBe(image.digest);
      await expectImageIntact(pusher, image);
      expect(await manifestStatus(registry, 'tagonly/app', result.throwawayDigest!)).toBe(404);

      steps.length = 0;
      expect(await recorded.deleteTag('tagonly/app', 'b', V2)).toEqual({
        method: 'throwaway-manifest',
        alreadyGone: true,
      });
      // a tag already gone costs one HEAD and writes nothing
      expect(steps).toEqual(['HEAD 404']);
      expect(await tagsOf(client, 'tagonly/app')).toEqual(['a', 'c']);
    } finally {
      await recorded.close();
    }
  });

  it('deletes the only tag of an image and leaves the manifest untagged', async () => {
    const image = await pusher.pushImage('tagonly/single', ['only']);
    const result = await client.deleteTag('tagonly/single', 'only', V2);
    expect(result.alreadyGone).toBe(false);
    expect(await tagsOf(client, 'tagonly/single')).toEqual([]);
    expect(await manifestStatus(registry, 'tagonly/single', image.digest)).toBe(200);
    await expectImageIntact(pusher, image);
  });

  it('deletes one tag of a multi-arch index and keeps the index and its children', async () => {
    const index = await pusher.pushIndex(
      'tagonly/multi',
      ['1.0', 'latest'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
    );
    const result = await client.deleteTag('tagonly/multi', '1.0', V2);
    expect(result).toMatchObject({
      method: 'throwaway-manifest',
      alreadyGone: false,
      previousDigest: index.digest,
    });
    expect(await tagsOf(client, 'tagonly/multi')).toEqual(['latest']);
    expect(await digestOf(client, 'tagonly/multi', 'latest')).toBe(index.digest);
    const fetched = await client.getManifest('tagonly/multi', 'latest');
    expect(fetched.digest).toBe(index.digest);
    for (const child of index.children) {
      expect((await client.getManifest('tagonly/multi', child.digest)).digest).toBe(child.digest);
      await expectImageIntact(pusher, child);
    }
  });

  it('falls back to the throwaway method when a registry recorded as 3.x answers like 2.x', async () => {
    const image = await pusher.pushImage('tagonly/fallback', ['x', 'y']);
    const { steps, options } = recorder();
    const recorded = new RegistryClient(target(registry), options);
    try {
      const result = await recorded.deleteTag('tagonly/fallback', 'x', { distributionVersion: '3.x' });
      expect(result).toMatchObject({ method: 'throwaway-manifest', alreadyGone: false });
      // 2.8 reads the tag as a digest: 400 DIGEST_INVALID, and nothing is deleted
      expect(steps[0]).toBe('DELETE 400');
    } finally {
      await recorded.close();
    }
    expect(await tagsOf(client, 'tagonly/fallback')).toEqual(['y']);
    expect(await digestOf(client, 'tagonly/fallback', 'y')).toBe(image.digest);
  });

  it('deletes a manifest by digest with every tag on it, and a second delete is already gone', async () => {
    const image = await pusher.pushImage('bydigest/app', ['p', 'q']);
    const kept = await pusher.pushImage('bydigest/app', ['other']);
    expect(await client.deleteManifest('bydigest/app', image.digest)).toEqual({
      status: 202,
      alreadyGone: false,
    });
    expect(await tagsOf(client, 'bydigest/app')).toEqual(['other']);
    expect(await digestOf(client, 'bydigest/app', 'other')).toBe(kept.digest);
    expect(await manifestStatus(registry, 'bydigest/app', image.digest)).toBe(404);
    expect(await client.deleteManifest('bydigest/app', image.digest)).toEqual({
      status: 404,
      alreadyGone: true,
    });
    // an unknown repository is as gone as an unknown manifest
    expect(await client.deleteManifest('bydigest/never-pushed', image.digest)).toEqual({
      status: 404,
      alreadyGone: true,
    });
  });

  it('accepts only digests for manifest deletes and only valid tags for tag deletes', async () => {
    const image = await pusher.pushImage('validate/app', ['latest']);
    expect((await rejection(client.deleteManifest('validate/app', 'latest'))).code).toBe('DIGEST_INVALID');
    expect((await rejection(client.deleteTag('validate/app', image.digest, V2))).code).toBe('TAG_INVALID');
    expect((await rejection(client.deleteTag('Validate/App', 'latest', V2))).code).toBe('NAME_INVALID');
    expect(await digestOf(client, 'validate/app', 'latest')).toBe(image.digest);
  });

  it('refuses with TAG_CHANGED, and deletes nothing, when the tag is pushed to mid-delete', async () => {
    const image = await pusher.pushImage('race/app', ['a', 'b', 'c']);
    let pushed: PushedImage | undefined;
    const racing = new InterceptingClient(target(registry), OPTIONS, async (opts, next) => {
      const res = await next();
      // right after the throwaway landed on the tag, someone pushes a new image to it
      if (opts.method === 'PUT' && opts.path === 'race/app/manifests/b' && res.statusCode === 201) {
        pushed = await pusher.pushImage('race/app', ['b']);
      }
      return res;
    });
    try {
      const err = await rejection(racing.deleteTag('race/app', 'b', V2));
      expect(err.code).toBe('TAG_CHANGED');
      expect(err.status).toBe(409);
      expect(err.details).toMatchObject({
        repository: 'race/app',
        tag: 'b',
        currentDigest: pushed!.digest,
        previousDigest: image.digest,
      });
      expect(err.message).toContain('was not deleted');
      // the new push wins; the throwaway is left untagged, nothing else changed
      expect(await tagsOf(client, 'race/app')).toEqual(['a', 'b', 'c']);
      expect(await digestOf(client, 'race/app', 'b')).toBe(pushed!.digest);
      expect(await digestOf(client, 'race/app', 'a')).toBe(image.digest);
      const throwaway = await client.getManifest('race/app', err.details!.throwawayDigest as string);
      expect(throwaway.json).toMatchObject({
        config: EMPTY_CONFIG,
        layers: [],
        annotations: { [THROWAWAY_FOR]: 'b' },
      });
      await expectImageIntact(pusher, image);
    } finally {
      await racing.close();
    }
  });

  it('reports TAG_DELETE_INCOMPLETE when the throwaway cannot be deleted, and a retry finishes', async () => {
    const image = await pusher.pushImage('resume/app', ['a', 'b', 'c']);
    const failing = new InterceptingClient(target(registry), OPTIONS, (opts, next) => {
      if (isThrowawayDelete(opts)) {
        return Promise.reject(
          new UpstreamError('REGISTRY_UNREACHABLE', 'connection reset', 502, 'under-test', null, null),
        );
      }
      return next();
    });
    let throwawayDigest: string;
    try {
      const err = await rejection(failing.deleteTag('resume/app', 'b', V2));
      expect(err.code).toBe('TAG_DELETE_INCOMPLETE');
      expect(err.details).toMatchObject({
        repository: 'resume/app',
        tag: 'b',
        previousDigest: image.digest,
        cause: { code: 'REGISTRY_UNREACHABLE', retryable: true },
      });
      throwawayDigest = err.details!.throwawayDigest as string;
      expect(err.message).toContain(`now points at the throwaway manifest ${throwawayDigest}`);
      expect(await digestOf(client, 'resume/app', 'b')).toBe(throwawayDigest);
      expect(await digestOf(client, 'resume/app', 'a')).toBe(image.digest);
    } finally {
      await failing.close();
    }

    const { steps, options } = recorder();
    const retrying = new RegistryClient(target(registry), options);
    try {
      // the retry recognises its own throwaway: no second throwaway, just the delete
      expect(await retrying.deleteTag('resume/app', 'b', V2)).toEqual({
        method: 'throwaway-manifest',
        throwawayDigest,
        previousDigest: undefined,
        alreadyGone: false,
      });
      expect(steps).toEqual(['HEAD 200', 'GET 200', 'HEAD 200', 'DELETE 202']);
    } finally {
      await retrying.close();
    }
    expect(await tagsOf(client, 'resume/app')).toEqual(['a', 'c']);
    expect(await manifestStatus(registry, 'resume/app', throwawayDigest)).toBe(404);
    await expectImageIntact(pusher, image);
  });
});

describe('RegistryClient deletes on registries that refuse them', () => {
  let disabled: RegistryProcess;
  let readOnly: RegistryProcess;
  let disabledImage: PushedImage;
  let readOnlyImage: PushedImage;

  beforeAll(async () => {
    [disabled, readOnly] = await Promise.all([
      RegistryProcess.start({ deleteEnabled: false }),
      RegistryProcess.start(),
    ]);
    const pushers = [new ImagePusher(disabled.url), new ImagePusher(readOnly.url)];
    try {
      disabledImage = await pushers[0].pushImage('app', ['one', 'two']);
      readOnlyImage = await pushers[1].pushImage('app', ['one', 'two']);
    } finally {
      await Promise.all(pushers.map((p) => p.close()));
    }
    await readOnly.restart({ readOnly: true });
  });

  afterAll(async () => {
    await disabled?.cleanup();
    await readOnly?.cleanup();
  });

  it('answers DELETE_DISABLED when storage.delete is off, before writing anything', async () => {
    const client = new RegistryClient(target(disabled), OPTIONS);
    try {
      const byDigest = await rejection(client.deleteManifest('app', disabledImage.digest));
      expect(byDigest).toMatchObject({ code: 'DELETE_DISABLED', status: 409 });
      expect(byDigest.details).toMatchObject({ upstreamStatus: 405, upstreamCode: 'UNSUPPORTED' });
      for (const version of ['2.x', '3.x', null]) {
        const byTag = await rejection(client.deleteTag('app', 'two', { distributionVersion: version }));
        expect(byTag.code).toBe('DELETE_DISABLED');
      }
      // pushes still work on such a registry: the tag must not have been moved to a throwaway
      expect(await digestOf(client, 'app', 'two')).toBe(disabledImage.digest);
      expect(await tagsOf(client, 'app')).toEqual(['one', 'two']);
      expect(await blobStatus(disabled, 'app', EMPTY_CONFIG.digest)).toBe(404);
    } finally {
      await client.close();
    }
  });

  it('answers REGISTRY_READ_ONLY in read-only maintenance mode', async () => {
    const { steps, options } = recorder();
    const client = new RegistryClient(target(readOnly), options);
    try {
      const byDigest = await rejection(client.deleteManifest('app', readOnlyImage.digest));
      expect(byDigest).toMatchObject({ code: 'REGISTRY_READ_ONLY', status: 409 });
      expect(byDigest.details).toMatchObject({ upstreamStatus: 405, upstreamCode: null });
      for (const version of ['2.x', '3.x', null]) {
        const byTag = await rejection(client.deleteTag('app', 'two', { distributionVersion: version }));
        expect(byTag.code).toBe('REGISTRY_READ_ONLY');
      }
      console.log(`[fact] 2.8 read-only: ${steps.join(' -> ')}`);
      expect(await tagsOf(client, 'app')).toEqual(['one', 'two']);
      expect(await digestOf(client, 'app', 'two')).toBe(readOnlyImage.digest);
    } finally {
      await client.close();
    }
  });

  it('answers DELETE_DISABLED on a pull-through cache', async () => {
    // the cache's upstream: the delete-disabled registry, which holds an image to pull through
    const cache = await RegistryProcess.start({ proxyRemoteUrl: disabled.url });
    const client = new RegistryClient(target(cache), OPTIONS);
    try {
      expect(await digestOf(client, 'app', 'one')).toBe(disabledImage.digest);
      expect((await rejection(client.deleteManifest('app', disabledImage.digest))).code).toBe(
        'DELETE_DISABLED',
      );
      expect((await rejection(client.deleteTag('app', 'one', V2))).code).toBe('DELETE_DISABLED');
      expect(await digestOf(client, 'app', 'one')).toBe(disabledImage.digest);
    } finally {
      await client.close();
      await cache.cleanup();
    }
  });
});

describe('RegistryClient deletes with credentials', () => {
  const credentials = { username: 'ci', password: 'delete-pass' };
  let basicRegistry: RegistryProcess;

  beforeAll(async () => {
    basicRegistry = await RegistryProcess.start({ basicAuth: credentials });
  });

  afterAll(async () => {
    await basicRegistry?.cleanup();
  });

  it('deletes tags and manifests on a basic-auth registry', async () => {
    const pusher = new ImagePusher(basicRegistry.url, credentials);
    const client = new RegistryClient(target(basicRegistry, { type: 'basic', ...credentials }), OPTIONS);
    const anonymous = new RegistryClient(target(basicRegistry), OPTIONS);
    try {
      const image = await pusher.pushImage('secured/app', ['a', 'b']);
      const other = await pusher.pushImage('secured/app', ['z']);
      expect((await rejection(anonymous.deleteTag('secured/app', 'b', V2))).code).toBe(
        'UNAUTHORIZED_UPSTREAM',
      );
      expect(await client.deleteTag('secured/app', 'b', V2)).toMatchObject({ alreadyGone: false });
      expect(await tagsOf(client, 'secured/app')).toEqual(['a', 'z']);
      expect(await digestOf(client, 'secured/app', 'a')).toBe(image.digest);
      expect(await client.deleteManifest('secured/app', other.digest)).toEqual({
        status: 202,
        alreadyGone: false,
      });
      expect(await tagsOf(client, 'secured/app')).toEqual(['a']);
      await expectImageIntact(pusher, image);
    } finally {
      await Promise.all([pusher.close(), client.close(), anonymous.close()]);
    }
  });

  it('asks a token server for pull, push and delete, and writes nothing without push rights', async () => {
    const tokens = await TokenServer.start({
      users: { gateway: 'gateway-pass', pruner: 'pruner-pass' },
      service: 'registry-client-test',
      issuer: 'registry-client-test-issuer',
      // `pruner` may pull and delete but not push: the tag-only delete on 2.x needs a push
      grant: (who, scope) => (who === 'pruner' ? scope.actions.filter((a) => a !== 'push') : scope.actions),
    });
    // images go in before token auth is switched on: the test pusher speaks basic auth only
    const registry = await RegistryProcess.start();
    try {
      const pusher = new ImagePusher(registry.url);
      const image = await pusher.pushImage('team/app', ['a', 'b', 'c']);
      await pusher.close();
      await registry.restart({
        tokenAuth: {
          realm: tokens.realm,
          service: tokens.service,
          issuer: tokens.issuer,
          rootCertBundle: tokens.certPath,
        },
      });
      const as = (username: string, password: string) =>
        new RegistryClient(target(registry, { type: 'bearer', username, password }), OPTIONS);

      const pruner = as('pruner', 'pruner-pass');
      try {
        const err = await rejection(pruner.deleteTag('team/app', 'b', V2));
        expect(err.code).toBe('FORBIDDEN_UPSTREAM');
      } finally {
        await pruner.close();
      }

      const gateway = as('gateway', 'gateway-pass');
      try {
        expect(await digestOf(gateway, 'team/app', 'b')).toBe(image.digest);
        const mark = tokens.requests.length;
        expect(await gateway.deleteTag('team/app', 'b', V2)).toMatchObject({ alreadyGone: false });
        // 2.8 lists a challenge's actions in random order (`pull,push` or `push,pull`): compare them as sets
        const scopes = new Set(
          tokens.requests
            .slice(mark)
            .flatMap((r) => r.scopes)
            .map((scope) => scope.replace(/[^:]+$/, (actions) => actions.split(',').sort().join(','))),
        );
        expect([...scopes].sort()).toEqual(['repository:team/app:delete', 'repository:team/app:pull,push']);
        expect(await tagsOf(gateway, 'team/app')).toEqual(['a', 'c']);
        expect(await digestOf(gateway, 'team/app', 'a')).toBe(image.digest);
        expect(await gateway.deleteManifest('team/app', image.digest)).toEqual({
          status: 202,
          alreadyGone: false,
        });
        expect(await tagsOf(gateway, 'team/app')).toEqual([]);
      } finally {
        await gateway.close();
      }
    } finally {
      await registry.cleanup();
      await tokens.stop();
    }
  });
});

describe('RegistryClient lists tags page by page, the way the registry links them', () => {
  let registry: RegistryProcess;
  let front: Server;
  let frontUrl: string;
  const asked: string[] = [];

  beforeAll(async () => {
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    await pusher.pushImage('team/paged', ['a', 'b', 'c', 'd', 'e'], { seed: 'paged' });
    await pusher.close();
    // A registry that pages its tags with an opaque cursor in its Link (as some do), in front of a real one
    // (Distribution 2.8 answers every tag at once): it reads only its own `page` token and ignores a
    // `last`, so a client that makes up `last` reads page 1 again.
    front = createServer((req, res) => {
      const url = new URL(req.url!, 'http://front');
      asked.push(url.search);
      void request(`${registry.url}${url.pathname}`).then(async (r) => {
        const all = ((await r.body.json()) as { name: string; tags: string[] }).tags;
        const n = Number(url.searchParams.get('n') ?? 100);
        const from = Number(Buffer.from(url.searchParams.get('page') ?? '', 'base64url').toString() || 0);
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (from + n < all.length)
          headers.link = `<${url.pathname}?n=${n}&page=${Buffer.from(String(from + n)).toString('base64url')}>; rel="next"`;
        res
          .writeHead(r.statusCode, headers)
          .end(JSON.stringify({ name: 'team/paged', tags: all.slice(from, from + n) }));
      });
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => front?.close(resolve));
    await registry?.cleanup();
  });

  it('follows the query of each Link, an opaque cursor included, and reads every tag once', async () => {
    const client = new RegistryClient(
      { name: 'opaque', url: frontUrl, auth: { type: 'none' }, tls: { insecure: false } },
      OPTIONS,
    );
    try {
      const tags = await client.listTags('team/paged', 2);
      expect(tags).toHaveLength(5);
      expect(tags.sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
      expect(asked.slice(1).every((q) => /[?&]page=/.test(q) && !/[?&]last=/.test(q))).toBe(true);
      expect(asked).toHaveLength(3);
    } finally {
      await client.close();
    }
  });
});

describe('RegistryClient on a registry whose blobs live in object storage', () => {
  let registry: RegistryProcess;
  let image: PushedImage;
  let front: Server;
  let storage: Server;
  let frontUrl: string;
  const frontAsked: { method: string; path: string; authorization?: string }[] = [];
  const storageAsked: { method: string; authorization?: string }[] = [];

  const listen = async (server: Server) => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  };
  /** Passes a request on to the real registry and its answer back. */
  const pass = (req: IncomingMessage, res: ServerResponse, path: string) =>
    void request(`${registry.url}${path}`, {
      method: req.method as 'GET',
      headers: { ...req.headers, host: undefined, authorization: undefined },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req,
    }).then(async (r) => {
      const headers = Object.fromEntries(
        Object.entries(r.headers).filter(([k]) => k !== 'transfer-encoding' && k !== 'connection'),
      ) as Record<string, string>;
      if (headers.location) headers.location = headers.location.replace(registry.url, frontUrl);
      res.writeHead(r.statusCode, headers).end(Buffer.from(await r.body.arrayBuffer()));
    });

  beforeAll(async () => {
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    image = await pusher.pushImage('team/s3', ['1'], { seed: 's3' });
    await pusher.close();
    // The storage: another origin (localhost, where the registry is 127.0.0.1), serving what it is sent to.
    storage = createServer((req, res) => {
      storageAsked.push({ method: req.method!, authorization: req.headers.authorization });
      pass(req, res, req.url!);
    });
    const storagePort = await listen(storage);
    // The registry as object storage makes it: blob reads answered with a 307 to the storage's URL.
    front = createServer((req, res) => {
      frontAsked.push({ method: req.method!, path: req.url!, authorization: req.headers.authorization });
      if (/^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/.test(req.url!) && ['GET', 'HEAD'].includes(req.method!))
        res.writeHead(307, { location: `http://localhost:${storagePort}${req.url}?X-Amz-Signature=x` }).end();
      else pass(req, res, req.url!);
    });
    frontUrl = `http://127.0.0.1:${await listen(front)}`;
  });

  afterAll(async () => {
    await Promise.all([front, storage].map((s) => new Promise((resolve) => s?.close(resolve))));
    await registry?.cleanup();
  });

  it('reads a blob where the redirect sends it, without the credentials, and takes a redirect for a blob it has', async () => {
    const client = new RegistryClient(
      {
        name: 's3',
        url: frontUrl,
        auth: { type: 'basic', username: 'ci', password: 'secret' },
        tls: { insecure: false },
      },
      OPTIONS,
    );
    try {
      const config = await client.getBlobJson<{ architecture?: string }>('team/s3', image.config.digest);
      expect(config).toHaveProperty('architecture');
      expect(storageAsked).toEqual([{ method: 'GET', authorization: undefined }]);
      expect(frontAsked[0].authorization).toMatch(/^Basic /);
      // A push of a blob the registry holds (HEAD answered with the redirect) uploads nothing.
      await client.uploadBlob('team/s3', image.config.digest, Buffer.from('unused'));
      expect(frontAsked.map((a) => a.method)).toEqual(['GET', 'HEAD']);
    } finally {
      await client.close();
    }
  });
});
