import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher, PushedImage, PushedIndex } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

const FULL_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

describe('registries and catalog on real registries', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let plain: RegistryProcess;
  let secured: RegistryProcess;
  let alpine: PushedImage;
  let multi: PushedIndex;
  let privateImage: PushedImage;
  const http = () => adminRequest(gw.server);

  beforeAll(async () => {
    env = await TestEnvironment.create('catalog');
    [plain, secured] = await Promise.all([
      RegistryProcess.start(),
      RegistryProcess.start({ basicAuth: { username: 'ci', password: 's3cret-pass' } }),
    ]);
    const pusher = new ImagePusher(plain.url);
    alpine = await pusher.pushImage('library/alpine', ['3.19', 'latest'], {
      format: 'docker',
      layers: 2,
      seed: 'alpine',
    });
    await pusher.pushImage('library/alpine', ['3.18'], {
      format: 'docker',
      seed: 'alpine-old',
      created: new Date('2023-05-01T00:00:00Z'),
    });
    multi = await pusher.pushIndex(
      'team-a/api',
      ['v1'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
    );
    await pusher.pushImage('team-a/worker', ['1.0'], { seed: 'worker' });
    // A repository whose only manifest was deleted stays in _catalog with no tags.
    const gone = await pusher.pushImage('team-b/gone', ['old'], { seed: 'gone' });
    const del = await fetch(`${plain.url}/v2/team-b/gone/manifests/${gone.digest}`, { method: 'DELETE' });
    expect(del.status).toBe(202);
    await pusher.close();
    const securedPusher = new ImagePusher(secured.url, { username: 'ci', password: 's3cret-pass' });
    privateImage = await securedPusher.pushImage('private/app', ['1'], { seed: 'private' });
    await securedPusher.close();
    gw = await startApi(env);
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([plain?.cleanup(), secured?.cleanup()]);
    await env?.destroy();
  });

  describe('registries', () => {
    it('registers a registry and reports what the probe learned', async () => {
      const res = await http()
        .post('/api/v1/registries')
        .send({ name: 'plain', url: plain.url, tls: { insecure: true } })
        .expect(201);
      expect(res.body).toMatchObject({
        name: 'plain',
        url: plain.url,
        authType: 'none',
        source: 'api',
        hasPassword: false,
      });
      expect(res.body.probe).toMatchObject({
        reachable: true,
        apiVersion: 'registry/2.0',
        auth: 'not-required',
        deletes: 'enabled',
        distributionVersion: '2.x',
        error: null,
      });
    });

    it('stores basic-auth passwords encrypted and never returns them', async () => {
      const res = await http()
        .post('/api/v1/registries')
        .send({
          name: 'secured',
          url: secured.url,
          auth: { type: 'basic', username: 'ci', password: 's3cret-pass' },
        })
        .expect(201);
      expect(res.body.probe).toMatchObject({ reachable: true, auth: 'ok' });
      expect(res.body.hasPassword).toBe(true);
      expect(JSON.stringify(res.body)).not.toContain('s3cret-pass');
      const [row] = await env.query<{ password_sealed: string }>(
        "SELECT password_sealed FROM registries WHERE name = 'secured'",
      );
      expect(row.password_sealed).toMatch(/^v1\./);
      expect(row.password_sealed).not.toContain('s3cret-pass');
      const list = await http().get('/api/v1/registries').expect(200);
      expect(list.body.items.map((r: { name: string }) => r.name)).toEqual(['plain', 'secured']);
      expect(JSON.stringify(list.body)).not.toContain('s3cret-pass');
    });

    it('reports failing credentials and an unreachable registry in the probe', async () => {
      const bad = await http()
        .post('/api/v1/registries')
        .send({
          name: 'wrong-pass',
          url: secured.url,
          auth: { type: 'basic', username: 'ci', password: 'nope' },
        })
        .expect(201);
      expect(bad.body.probe).toMatchObject({
        reachable: true,
        auth: 'failed',
        error: { code: 'UNAUTHORIZED_UPSTREAM' },
      });
      const down = await http()
        .post('/api/v1/registries')
        .send({
          name: 'nowhere',
          url: 'http://127.0.0.1:9',
          auth: { type: 'basic', username: 'ci', password: 'x' },
        })
        .expect(201);
      // Nothing answered: no verdict on the credentials.
      expect(down.body.probe).toMatchObject({
        reachable: false,
        auth: 'unknown',
        error: { code: 'REGISTRY_UNREACHABLE' },
      });
      const health = await http().get('/api/v1/registries/nowhere/health').expect(200);
      expect(health.body.reachable).toBe(false);
      await http().delete('/api/v1/registries/wrong-pass').expect(204);
      await http().delete('/api/v1/registries/nowhere').expect(204);
      await http().get('/api/v1/registries/nowhere').expect(404);
    });

    it('tells delete-disabled from read-only registries', async () => {
      const [disabled, readonly] = await Promise.all([
        RegistryProcess.start({ deleteEnabled: false }),
        RegistryProcess.start({ readOnly: true }),
      ]);
      try {
        const a = await http()
          .post('/api/v1/registries')
          .send({ name: 'no-delete', url: disabled.url })
          .expect(201);
        expect(a.body.probe.deletes).toBe('disabled');
        const b = await http()
          .post('/api/v1/registries')
          .send({ name: 'read-only', url: readonly.url })
          .expect(201);
        expect(b.body.probe.deletes).toBe('read-only');
      } finally {
        await http().delete('/api/v1/registries/no-delete');
        await http().delete('/api/v1/registries/read-only');
        await Promise.all([disabled.cleanup(), readonly.cleanup()]);
      }
    });

    it('rejects bad input with stable codes', async () => {
      const bad = await http()
        .post('/api/v1/registries')
        .send({ name: 'Bad Name', url: 'ftp://x' })
        .expect(400);
      expect(bad.body.error.code).toBe('VALIDATION_FAILED');
      expect(bad.body.error.message).toContain('name must be');
      const creds = await http()
        .post('/api/v1/registries')
        .send({ name: 'creds', url: 'http://u:p@127.0.0.1:1' })
        .expect(400);
      expect(creds.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'url' } });
      const dup = await http().post('/api/v1/registries').send({ name: 'plain', url: plain.url }).expect(409);
      expect(dup.body.error.code).toBe('REGISTRY_EXISTS');
      const extra = await http()
        .post('/api/v1/registries')
        .send({ name: 'x', url: plain.url, admin: true })
        .expect(400);
      expect(extra.body.error.code).toBe('VALIDATION_FAILED');
      const missing = await http().get('/api/v1/registries/not-there').expect(404);
      expect(missing.body.error.code).toBe('REGISTRY_NOT_FOUND');
      const rename = await http().patch('/api/v1/registries/plain').send({ name: 'other' }).expect(400);
      expect(rename.body.error.code).toBe('VALIDATION_FAILED');
    });

    it('manages registries through GraphQL mutations too', async () => {
      const gql = (query: string) => http().post('/graphql').send({ query }).expect(200);
      const created = await gql(
        `mutation { createRegistry(input: { name: "gql", url: "${plain.url}", auth: { type: basic, username: "u", password: "p" } }) { name authType hasPassword source probe { reachable auth } } }`,
      );
      expect(created.body.data.createRegistry).toEqual({
        name: 'gql',
        authType: 'basic',
        hasPassword: true,
        source: 'api',
        probe: { reachable: true, auth: 'ok' },
      });
      const updated = await gql(
        'mutation { updateRegistry(name: "gql", input: { description: "via graphql", auth: { type: none } }) { description authType hasPassword } }',
      );
      expect(updated.body.data.updateRegistry).toEqual({
        description: 'via graphql',
        authType: 'none',
        hasPassword: false,
      });
      const probed = await gql(
        'mutation { probeRegistry(name: "gql") { reachable deletes distributionVersion } }',
      );
      expect(probed.body.data.probeRegistry).toEqual({
        reachable: true,
        deletes: 'enabled',
        distributionVersion: '2.x',
      });
      const invalid = await gql('mutation { createRegistry(input: { name: "Bad!", url: "x" }) { name } }');
      expect(invalid.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
      const deleted = await gql('mutation { deleteRegistry(name: "gql") }');
      expect(deleted.body.data.deleteRegistry).toBe(true);
      const gone = await gql('{ registry(name: "gql") { name } }');
      expect(gone.body.errors[0].extensions.code).toBe('REGISTRY_NOT_FOUND');
    });

    it('refuses oversized and malformed bodies with a code', async () => {
      const big = await http()
        .post('/api/v1/registries')
        .set('content-type', 'application/json')
        .send(JSON.stringify({ name: 'big', url: plain.url, description: 'x'.repeat(2 * 1024 * 1024) }));
      expect(big.status).toBe(413);
      expect(big.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const broken = await http()
        .post('/api/v1/registries')
        .set('content-type', 'application/json')
        .send('{"name": ');
      expect(broken.status).toBe(400);
      expect(broken.body.error.code).toBe('VALIDATION_FAILED');
    });

    it('updates a registry', async () => {
      const res = await http()
        .patch('/api/v1/registries/plain')
        .send({ description: 'CI registry' })
        .expect(200);
      expect(res.body.description).toBe('CI registry');
    });
  });

  describe('catalog', () => {
    it('lists repositories with tags and hides the empty ones', async () => {
      const upstream = (await (await fetch(`${plain.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(upstream.repositories).toContain('team-b/gone');
      const res = await http().get('/api/v1/registries/plain/repositories').expect(200);
      expect(res.body).toEqual({
        items: [
          { name: 'library/alpine', tagCount: 3 },
          { name: 'team-a/api', tagCount: 1 },
          { name: 'team-a/worker', tagCount: 1 },
        ],
        nextCursor: null,
      });
    });

    it('pages with a cursor and filters by substring or glob', async () => {
      const first = await http().get('/api/v1/registries/plain/repositories?limit=2').expect(200);
      expect(first.body.items.map((r: { name: string }) => r.name)).toEqual(['library/alpine', 'team-a/api']);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      const second = await http()
        .get(`/api/v1/registries/plain/repositories?limit=2&cursor=${first.body.nextCursor}`)
        .expect(200);
      expect(second.body).toEqual({ items: [{ name: 'team-a/worker', tagCount: 1 }], nextCursor: null });
      const glob = await http()
        .get('/api/v1/registries/plain/repositories')
        .query({ q: 'team-*/**' })
        .expect(200);
      expect(glob.body.items.map((r: { name: string }) => r.name)).toEqual(['team-a/api', 'team-a/worker']);
      const sub = await http().get('/api/v1/registries/plain/repositories?q=alp').expect(200);
      expect(sub.body.items.map((r: { name: string }) => r.name)).toEqual(['library/alpine']);
      const badCursor = await http().get('/api/v1/registries/plain/repositories?cursor=garbage').expect(400);
      expect(badCursor.body.error.code).toBe('VALIDATION_FAILED');
      const big = await http().get('/api/v1/registries/plain/repositories?limit=5000').expect(400);
      expect(big.body.error.code).toBe('VALIDATION_FAILED');
    });

    it('lists tags with digest, media type, size, created time and platforms', async () => {
      const res = await http().get('/api/v1/registries/plain/repositories/library/alpine/tags').expect(200);
      expect(res.body.repository).toBe('library/alpine');
      const byName = Object.fromEntries(res.body.items.map((t: { name: string }) => [t.name, t]));
      expect(Object.keys(byName)).toEqual(['3.18', '3.19', 'latest']);
      expect(byName['3.19']).toEqual({
        name: '3.19',
        digest: alpine.digest,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        size: alpine.totalSize,
        created: alpine.created,
        platforms: [{ os: 'linux', architecture: 'amd64' }],
        missingManifests: [],
      });
      expect(byName.latest.digest).toBe(alpine.digest);
      expect(byName['3.18'].created).toBe('2023-05-01T00:00:00.000Z');
      expect(byName['3.18'].digest).not.toBe(alpine.digest);
    });

    it('describes a multi-arch index by its own digest, with its platforms', async () => {
      const tags = await http().get('/api/v1/registries/plain/repositories/team-a/api/tags').expect(200);
      const [v1] = tags.body.items;
      expect(v1.digest).toBe(multi.digest);
      expect(v1.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      expect(v1.platforms).toEqual([
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ]);
      expect(v1.size).toBe(multi.children.reduce((n, c) => n + c.totalSize, 0));
      // The digest a client must delete is the one a HEAD with the full Accept list returns.
      const head = await fetch(`${plain.url}/v2/team-a/api/manifests/v1`, {
        method: 'HEAD',
        headers: { accept: FULL_ACCEPT },
      });
      expect(head.headers.get('docker-content-digest')).toBe(v1.digest);
    });

    it('lists a multi-arch tag whose index names a platform manifest the registry lost, and shows which', async () => {
      const pusher = new ImagePusher(plain.url);
      const arm = { os: 'linux', architecture: 'arm64', variant: 'v8' };
      const broken = await pusher.pushIndex(
        'team-a/broken',
        ['v1'],
        [{ os: 'linux', architecture: 'amd64' }, arm],
        {
          seed: 'broken',
        },
      );
      await pusher.pushImage('team-a/broken', ['single'], { seed: 'broken-single' });
      const [amd64, arm64] = broken.children;
      // What Distribution 2.8's GC with --delete-untagged does to a multi-arch image: the index stays,
      // its platform manifest goes.
      const del = await fetch(`${plain.url}/v2/team-a/broken/manifests/${arm64.digest}`, {
        method: 'DELETE',
      });
      expect(del.status).toBe(202);
      try {
        const tags = await http().get('/api/v1/registries/plain/repositories/team-a/broken/tags').expect(200);
        expect(tags.body.items.map((t: { name: string }) => t.name)).toEqual(['single', 'v1']);
        expect(tags.body.items[0].missingManifests).toEqual([]);
        expect(tags.body.items[1]).toEqual({
          name: 'v1',
          digest: broken.digest,
          mediaType: broken.mediaType,
          size: amd64.totalSize,
          created: amd64.created,
          platforms: [{ os: 'linux', architecture: 'amd64' }, arm],
          missingManifests: [arm64.digest],
        });

        const manifest = await http()
          .get('/api/v1/registries/plain/repositories/team-a/broken/manifests/v1')
          .expect(200);
        expect(manifest.body).toMatchObject({
          digest: broken.digest,
          missingManifests: [arm64.digest],
          tags: ['v1'],
        });
        expect(
          manifest.body.children.map((c: { digest: string; missing: boolean }) => [c.digest, c.missing]),
        ).toEqual([
          [amd64.digest, false],
          [arm64.digest, true],
        ]);

        const gql = await http()
          .post('/graphql')
          .send({
            query: `{
              tags(registry: "plain", repository: "team-a/broken") { name missingManifests }
              manifest(registry: "plain", repository: "team-a/broken", reference: "v1") {
                missingManifests children { digest missing platform { architecture } }
              }
            }`,
          })
          .expect(200);
        expect(gql.body.errors).toBeUndefined();
        expect(gql.body.data.tags).toEqual([
          { name: 'single', missingManifests: [] },
          { name: 'v1', missingManifests: [arm64.digest] },
        ]);
        expect(gql.body.data.manifest).toEqual({
          missingManifests: [arm64.digest],
          children: [
            { digest: amd64.digest, missing: false, platform: { architecture: 'amd64' } },
            { digest: arm64.digest, missing: true, platform: { architecture: 'arm64' } },
          ],
        });

        // Pushing the platform manifest again repairs the image, and the listing says so at once.
        await pusher.pushImage('team-a/broken', [], {
          seed: 'broken/linux/arm64/v8',
          platform: arm,
          pushByDigestOnly: true,
        });
        const repaired = await http()
          .get('/api/v1/registries/plain/repositories/team-a/broken/tags')
          .expect(200);
        expect(repaired.body.items[1]).toMatchObject({
          name: 'v1',
          size: amd64.totalSize + arm64.totalSize,
          missingManifests: [],
        });
      } finally {
        await pusher.close();
      }
    });

    it('returns a manifest with every tag that shares its digest', async () => {
      const res = await http()
        .get('/api/v1/registries/plain/repositories/library/alpine/manifests/latest')
        .expect(200);
      expect(res.body).toMatchObject({
        registry: 'plain',
        repository: 'library/alpine',
        reference: 'latest',
        digest: alpine.digest,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        manifestSize: alpine.manifestSize,
        totalSize: alpine.totalSize,
        tags: ['3.19', 'latest'],
        config: {
          digest: alpine.config.digest,
          size: alpine.config.size,
          os: 'linux',
          architecture: 'amd64',
        },
      });
      expect(res.body.layers.map((l: { digest: string }) => l.digest)).toEqual(
        alpine.layers.map((l) => l.digest),
      );
      expect(res.body.manifest.schemaVersion).toBe(2);

      const byDigest = await http()
        .get(`/api/v1/registries/plain/repositories/library/alpine/manifests/${alpine.digest}`)
        .expect(200);
      expect(byDigest.body.tags).toEqual(['3.19', 'latest']);

      const index = await http()
        .get('/api/v1/registries/plain/repositories/team-a/api/manifests/v1')
        .expect(200);
      expect(index.body.digest).toBe(multi.digest);
      expect(index.body.children.map((c: { digest: string }) => c.digest)).toEqual(
        multi.children.map((c) => c.digest),
      );
      expect(index.body.children[1].platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
      expect(index.body.tags).toEqual(['v1']);
    });

    it('reads through basic auth', async () => {
      const res = await http().get('/api/v1/registries/secured/repositories/private/app/tags').expect(200);
      expect(res.body.items).toEqual([expect.objectContaining({ name: '1', digest: privateImage.digest })]);
      const repos = await http().get('/api/v1/registries/secured/repositories').expect(200);
      expect(repos.body.items).toEqual([{ name: 'private/app', tagCount: 1 }]);
    });

    it('maps bad input and upstream errors to stable codes, never a 500', async () => {
      const cases: [string, number, string][] = [
        ['/api/v1/registries/plain/repositories/Library/Alpine/tags', 400, 'NAME_INVALID'],
        ['/api/v1/registries/plain/repositories/library/../etc/tags', 400, 'NAME_INVALID'],
        ['/api/v1/registries/plain/repositories/library%2F..%2Fetc/tags', 400, 'NAME_INVALID'],
        ['/api/v1/registries/plain/repositories/library/alpine/manifests/sha256:xyz', 400, 'DIGEST_INVALID'],
        ['/api/v1/registries/plain/repositories/library/alpine/manifests/-bad', 400, 'TAG_INVALID'],
        [`/api/v1/registries/plain/repositories/${'a/'.repeat(200)}b/tags`, 400, 'NAME_INVALID'],
        ['/api/v1/registries/plain/repositories/library/alpine/blobs', 404, 'ROUTE_NOT_FOUND'],
        ['/api/v1/registries/plain/repositories/no/such/tags', 404, 'NAME_UNKNOWN'],
        ['/api/v1/registries/plain/repositories/library/alpine/manifests/nope', 404, 'MANIFEST_UNKNOWN'],
        ['/api/v1/registries/absent/repositories', 404, 'REGISTRY_NOT_FOUND'],
      ];
      for (const [path, status, code] of cases) {
        const res = await http().get(path);
        expect({ path, status: res.status, code: res.body.error?.code }).toEqual({ path, status, code });
      }
      const long = await http().get(`/api/v1/registries/plain/repositories/${'a'.repeat(5000)}/tags`);
      expect(long.status).toBeGreaterThanOrEqual(400);
      expect(long.status).toBeLessThan(500);
    });

    it('answers REGISTRY_UNREACHABLE when a registry is down', async () => {
      await plain.stop();
      try {
        const res = await http().get('/api/v1/registries/plain/repositories').expect(502);
        expect(res.body.error).toMatchObject({
          code: 'REGISTRY_UNREACHABLE',
          details: { registry: 'plain' },
        });
      } finally {
        await plain.restart();
      }
      await http().get('/api/v1/registries/plain/repositories').expect(200);
    });

    it('serves the same data through GraphQL, with error codes in extensions', async () => {
      const res = await http()
        .post('/graphql')
        .send({
          query: `{
            registries { name probe { deletes } }
            repositories(registry: "plain", limit: 2) { items { name tagCount } nextCursor }
            tags(registry: "plain", repository: "library/alpine") { name digest size platforms { os architecture } }
            manifest(registry: "plain", repository: "team-a/api", reference: "v1") { digest tags children { platform { architecture } } }
          }`,
        })
        .expect(200);
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.registries).toEqual([
        { name: 'plain', probe: { deletes: 'enabled' } },
        { name: 'secured', probe: { deletes: 'enabled' } },
      ]);
      expect(res.body.data.repositories.items).toEqual([
        { name: 'library/alpine', tagCount: 3 },
        { name: 'team-a/api', tagCount: 1 },
      ]);
      expect(res.body.data.tags.find((t: { name: string }) => t.name === 'latest').digest).toBe(
        alpine.digest,
      );
      expect(res.body.data.manifest).toEqual({
        digest: multi.digest,
        tags: ['v1'],
        children: [{ platform: { architecture: 'amd64' } }, { platform: { architecture: 'arm64' } }],
      });
      const bad = await http()
        .post('/graphql')
        .send({ query: '{ tags(registry: "plain", repository: "UPPER/case") { name } }' })
        .expect(200);
      expect(bad.body.errors[0].extensions.code).toBe('NAME_INVALID');
    });
  });

  it('serves OpenAPI, an offline GraphiQL page, health and metrics', async () => {
    const spec = await http().get('/docs/openapi.json').expect(200);
    expect(Object.keys(spec.body.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/registries',
        '/api/v1/registries/{name}/health',
        '/api/v1/registries/{registry}/repositories',
      ]),
    );
    expect(Object.keys(spec.body.components.schemas.CreateRegistryDto.properties).sort()).toEqual([
      'auth',
      'deletes',
      'description',
      'eventsToken',
      'name',
      'tls',
      'url',
    ]);
    expect(spec.body.components.schemas.CreateRegistryDto.required).toEqual(['name', 'url']);
    const page = await http().get('/graphql').set('accept', 'text/html').expect(200);
    expect(page.text).toContain('graphiql');
    expect(page.text).not.toMatch(/<script[^>]+src="https?:\/\//);
    const ready = await http().get('/health/ready').expect(200);
    expect(ready.body.info).toMatchObject({ postgres: { status: 'up' }, redis: { status: 'up' } });
    const metrics = await http().get('/metrics').expect(200);
    expect(metrics.text).toContain('process_cpu_user_seconds_total');
    expect(metrics.text).toMatch(
      /gateway_upstream_request_duration_seconds_count\{registry="plain",method="GET",status="200"\} [1-9]/,
    );
    expect(metrics.text).toMatch(
      /gateway_http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/registries\/:registry\/repositories",status="200"\} [1-9]/,
    );
    const board = await http().get('/queues').expect(200);
    expect(board.text).toContain('<html');
    const live = await http().get('/health/live').set('x-request-id', 'req-123').expect(200);
    expect(live.headers['x-request-id']).toBe('req-123');
  });
});
