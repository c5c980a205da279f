import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, JWK, JWTPayload, SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, bearer, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

const AUDIENCE = 'registry-gateway';
type Key = Awaited<ReturnType<typeof generateKeyPair>>;

/** A minimal OpenID provider on loopback: the discovery document and the key set, with hit counters. */
class LocalIdp {
  readonly hits = { discovery: 0, jwks: 0 };
  private constructor(
    private readonly server: Server,
    readonly issuer: string,
    private readonly keys: JWK[],
  ) {}

  static async start(keys: JWK[]): Promise<LocalIdp> {
    const ref: { idp?: LocalIdp } = {};
    const server = createServer((req, res) => {
      const idp = ref.idp!;
      if (req.url === '/.well-known/openid-configuration') {
        idp.hits.discovery++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ issuer: idp.issuer, jwks_uri: `${idp.issuer}/jwks` }));
      } else if (req.url === '/jwks') {
        idp.hits.jwks++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: idp.keys }));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ref.idp = new LocalIdp(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, keys);
    return ref.idp;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('OIDC bearer tokens verified against a JWKS served over HTTP', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let idp: LocalIdp;
  let registry: RegistryProcess;
  let rsa: Key;
  let ec: Key;
  let rogue: Key;
  const now = () => Math.floor(Date.now() / 1000);

  /** A token as the provider would issue it; `claims` and `header` override the defaults. */
  async function token(
    claims: JWTPayload = {},
    opts: { key?: Key; kid?: string; alg?: string; omit?: string[] } = {},
  ): Promise<string> {
    const payload: JWTPayload = {
      iss: idp.issuer,
      aud: AUDIENCE,
      sub: 'alice',
      preferred_username: 'alice',
      iat: now(),
      exp: now() + 300,
      ...claims,
    };
    for (const k of opts.omit ?? []) delete payload[k];
    const alg = opts.alg ?? 'RS256';
    return new SignJWT(payload)
      .setProtectedHeader({ alg, kid: opts.kid ?? (alg === 'ES256' ? 'ec-1' : 'rsa-1'), typ: 'JWT' })
      .sign((opts.key ?? (alg === 'ES256' ? ec : rsa)).privateKey);
  }

  const me = (t: string) => request(gw.server).get('/api/v1/me').set(bearer(t));

  beforeAll(async () => {
    [rsa, ec, rogue] = await Promise.all([
      generateKeyPair('RS256', { extractable: true }),
      generateKeyPair('ES256', { extractable: true }),
      generateKeyPair('RS256', { extractable: true }),
    ]);
    const jwk = async (key: Key, kid: string, alg: string) => ({
      ...(await exportJWK(key.publicKey)),
      kid,
      alg,
      use: 'sig',
    });
    idp = await LocalIdp.start([await jwk(rsa, 'rsa-1', 'RS256'), await jwk(ec, 'ec-1', 'ES256')]);
    env = await TestEnvironment.create('auth_oidc');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    for (const repo of ['team-a/api', 'team-b/api']) await pusher.pushImage(repo, ['v1'], { seed: repo });
    await pusher.close();
    gw = await startApi(env, {
      OIDC_ISSUER: idp.issuer,
      OIDC_AUDIENCE: AUDIENCE,
      OIDC_GROUP_ROLES: JSON.stringify({
        'platform-auditors': 'auditor',
        'team-a': { role: 'deleter', registry: 'alpha', repository: 'team-a/**' },
      }),
    });
    for (const name of ['alpha', 'beta'])
      await adminRequest(gw.server).post('/api/v1/registries').send({ name, url: registry.url }).expect(201);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await idp?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('accepts a token signed by a key of the discovered key set, as a user principal', async () => {
    const body = (await me(await token({ groups: ['g1', 'g2'] })).expect(200)).body;
    expect(body).toMatchObject({
      type: 'user',
      id: 'alice',
      name: 'alice',
      via: 'oidc',
      groups: ['g1', 'g2'],
      grants: [],
    });
    expect(idp.hits.discovery).toBe(1);
    expect(idp.hits.jwks).toBe(1);
    // Another algorithm of the allowed list, another key of the set; the key set is cached.
    await me(await token({}, { alg: 'ES256' })).expect(200);
    expect(idp.hits.jwks).toBe(1);
    // The display name falls back to email, then to sub.
    const named = await me(await token({ email: 'a@example.com' }, { omit: ['preferred_username'] })).expect(
      200,
    );
    expect(named.body.name).toBe('a@example.com');
  });

  it('refuses expired, not-yet-valid, foreign and malformed tokens with 401', async () => {
    const refused = async (t: string, message = 'not valid') => {
      const res = await me(t).expect(401);
      expect(res.body.error.code).toBe('UNAUTHENTICATED');
      expect(res.body.error.message).toContain(message);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(JSON.stringify(res.body)).not.toContain(t.split('.')[2] || t);
    };
    await refused(await token({ exp: now() - 120, iat: now() - 600 }), 'expired');
    // Within OIDC_CLOCK_TOLERANCE_SECONDS (30) of expiry is still accepted.
    await me(await token({ exp: now() - 10, iat: now() - 600 })).expect(200);
    await refused(await token({ nbf: now() + 300 }));
    await refused(await token({ iss: 'https://someone-else.example.com' }));
    await refused(await token({ aud: 'another-service' }));
    await refused(await token({}, { key: rogue }));
    await refused(await token({}, { key: rogue, kid: 'rogue-1' }));
    await refused(await token({}, { omit: ['exp'] }));
    await refused(await token({}, { omit: ['sub'] }));

    // alg "none": an unsigned token that claims everything.
    const claims = { iss: idp.issuer, aud: AUDIENCE, sub: 'mallory', exp: now() + 300 };
    await refused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`);
    // Algorithm confusion: HS256 keyed with the provider's public key, which anyone can download.
    const publicPem = new TextEncoder().encode(await exportSPKI(rsa.publicKey));
    const confused = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1', typ: 'JWT' })
      .sign(publicPem);
    await refused(confused);
    // A signature that does not match its content.
    const [h, , s] = (await token()).split('.');
    await refused(`${h}.${b64({ ...claims, sub: 'alice' })}.${s}`);
  });

  it('maps OIDC groups to roles through OIDC_GROUP_ROLES', async () => {
    const teamA = await token({ sub: 'dave', preferred_username: 'dave', groups: ['team-a'] });
    const grants = (await me(teamA).expect(200)).body.grants;
    expect(grants).toEqual([
      { role: 'deleter', registry: 'alpha', repository: 'team-a/**', source: 'group:team-a' },
    ]);
    const as = () => request(gw.server).post('/api/v1/deletions').set(bearer(teamA));
    const plan = await as()
      .send({ registry: 'alpha', dryRun: true, items: [{ repository: 'team-a/api', reference: 'v1' }] })
      .expect(201);
    expect(plan.body.actor).toEqual({ type: 'user', id: 'dave', name: 'dave' });
    const audit = (
      await adminRequest(gw.server).get(`/api/v1/audit-events?subjectId=${plan.body.id}`).expect(200)
    ).body.items;
    expect(audit[0]).toMatchObject({
      action: 'deletion.planned',
      actor: { type: 'user', id: 'dave', name: 'dave' },
    });
    const denied = await as()
      .send({ registry: 'alpha', dryRun: true, items: [{ repository: 'team-b/api', reference: 'v1' }] })
      .expect(403);
    expect(denied.body.error.details).toMatchObject({
      permission: 'deletions:create',
      repository: 'team-b/api',
    });
    await request(gw.server).get('/api/v1/registries/alpha/repositories').set(bearer(teamA)).expect(403);

    const auditor = await token({ sub: 'erin', groups: ['platform-auditors', 'unmapped'] });
    await request(gw.server).get('/api/v1/audit-events').set(bearer(auditor)).expect(200);
    await request(gw.server).get('/api/v1/deletions').set(bearer(auditor)).expect(200);
    await request(gw.server).get('/api/v1/registries').set(bearer(auditor)).expect(403);
  });

  it('applies role bindings whose subject is a user or an OIDC group', async () => {
    const admin = () => adminRequest(gw.server);
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'user', id: 'bob' }, role: 'viewer', registry: 'alpha' })
      .expect(201);
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'group', id: 'readers' }, role: 'viewer', registry: 'beta' })
      .expect(201);
    const bob = await token({ sub: 'bob' });
    await request(gw.server).get('/api/v1/registries/alpha/repositories').set(bearer(bob)).expect(200);
    await request(gw.server).get('/api/v1/registries/beta/repositories').set(bearer(bob)).expect(403);
    // The same subject from another identity's group does not count: subjects and groups are distinct.
    const notBob = await token({ sub: 'carol', groups: ['bob', 'readers'] });
    await request(gw.server).get('/api/v1/registries/alpha/repositories').set(bearer(notBob)).expect(403);
    await request(gw.server).get('/api/v1/registries/beta/repositories').set(bearer(notBob)).expect(200);
    const graphql = await request(gw.server)
      .post('/graphql')
      .set(bearer(notBob))
      .send({ query: '{ registries { name } }' })
      .expect(200);
    expect(graphql.body.data.registries).toEqual([{ name: 'beta' }]);
  });

  describe('with OIDC_JWKS_URL instead of discovery', () => {
    let direct: TestGateway;
    let dead: TestGateway;

    beforeAll(async () => {
      const common = {
        OIDC_ISSUER: idp.issuer,
        OIDC_AUDIENCE: `other,${AUDIENCE}`,
        DATABASE_MIGRATIONS_RUN: 'false',
      };
      direct = await startApi(env, { ...common, OIDC_JWKS_URL: `${idp.issuer}/jwks` });
      // A port nothing listens on: the provider is down.
      dead = await startApi(env, { ...common, OIDC_JWKS_URL: 'http://127.0.0.1:9/jwks' });
    });

    afterAll(async () => {
      await Promise.all([direct?.close(), dead?.close()]);
    });

    it('fetches the configured key set and accepts any configured audience', async () => {
      const discoveries = idp.hits.discovery;
      await request(direct.server)
        .get('/api/v1/me')
        .set(bearer(await token()))
        .expect(200);
      await request(direct.server)
        .get('/api/v1/me')
        .set(bearer(await token({ aud: 'other' })))
        .expect(200);
      await request(direct.server)
        .get('/api/v1/me')
        .set(bearer(await token({ aud: 'third' })))
        .expect(401);
      expect(idp.hits.discovery).toBe(discoveries);
    });

    it('answers 503 when the identity provider cannot be reached', async () => {
      const res = await request(dead.server)
        .get('/api/v1/me')
        .set(bearer(await token()))
        .expect(503);
      expect(res.body.error.code).toBe('IDENTITY_PROVIDER_UNAVAILABLE');
      // API tokens and the admin token do not depend on the provider.
      await adminRequest(dead.server).get('/api/v1/me').expect(200);
    });
  });
});
