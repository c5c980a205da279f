import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { MEDIA_TYPES, sha256, tarSingleFile } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';
import { TokenServer, TokenRequestRecord } from './support/token-server.js';

const SERVICE = 'registry-gateway-test';
const ISSUER = 'registry-gateway-test-issuer';
const USERS = { pusher: 'push-pass', gateway: 'gateway-pass', outsider: 'outsider-pass' };
const CREATED = '2024-01-01T00:00:00.000Z';

interface TinyImage {
  digest: string;
  configDigest: string;
  layerDigest: string;
  totalSize: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The parameters of a registry's `WWW-Authenticate: Bearer ...` answer to an anonymous request. */
async function bearerChallenge(url: string, method = 'GET'): Promise<Record<string, string>> {
  const res = await fetch(url, { method });
  await res.arrayBuffer();
  expect(res.status).toBe(401);
  const header = res.headers.get('www-authenticate') ?? '';
  expect(header).toMatch(/^Bearer /);
  return Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

/**
 * Pushes a one-layer Docker schema 2 image the way docker does under token auth: the registry's
 * challenge names the realm and scope, the token server issues a push token, the upload carries it.
 */
async function pushImage(
  registry: RegistryProcess,
  tokens: TokenServer,
  repository: string,
  tags: string[],
  seed: string,
): Promise<TinyImage> {
  const challenge = await bearerChallenge(`${registry.url}/v2/${repository}/blobs/uploads/`, 'POST');
  expect(challenge).toMatchObject({ realm: tokens.realm, service: SERVICE });
  const token = await tokens.fetchToken('pusher', USERS.pusher, [challenge.scope]);
  const send = async (method: string, url: string, expected: number, body?: Buffer, type?: string) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (type) headers['content-type'] = type;
    const res = await fetch(new URL(url, registry.url), {
      method,
      headers,
      body: body && new Uint8Array(body),
    });
    const text = await res.text();
    if (res.status !== expected) throw new Error(`${method} ${url} answered ${res.status}: ${text}`);
    return res;
  };
  const pushBlob = async (bytes: Buffer) => {
    const digest = sha256(bytes);
    const started = await send('POST', `/v2/${repository}/blobs/uploads/`, 202);
    const location = new URL(started.headers.get('location') ?? '', registry.url);
    location.searchParams.set('digest', digest);
    await send('PUT', location.href, 201, bytes, 'application/octet-stream');
    return { digest, size: bytes.length };
  };

  const tar = tarSingleFile('seed.txt', Buffer.from(`layer of ${seed}\n`));
  const layer = await pushBlob(gzipSync(tar));
  const config = await pushBlob(
    Buffer.from(
      JSON.stringify({
        created: CREATED,
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      }),
    ),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerManifest,
      config: { mediaType: MEDIA_TYPES.dockerConfig, ...config },
      layers: [{ mediaType: MEDIA_TYPES.dockerLayer, ...layer }],
    }),
  );
  for (const tag of tags) {
    await send('PUT', `/v2/${repository}/manifests/${tag}`, 201, manifest, MEDIA_TYPES.dockerManifest);
  }
  return {
    digest: sha256(manifest),
    configDigest: config.digest,
    layerDigest: layer.digest,
    totalSize: config.size + layer.size,
  };
}

describe('bearer token auth with a real token server and a token-auth registry', () => {
  let tokens: TokenServer;
  let registry: RegistryProcess;
  let env: TestEnvironment;
  let gw: TestGateway;
  let app: TinyImage;
  let appOld: TinyImage;
  let base: TinyImage;
  const http = () => adminRequest(gw.server);
  /** Token requests the gateway made since `mark` (an index into tokens.requests). */
  const gatewayRequestsSince = (mark: number): TokenRequestRecord[] =>
    tokens.requests.slice(mark).filter((r) => r.user === 'gateway');
  const register = (name: string, password: string) =>
    http()
      .post('/api/v1/registries')
      .send({ name, url: registry.url, auth: { type: 'bearer', username: 'gateway', password } })
      .expect(201);

  beforeAll(async () => {
    env = await TestEnvironment.create('bearer');
    tokens = await TokenServer.start({
      users: USERS,
      service: SERVICE,
      issuer: ISSUER,
      // `outsider` is a valid user with no rights on team/app.
      grant: (who, scope) =>
        who === 'outsider' && scope.name === 'team/app' ? [] : who !== null ? scope.actions : [],
    });
    registry = await RegistryProcess.start({
      tokenAuth: { realm: tokens.realm, service: SERVICE, issuer: ISSUER, rootCertBundle: tokens.certPath },
    });
    app = await pushImage(registry, tokens, 'team/app', ['1.0', 'latest'], 'app');
    appOld = await pushImage(registry, tokens, 'team/app', ['0.9'], 'app-old');
    base = await pushImage(registry, tokens, 'library/base', ['3'], 'base');
    gw = await startApi(env);
  });

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await tokens?.stop();
    await env?.destroy();
  });

  it('runs a registry that refuses anonymous and basic requests and challenges with the realm', async () => {
    expect(await bearerChallenge(`${registry.url}/v2/`)).toEqual({ realm: tokens.realm, service: SERVICE });
    expect(await bearerChallenge(`${registry.url}/v2/_catalog`)).toEqual({
      realm: tokens.realm,
      service: SERVICE,
      scope: 'registry:catalog:*',
    });
    const basic = await fetch(`${registry.url}/v2/team/app/tags/list`, {
      headers: { authorization: `Basic ${Buffer.from(`gateway:${USERS.gateway}`).toString('base64')}` },
    });
    expect(basic.status).toBe(401);
    // A valid token without the scope a request needs is refused too.
    const pullOnly = await tokens.fetchToken('pusher', USERS.pusher, ['repository:team/app:pull']);
    const other = await fetch(`${registry.url}/v2/library/base/tags/list`, {
      headers: { authorization: `Bearer ${pullOnly}` },
    });
    expect(other.status).toBe(401);
    expect(other.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
    const own = await fetch(`${registry.url}/v2/team/app/tags/list`, {
      headers: { authorization: `Bearer ${pullOnly}` },
    });
    const ownBody = (await own.json()) as { name: string; tags: string[] };
    expect(ownBody.tags.sort()).toEqual(['0.9', '1.0', 'latest']);
    // The token server answers wrong credentials with a 401, and by default anonymous callers too.
    const anonymous = new URL(tokens.realm);
    anonymous.search = new URLSearchParams({
      service: SERVICE,
      scope: 'repository:team/app:pull',
    }).toString();
    expect((await fetch(anonymous)).status).toBe(401);
    await expect(tokens.fetchToken('pusher', 'wrong', ['repository:team/app:pull'])).rejects.toThrow(/401/);
  });

  it('registers the registry: the probe gets tokens and reports auth ok', async () => {
    const mark = tokens.requests.length;
    const res = await register('tokened', USERS.gateway);
    expect(res.body).toMatchObject({ name: 'tokened', authType: 'bearer', hasPassword: true });
    expect(res.body.probe).toMatchObject({
      reachable: true,
      apiVersion: 'registry/2.0',
      auth: 'ok',
      deletes: 'enabled',
      distributionVersion: '2.x',
      error: null,
    });
    expect(JSON.stringify(res.body)).not.toContain(USERS.gateway);
    const asked = gatewayRequestsSince(mark);
    expect(asked.every((r) => r.authenticated && r.status === 200 && r.service === SERVICE)).toBe(true);
    // GET /v2/ needs no resource: the challenge names no scope, and the token request must not invent one.
    expect(asked[0].scopes).toEqual([]);
    expect(asked.map((r) => r.scopes)).toContainEqual(['registry:catalog:*']);
  });

  it('lists repositories through the registry:catalog:* scope', async () => {
    const res = await http().get('/api/v1/registries/tokened/repositories').expect(200);
    expect(res.body).toEqual({
      items: [
        { name: 'library/base', tagCount: 1 },
        { name: 'team/app', tagCount: 3 },
      ],
      nextCursor: null,
    });
    const catalogGrants = tokens.requests
      .filter((r) => r.user === 'gateway' && r.scopes.includes('registry:catalog:*'))
      .map((r) => r.granted);
    expect(catalogGrants).toContainEqual([{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });

  it('reads tags and manifests, with one token per scope reused until it expires', async () => {
    const mark = tokens.requests.length;
    const first = await http().get('/api/v1/registries/tokened/repositories/library/base/tags').expect(200);
    expect(first.body).toEqual({
      registry: 'tokened',
      repository: 'library/base',
      items: [
        {
          name: '3',
          digest: base.digest,
          mediaType: MEDIA_TYPES.dockerManifest,
          size: base.totalSize,
          created: CREATED,
          platforms: [{ os: 'linux', architecture: 'amd64' }],
          missingManifests: [],
        },
      ],
    });

    const tags = await http().get('/api/v1/registries/tokened/repositories/team/app/tags').expect(200);
    expect(tags.body.items.map((t: { name: string; digest: string }) => [t.name, t.digest])).toEqual([
      ['0.9', appOld.digest],
      ['1.0', app.digest],
      ['latest', app.digest],
    ]);

    const again = await http().get('/api/v1/registries/tokened/repositories/team/app/tags').expect(200);
    expect(again.body).toEqual(tags.body);
    const manifest = await http()
      .get('/api/v1/registries/tokened/repositories/team/app/manifests/latest')
      .expect(200);
    expect(manifest.body).toMatchObject({
      registry: 'tokened',
      repository: 'team/app',
      reference: 'latest',
      digest: app.digest,
      mediaType: MEDIA_TYPES.dockerManifest,
      totalSize: app.totalSize,
      tags: ['1.0', 'latest'],
      config: { digest: app.configDigest, os: 'linux', architecture: 'amd64' },
    });
    expect(manifest.body.layers.map((l: { digest: string }) => l.digest)).toEqual([app.layerDigest]);
    const byDigest = await http()
      .get(`/api/v1/registries/tokened/repositories/team/app/manifests/${appOld.digest}`)
      .expect(200);
    expect(byDigest.body.tags).toEqual(['0.9']);

    // Every one of those calls needed repository:<name>:pull, which the catalog listing already got.
    expect(gatewayRequestsSince(mark)).toEqual([]);
  });

  it('asks for a token once per scope, and again once the cached one has expired', async () => {
    // A client of its own (a new registry entry) starts with an empty token cache.
    tokens.expiresIn = 2;
    try {
      await register('tokened-short', USERS.gateway);
      const mark = tokens.requests.length;
      await http().get('/api/v1/registries/tokened-short/repositories/team/app/tags').expect(200);
      const cachedAt = Date.now();
      expect(gatewayRequestsSince(mark).map((r) => r.scopes)).toEqual([['repository:team/app:pull']]);
      // Tokens from the same server, straight to the registry: they expire (exp) in 2 s.
      const early = await tokens.fetchToken('pusher', USERS.pusher, ['repository:team/app:pull']);

      await http().get('/api/v1/registries/tokened-short/repositories/team/app/tags').expect(200);
      await http().get('/api/v1/registries/tokened-short/repositories/team/app/manifests/1.0').expect(200);
      expect(gatewayRequestsSince(mark)).toHaveLength(1);

      // The client keeps a token for expires_in - 10 s, at least 5 s: here 5 s.
      await sleep(Math.max(0, cachedAt + 5_300 - Date.now()));
      await http().get('/api/v1/registries/tokened-short/repositories/team/app/tags').expect(200);
      expect(gatewayRequestsSince(mark).map((r) => r.scopes)).toEqual([
        ['repository:team/app:pull'],
        ['repository:team/app:pull'],
      ]);

      // Why the 5 s floor is harmless with distribution: it accepts tokens up to 60 s past their exp.
      const late = await fetch(`${registry.url}/v2/team/app/tags/list`, {
        headers: { authorization: `Bearer ${early}` },
      });
      expect(late.status).toBe(200);
    } finally {
      tokens.expiresIn = 300;
    }
  });

  it('replaces a cached token the registry rejects (the token server rotated its key)', async () => {
    await http().get('/api/v1/registries/tokened/repositories/team/app/tags').expect(200);
    await tokens.rotateKey();
    await registry.restart();
    const mark = tokens.requests.length;
    // The cached token is signed by the old key: 401 invalid_token, a new token, a retry.
    const res = await http().get('/api/v1/registries/tokened/repositories/team/app/tags').expect(200);
    expect(res.body.items.map((t: { name: string }) => t.name)).toEqual(['0.9', '1.0', 'latest']);
    expect(gatewayRequestsSince(mark).map((r) => [r.scopes, r.status])).toEqual([
      [['repository:team/app:pull'], 200],
    ]);
  });

  it('reports rejected credentials in the probe and answers 502 UNAUTHORIZED_UPSTREAM', async () => {
    const mark = tokens.requests.length;
    const res = await register('tokened-bad', 'not-the-password');
    expect(res.body.probe).toMatchObject({
      reachable: true,
      auth: 'failed',
      error: { code: 'UNAUTHORIZED_UPSTREAM' },
    });
    const refused = gatewayRequestsSince(mark);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => !r.authenticated && r.status === 401)).toBe(true);

    for (const path of [
      'repositories',
      'repositories/team/app/tags',
      'repositories/team/app/manifests/1.0',
    ]) {
      const call = await http().get(`/api/v1/registries/tokened-bad/${path}`).expect(502);
      expect(call.body.error).toMatchObject({
        code: 'UNAUTHORIZED_UPSTREAM',
        details: { registry: 'tokened-bad' },
      });
      expect(JSON.stringify(call.body)).not.toContain('not-the-password');
    }
  });

  it('answers 502 FORBIDDEN_UPSTREAM when valid credentials lack the scope', async () => {
    await http()
      .post('/api/v1/registries')
      .send({
        name: 'outsider',
        url: registry.url,
        auth: { type: 'bearer', username: 'outsider', password: USERS.outsider },
      })
      .expect(201);
    const denied = await http().get('/api/v1/registries/outsider/repositories/team/app/tags').expect(502);
    expect(denied.body.error).toMatchObject({
      code: 'FORBIDDEN_UPSTREAM',
      details: { registry: 'outsider' },
    });
    await http().get('/api/v1/registries/outsider/repositories/library/base/tags').expect(200);
  });
});
