import { createHash, randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  adminRequest,
  asAdmin,
  bearer,
  TestEnvironment,
  TestGateway,
  startApi,
} from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

interface AuditItem {
  action: string;
  actor: { type: string; id: string | null; name: string | null };
  registry: string | null;
  subject: { type: string; id: string } | null;
  details: Record<string, unknown> | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('authentication: bootstrap admin, service accounts, API tokens, role bindings', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  const admin = () => adminRequest(gw.server);
  const anon = () => request(gw.server);
  const as = (token: string) => request.agent(gw.server).set(bearer(token));

  const audits = async (query: string): Promise<AuditItem[]> =>
    (await admin().get(`/api/v1/audit-events?${query}`).expect(200)).body.items;

  /** A service account with one token and the given bindings. */
  async function account(
    name: string,
    bindings: { role: string; registry?: string; repository?: string }[] = [],
  ): Promise<{ id: string; token: string; tokenId: string }> {
    const sa = (await admin().post('/api/v1/service-accounts').send({ name }).expect(201)).body;
    const t = (await admin().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({}).expect(201)).body;
    for (const b of bindings)
      await admin()
        .post('/api/v1/role-bindings')
        .send({ subject: { type: 'service_account', id: sa.id }, ...b })
        .expect(201);
    return { id: sa.id, token: t.token, tokenId: t.id };
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('auth_tokens');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    for (const repo of ['team-a/api', 'team-a/web', 'team-b/api'])
      await pusher.pushImage(repo, ['v1'], { seed: repo });
    await pusher.close();
    gw = await startApi(env);
    for (const name of ['alpha', 'beta'])
      await admin().post('/api/v1/registries').send({ name, url: registry.url }).expect(201);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('refuses calls without a valid bearer token and says how to authenticate', async () => {
    const none = await anon().get('/api/v1/registries').expect(401);
    expect(none.body.error).toMatchObject({ code: 'UNAUTHENTICATED', requestId: expect.any(String) });
    expect(none.headers['www-authenticate']).toBe('Bearer realm="registry-gateway"');

    const basic = await anon().get('/api/v1/registries').set('authorization', 'Basic YTpi').expect(401);
    expect(basic.body.error.code).toBe('UNAUTHENTICATED');

    const secret = 'not-the-admin-token-but-long-enough';
    const wrong = await anon().get('/api/v1/registries').set(bearer(secret)).expect(401);
    expect(wrong.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(JSON.stringify(wrong.body)).not.toContain(secret);

    // Well-formed (prefix, length, checksum) but never issued.
    const forged = (await import('../src/auth/api-token.js')).generateApiToken().token;
    expect((await anon().get('/api/v1/registries').set(bearer(forged)).expect(401)).body.error.code).toBe(
      'UNAUTHENTICATED',
    );
    // A prefix of the admin token is not the admin token.
    await anon()
      .get('/api/v1/registries')
      .set(bearer(ADMIN_TOKEN.slice(0, -1)))
      .expect(401);

    const gql = await anon().post('/graphql').send({ query: '{ registries { name } }' }).expect(200);
    expect(gql.body.data).toBeNull();
    expect(gql.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');

    // What stays public.
    await anon().get('/health/live').expect(200);
    await anon().get('/health/ready').expect(200);
    const doc = (await anon().get('/docs/openapi.json').expect(200)).body;
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.paths['/api/v1/registries'].get.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/api/v1/registries'].get['x-permission'].permissions).toEqual(['registries:read']);
    expect(doc.paths['/health/live'].get.security).toBeUndefined();
    expect((await anon().get('/metrics').expect(200)).text).toContain(
      'gateway_http_request_duration_seconds',
    );
  });

  it('the bootstrap admin token is a global admin service principal', async () => {
    const me = (await admin().get('/api/v1/me').expect(200)).body;
    expect(me).toMatchObject({
      type: 'service',
      id: 'bootstrap-admin',
      name: 'bootstrap-admin',
      via: 'bootstrap-token',
      grants: [{ role: 'admin', registry: null, repository: null, source: 'bootstrap' }],
    });
    expect(me.globalPermissions).toEqual(expect.arrayContaining(['access:manage', 'deletions:create']));
    const roles = (await admin().get('/api/v1/roles').expect(200)).body;
    expect(roles.roles.find((r: { name: string }) => r.name === 'deleter').permissions).toEqual([
      'deletions:create',
      'deletions:read-own',
    ]);
  });

  it('issues a service-account token once, stores only its hash, records its use, expires and revokes it', async () => {
    const created = await admin()
      .post('/api/v1/service-accounts')
      .send({ name: 'ci-cleanup', description: 'nightly' })
      .expect(201);
    const sa = created.body;
    expect(sa).toMatchObject({
      name: 'ci-cleanup',
      tokens: [],
      createdBy: { type: 'service', id: 'bootstrap-admin' },
    });
    expect(
      (await admin().post('/api/v1/service-accounts').send({ name: 'ci-cleanup' }).expect(409)).body.error
        .code,
    ).toBe('SERVICE_ACCOUNT_EXISTS');
    await admin().post('/api/v1/service-accounts').send({ name: 'Not Valid' }).expect(400);

    const issued = (
      await admin()
        .post(`/api/v1/service-accounts/${sa.id}/tokens`)
        .send({ name: 'gitlab', expiresInDays: 30 })
        .expect(201)
    ).body;
    const token: string = issued.token;
    expect(token).toMatch(/^rgw_/);
    expect(issued).toMatchObject({
      name: 'gitlab',
      hint: token.slice(0, 12),
      status: 'active',
      lastUsedAt: null,
    });
    expect(Date.parse(issued.expiresAt) - Date.now()).toBeGreaterThan(29 * 24 * 3600_000);

    // Shown once: never again in any answer, never in the database, never in the audit trail.
    const view = (await admin().get(`/api/v1/service-accounts/${sa.id}`).expect(200)).body;
    expect(view.tokens).toHaveLength(1);
    expect(view.tokens[0]).not.toHaveProperty('token');
    const list = await admin().get('/api/v1/service-accounts').expect(200);
    for (const text of [JSON.stringify(view), list.text]) expect(text).not.toContain(token.slice(12));
    const rows = await env.query('SELECT * FROM service_account_tokens WHERE service_account_id = $1', [
      sa.id,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0].token_hash).toBe(sha256(token));
    expect(JSON.stringify(rows)).not.toContain(token.slice(12));
    const trail = await admin().get('/api/v1/audit-events?limit=500').expect(200);
    expect(trail.text).not.toContain(token.slice(12));
    const [createdEvent] = await audits(`subjectId=${issued.id}`);
    expect(createdEvent).toMatchObject({
      action: 'service_account.token.created',
      actor: { type: 'service', id: 'bootstrap-admin' },
      details: { serviceAccount: { id: sa.id, name: 'ci-cleanup' }, hint: issued.hint },
    });

    // The token authenticates as the service account, which has no role yet.
    const me = (await as(token).get('/api/v1/me').expect(200)).body;
    expect(me).toMatchObject({
      type: 'service',
      id: sa.id,
      name: 'ci-cleanup',
      via: 'api-token',
      grants: [],
    });
    const denied = await as(token).get('/api/v1/registries').expect(403);
    expect(denied.body.error).toMatchObject({
      code: 'FORBIDDEN',
      details: { permission: 'registries:read' },
    });
    expect(denied.body.error.message).toContain('registries:read');

    // Last use is recorded, then not rewritten on every request.
    let lastUsed: string | null = null;
    for (let i = 0; i < 50 && !lastUsed; i++) {
      lastUsed = (await admin().get(`/api/v1/service-accounts/${sa.id}`).expect(200)).body.tokens[0]
        .lastUsedAt;
      if (!lastUsed) await sleep(50);
    }
    expect(Date.parse(lastUsed!)).toBeGreaterThan(Date.now() - 60_000);
    await as(token).get('/api/v1/me').expect(200);
    await sleep(200);
    const [again] = await env.query<{ last_used_at: Date }>(
      'SELECT last_used_at FROM service_account_tokens WHERE id = $1',
      [issued.id],
    );
    expect(again.last_used_at.toISOString()).toBe(lastUsed);

    // A binding gives it a role on one registry: it sees that registry only.
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'service_account', id: 'ci-cleanup' }, role: 'viewer', registry: 'alpha' })
      .expect(201);
    const visible = (await as(token).get('/api/v1/registries').expect(200)).body.items;
    expect(visible.map((r: { name: string }) => r.name)).toEqual(['alpha']);
    await as(token).get('/api/v1/registries/alpha').expect(200);
    expect((await as(token).get('/api/v1/registries/beta').expect(403)).body.error.details).toMatchObject({
      permission: 'registries:read',
      registry: 'beta',
    });
    // Neither does the viewer learn whether a registry exists.
    const ghost = await as(token).get('/api/v1/registries/no-such-registry').expect(403);
    expect(ghost.body.error.code).toBe('FORBIDDEN');

    // Revocation works at once and is audited once.
    await admin().delete(`/api/v1/service-accounts/${sa.id}/tokens/${issued.id}`).expect(204);
    const revoked = await as(token).get('/api/v1/me').expect(401);
    expect(revoked.body.error.message).toContain('revoked');
    await admin().delete(`/api/v1/service-accounts/${sa.id}/tokens/${issued.id}`).expect(204);
    const revocations = (await audits(`subjectId=${issued.id}`)).filter(
      (e) => e.action === 'service_account.token.revoked',
    );
    expect(revocations).toHaveLength(1);
    expect((await admin().get(`/api/v1/service-accounts/${sa.id}`).expect(200)).body.tokens[0].status).toBe(
      'revoked',
    );
    await admin().delete(`/api/v1/service-accounts/${sa.id}/tokens/${randomUUID()}`).expect(404);
  });

  it('an expired token stops working; an expiry in the past is refused', async () => {
    const sa = (await admin().post('/api/v1/service-accounts').send({ name: 'short-lived' }).expect(201))
      .body;
    const past = await admin()
      .post(`/api/v1/service-accounts/${sa.id}/tokens`)
      .send({ expiresAt: new Date(Date.now() - 1000).toISOString() })
      .expect(400);
    expect(past.body.error.code).toBe('VALIDATION_FAILED');
    const issued = (
      await admin()
        .post(`/api/v1/service-accounts/${sa.id}/tokens`)
        .send({ expiresAt: new Date(Date.now() + 3600_000).toISOString() })
        .expect(201)
    ).body;
    await as(issued.token).get('/api/v1/me').expect(200);
    await env.query(
      `UPDATE service_account_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' WHERE id = $1`,
      [issued.id],
    );
    const expired = await as(issued.token).get('/api/v1/me').expect(401);
    expect(expired.body.error).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringContaining('expired'),
    });
    expect((await admin().get(`/api/v1/service-accounts/${sa.id}`).expect(200)).body.tokens[0].status).toBe(
      'expired',
    );
  });

  it('role bindings are validated, changed and removed, each change audited in its transaction', async () => {
    const sa = (await admin().post('/api/v1/service-accounts').send({ name: 'binder' }).expect(201)).body;
    const bad = [
      { subject: { type: 'service_account', id: sa.id }, role: 'viewer', repository: 'team-a/**' },
      { subject: { type: 'service_account', id: sa.id }, role: 'root' },
      {
        subject: { type: 'service_account', id: sa.id },
        role: 'viewer',
        registry: 'alpha',
        repository: '!team-a/**',
      },
      { subject: { type: 'robot', id: 'x' }, role: 'viewer' },
    ];
    for (const body of bad) await admin().post('/api/v1/role-bindings').send(body).expect(400);
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'service_account', id: 'nobody' }, role: 'viewer' })
      .expect(404);

    const created = (
      await admin()
        .post('/api/v1/role-bindings')
        .send({
          subject: { type: 'service_account', id: sa.id },
          role: 'deleter',
          registry: 'alpha',
          repository: 'team-a/**',
        })
        .expect(201)
    ).body;
    expect(created).toMatchObject({
      subject: { type: 'service_account', id: sa.id, name: 'binder' },
      role: 'deleter',
      registry: 'alpha',
      repository: 'team-a/**',
      createdBy: { type: 'service', id: 'bootstrap-admin' },
    });
    const dup = await admin()
      .post('/api/v1/role-bindings')
      .send({
        subject: { type: 'service_account', id: 'binder' },
        role: 'deleter',
        registry: 'alpha',
        repository: 'team-a/**',
      })
      .expect(409);
    expect(dup.body.error.code).toBe('ROLE_BINDING_EXISTS');
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'group', id: 'platform' }, role: 'auditor' })
      .expect(201);

    const changed = (
      await admin().patch(`/api/v1/role-bindings/${created.id}`).send({ role: 'operator' }).expect(200)
    ).body;
    expect(changed).toMatchObject({ role: 'operator', repository: 'team-a/**' });
    await admin()
      .patch(`/api/v1/role-bindings/${created.id}`)
      .send({ registry: null, repository: 'x/**' })
      .expect(400);
    const mine = (await admin().get(`/api/v1/role-bindings?subject=${sa.id}`).expect(200)).body.items;
    expect(mine.map((b: { id: string }) => b.id)).toEqual([created.id]);
    const groups = (await admin().get('/api/v1/role-bindings?subjectType=group').expect(200)).body.items;
    expect(groups).toHaveLength(1);
    await admin().delete(`/api/v1/role-bindings/${created.id}`).expect(204);
    await admin().get(`/api/v1/role-bindings/${created.id}`).expect(404);

    const trail = await audits(`subjectId=${created.id}`);
    expect(trail.map((e) => e.action).reverse()).toEqual([
      'role_binding.created',
      'role_binding.updated',
      'role_binding.deleted',
    ]);
    for (const e of trail) expect(e.actor).toMatchObject({ type: 'service', id: 'bootstrap-admin' });
    expect(trail.find((e) => e.action === 'role_binding.updated')!.details).toMatchObject({
      before: { role: 'deleter' },
      after: { role: 'operator' },
    });

    // Deleting the account takes its bindings and tokens with it, audited.
    const t = (await admin().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({}).expect(201)).body;
    await admin()
      .post('/api/v1/role-bindings')
      .send({ subject: { type: 'service_account', id: sa.id }, role: 'viewer' })
      .expect(201);
    await admin().delete(`/api/v1/service-accounts/${sa.id}`).expect(204);
    await as(t.token).get('/api/v1/me').expect(401);
    expect(
      await env.query('SELECT 1 FROM role_bindings WHERE service_account_id = $1', [sa.id]),
    ).toHaveLength(0);
    const [deleted] = await audits(`subjectId=${sa.id}&action=service_account.deleted`);
    expect(deleted.details).toMatchObject({
      name: 'binder',
      activeTokens: 1,
      roleBindings: [{ role: 'viewer' }],
    });
    expect((await admin().get('/api/v1/audit/verify').expect(200)).body.ok).toBe(true);
  });

  it('lists service accounts by name and role bindings oldest first, a page at a time', async () => {
    const made: { id: string; name: string }[] = [];
    for (const name of ['page-e', 'page-b', 'page-d', 'page-a', 'page-c']) {
      const a = await account(name, [{ role: 'viewer', registry: 'alpha' }]);
      made.push({ id: a.id, name });
    }
    interface Listed {
      id: string;
      name?: string;
      tokens?: unknown[];
      subject?: { id: string };
    }
    interface Page {
      items: Listed[];
      nextCursor: string | null;
    }
    /** Every page of a list, `limit` at a time, through nextCursor. */
    const walk = async (path: string, limit: number): Promise<Page[]> => {
      const pages: Page[] = [];
      let cursor: string | null = '';
      while (cursor !== null) {
        const sep = path.includes('?') ? '&' : '?';
        const res = await admin()
          .get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
          .expect(200);
        const page = res.body as Page;
        pages.push(page);
        cursor = page.nextCursor;
      }
      return pages;
    };

    const all = (await admin().get('/api/v1/service-accounts?limit=200').expect(200)).body;
    expect(all.nextCursor).toBeNull();
    const names = all.items.map((a: { name: string }) => a.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(made.map((m) => m.name)));
    const pages = await walk('/api/v1/service-accounts', 2);
    expect(pages.length).toBe(Math.ceil(names.length / 2));
    expect(pages.slice(0, -1).every((p) => p.items.length === 2 && p.nextCursor)).toBe(true);
    expect(pages.flatMap((p) => p.items.map((a) => a.name))).toEqual(names);
    // Each account on a page carries its own tokens, and only those.
    const paged = pages.flatMap((p) => p.items).filter((a) => a.name?.startsWith('page-'));
    expect(paged.map((a) => [a.name, a.tokens?.length])).toEqual(
      ['page-a', 'page-b', 'page-c', 'page-d', 'page-e'].map((n) => [n, 1]),
    );

    const bindings = (await admin().get('/api/v1/role-bindings?limit=200').expect(200)).body;
    expect(bindings.nextCursor).toBeNull();
    const mine = await walk('/api/v1/role-bindings?registry=alpha&role=viewer', 2);
    const ids = mine.flatMap((p) => p.items.map((b) => b.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(
      bindings.items
        .filter((b: { registry: string; role: string }) => b.registry === 'alpha' && b.role === 'viewer')
        .map((b: { id: string }) => b.id),
    );
    // Oldest first: the five made here come in the order they were made.
    const ours = (await walk('/api/v1/role-bindings?subjectType=service_account', 3))
      .flatMap((p) => p.items)
      .map((b) => b.subject?.id)
      .filter((id) => made.some((m) => m.id === id));
    expect(ours).toEqual(made.map((m) => m.id));

    // Every REST list documents its paging (PageQuery), with its own bounds.
    const spec = (await anon().get('/docs/openapi.json').expect(200)).body as {
      paths: Record<string, { get: { parameters: { name: string; schema: { maximum?: number } }[] } }>;
    };
    const paging = (path: string) =>
      spec.paths[path].get.parameters
        .filter((p) => p.name === 'limit' || p.name === 'cursor')
        .map((p) => `${p.name}${p.schema.maximum ? `<=${p.schema.maximum}` : ''}`)
        .sort();
    expect(
      Object.fromEntries(
        [
          '/api/v1/service-accounts',
          '/api/v1/role-bindings',
          '/api/v1/deletions',
          '/api/v1/deletions/{id}/items',
          '/api/v1/audit-events',
          '/api/v1/registries/{registry}/repositories',
        ].map((path) => [path, paging(path)]),
      ),
    ).toEqual({
      '/api/v1/service-accounts': ['cursor', 'limit<=200'],
      '/api/v1/role-bindings': ['cursor', 'limit<=200'],
      '/api/v1/deletions': ['cursor', 'limit<=500'],
      '/api/v1/deletions/{id}/items': ['cursor', 'limit<=1000'],
      '/api/v1/audit-events': ['cursor', 'limit<=500'],
      '/api/v1/registries/{registry}/repositories': ['cursor', 'limit<=1000'],
    });

    // A cursor is the list's own, and a limit within 1..200.
    const accountsCursor = pages[0].nextCursor!;
    const bindingsCursor = mine[0].nextCursor!;
    for (const url of [
      `/api/v1/role-bindings?cursor=${encodeURIComponent(accountsCursor)}`,
      `/api/v1/service-accounts?cursor=${encodeURIComponent(bindingsCursor)}`,
      // Newest first: an oldest-first list's cursor is not one of its own.
      `/api/v1/gc-runs?cursor=${encodeURIComponent(bindingsCursor)}`,
      '/api/v1/service-accounts?cursor=not-a-cursor',
      '/api/v1/service-accounts?limit=0',
      '/api/v1/role-bindings?limit=201',
    ]) {
      const res = await admin().get(url).expect(400);
      expect(res.body.error.code, url).toBe('VALIDATION_FAILED');
    }
  });

  it('checks bulk deletions item by item before anything is stored, and records the service account', async () => {
    const deleter = await account('team-a-deleter', [
      { role: 'deleter', registry: 'alpha', repository: 'team-a/**' },
    ]);
    const before = await env.query('SELECT id FROM deletion_requests');
    const mixed = await as(deleter.token)
      .post('/api/v1/deletions')
      .send({
        registry: 'alpha',
        dryRun: true,
        items: [
          { repository: 'team-a/api', reference: 'v1' },
          { repository: 'team-b/api', reference: 'v1' },
        ],
      })
      .expect(403);
    expect(mixed.body.error).toMatchObject({
      code: 'FORBIDDEN',
      details: { permission: 'deletions:create', registry: 'alpha', repository: 'team-b/api', item: 1 },
    });
    expect(mixed.body.error.message).toContain('items[1]');
    expect(await env.query('SELECT id FROM deletion_requests')).toEqual(before);
    // Another registry: refused before it is looked up, so the answer is the same whether it exists.
    for (const name of ['beta', 'no-such-registry'])
      expect(
        (
          await as(deleter.token)
            .post('/api/v1/deletions')
            .send({ registry: name, dryRun: true, items: [{ repository: 'team-a/api', reference: 'v1' }] })
            .expect(403)
        ).body.error.details,
      ).toMatchObject({ permission: 'deletions:create', registry: name, item: 0 });

    const plan = (
      await as(deleter.token)
        .post('/api/v1/deletions')
        .send({ registry: 'alpha', dryRun: true, items: [{ repository: 'team-a/api', reference: 'v1' }] })
        .expect(201)
    ).body;
    expect(plan.actor).toEqual({ type: 'service', id: deleter.id, name: 'team-a-deleter' });
    const [planned] = await audits(`subjectId=${plan.id}`);
    expect(planned).toMatchObject({
      action: 'deletion.planned',
      actor: { type: 'service', id: deleter.id, name: 'team-a-deleter' },
    });
    // The single-image route is checked by the guard the same way.
    await as(deleter.token)
      .delete('/api/v1/registries/alpha/repositories/team-b/api/manifests/v1?dryRun=true')
      .expect(403);
    await as(deleter.token)
      .delete('/api/v1/registries/alpha/repositories/team-a/web/tags/v1?dryRun=true')
      .expect(201);

    // A deleter reads its own requests, nobody else's, and cannot tell a foreign id from a missing one.
    await as(deleter.token).get(`/api/v1/deletions/${plan.id}`).expect(200);
    const own = (await as(deleter.token).get('/api/v1/deletions').expect(200)).body.items;
    expect(own.length).toBe(2);
    for (const r of own) expect(r.actor.id).toBe(deleter.id);
    await as(deleter.token).get('/api/v1/deletions?actor=bootstrap-admin').expect(403);
    const foreign = (
      await admin()
        .post('/api/v1/deletions')
        .send({ registry: 'alpha', dryRun: true, items: [{ repository: 'team-b/api', reference: 'v1' }] })
        .expect(201)
    ).body;
    const hidden = await as(deleter.token).get(`/api/v1/deletions/${foreign.id}`).expect(403);
    const missing = await as(deleter.token).get(`/api/v1/deletions/${randomUUID()}`).expect(403);
    expect(missing.body.error.message).toBe(hidden.body.error.message);
    expect(missing.body.error.details).toEqual(hidden.body.error.details);
    expect((await admin().get(`/api/v1/deletions/${randomUUID()}`).expect(404)).body.error.code).toBe(
      'DELETION_NOT_FOUND',
    );
    // Execute and cancel need deletions:create on every item of the request.
    await as(deleter.token).post(`/api/v1/deletions/${foreign.id}/cancel`).expect(403);
    await as(deleter.token).post(`/api/v1/deletions/${foreign.id}/execute`).expect(403);
    expect(
      (await as(deleter.token).post(`/api/v1/deletions/${plan.id}/cancel`).expect(200)).body.status,
    ).toBe('cancelled');
    // Delete only: no catalog, no audit trail.
    await as(deleter.token).get('/api/v1/registries/alpha/repositories/team-a/api/tags').expect(403);
    await as(deleter.token).get('/api/v1/audit-events').expect(403);
  });

  it('shows a viewer bound to a glob only the repositories it matches, over REST and GraphQL', async () => {
    const viewer = await account('team-a-viewer', [
      { role: 'viewer', registry: 'alpha', repository: 'team-a/**' },
    ]);
    const names = (body: { items: { name: string }[] }) => body.items.map((r) => r.name);
    expect(
      names((await as(viewer.token).get('/api/v1/registries/alpha/repositories').expect(200)).body),
    ).toEqual(['team-a/api', 'team-a/web']);
    expect(names((await admin().get('/api/v1/registries/alpha/repositories').expect(200)).body)).toEqual([
      'team-a/api',
      'team-a/web',
      'team-b/api',
    ]);
    await as(viewer.token).get('/api/v1/registries/alpha/repositories/team-a/api/tags').expect(200);
    await as(viewer.token).get('/api/v1/registries/alpha/repositories/team-b/api/tags').expect(403);
    await as(viewer.token).get('/api/v1/registries/beta/repositories').expect(403);

    const gql = (query: string) => as(viewer.token).post('/graphql').send({ query }).expect(200);
    const nested = (await gql('{ registry(name: "alpha") { name repositories { items { name } } } }')).body;
    expect(nested.errors).toBeUndefined();
    expect(nested.data.registry.repositories.items.map((r: { name: string }) => r.name)).toEqual([
      'team-a/api',
      'team-a/web',
    ]);
    const tags = (await gql('{ tags(registry: "alpha", repository: "team-b/api") { name } }')).body;
    expect(tags.data).toBeNull();
    expect(tags.errors[0].extensions).toMatchObject({
      code: 'FORBIDDEN',
      details: { permission: 'catalog:read' },
    });
    const ok = (await gql('{ tags(registry: "alpha", repository: "team-a/api") { name } }')).body;
    expect(ok.data.tags.map((t: { name: string }) => t.name)).toEqual(['v1']);
    // The field resolver is guarded by its parent's registry: an operator bound to beta gets no alpha catalog.
    const other = await account('beta-viewer', [{ role: 'viewer', registry: 'beta' }]);
    const cross = await as(other.token)
      .post('/graphql')
      .send({ query: '{ registries { name repositories { items { name } } } }' })
      .expect(200);
    expect(cross.body.data.registries.map((r: { name: string }) => r.name)).toEqual(['beta']);
  });

  it('keeps the BullMQ dashboard for admins, with bearer or basic credentials', async () => {
    const none = await anon().get('/queues').expect(401);
    expect(none.headers['www-authenticate']).toContain('Basic');
    const viewer = await account('queue-peeker', [{ role: 'viewer' }]);
    expect((await as(viewer.token).get('/queues').expect(403)).body.error.details.permission).toBe(
      'queues:manage',
    );
    await anon().get('/queues').set(asAdmin).expect(200);
    const basic = Buffer.from(`anyone:${ADMIN_TOKEN}`).toString('base64');
    await anon().get('/queues').set('authorization', `Basic ${basic}`).expect(200);
  });

  it('counts refused calls by reason and permission', async () => {
    await anon().get('/api/v1/audit/verify').expect(401);
    const metrics = (await anon().get('/metrics').expect(200)).text;
    const value = (labels: string) =>
      Number(new RegExp(`gateway_auth_refused_total\\{${labels}\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    expect(value('reason="unauthenticated",permission="",api="rest"')).toBeGreaterThanOrEqual(5);
    expect(value('reason="forbidden",permission="deletions:create",api="rest"')).toBeGreaterThanOrEqual(2);
    expect(value('reason="forbidden",permission="catalog:read",api="graphql"')).toBeGreaterThanOrEqual(1);
    expect(value('reason="unauthenticated",permission="",api="graphql"')).toBeGreaterThanOrEqual(1);
    expect(value('reason="forbidden",permission="queues:manage",api="queues"')).toBeGreaterThanOrEqual(1);
  });

  describe('rate limits shared by two API replicas through Redis', () => {
    let a: TestGateway;
    let b: TestGateway;
    const metricsToken = 'metrics-token-0123456789';

    beforeAll(async () => {
      const shared = {
        REDIS_PREFIX: `${env.redisPrefix}:pair`,
        RATE_LIMIT_REQUESTS: '5',
        RATE_LIMIT_AUTH_FAILURES: '3',
        METRICS_TOKEN: metricsToken,
        DATABASE_MIGRATIONS_RUN: 'false',
      };
      [a, b] = await Promise.all([startApi(env, shared), startApi(env, shared)]);
    });

    afterAll(async () => {
      await Promise.all([a?.close(), b?.close()]);
    });

    it('counts one principal’s requests on every replica, and leaves other principals alone', async () => {
      const limited = await account('limited', [{ role: 'viewer' }]);
      const other = await account('unlimited', [{ role: 'viewer' }]);
      const on = (gw: TestGateway, token: string) => request(gw.server).get('/api/v1/me').set(bearer(token));
      const statuses: number[] = [];
      const remaining: string[] = [];
      for (const gw of [a, b, a, b, a]) {
        const res = await on(gw, limited.token);
        statuses.push(res.status);
        remaining.push(res.headers['ratelimit-remaining']);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
      expect(remaining).toEqual(['4', '3', '2', '1', '0']);
      const refused = await on(b, limited.token).expect(429);
      expect(refused.body.error).toMatchObject({
        code: 'RATE_LIMITED',
        details: { retryAfterSeconds: expect.any(Number) },
      });
      const retryAfter = Number(refused.headers['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      await on(a, limited.token).expect(429);
      const gql = await request(a.server)
        .post('/graphql')
        .set(bearer(limited.token))
        .send({ query: '{ registries { name } }' })
        .expect(200);
      expect(gql.body.errors[0].extensions.code).toBe('RATE_LIMITED');
      await on(a, other.token).expect(200);
      await on(b, other.token).expect(200);
    });

    it('answers repeated failed authentication from one address with 429', async () => {
      const bad = () => request(a.server).get('/api/v1/me').set(bearer('wrong-token-wrong-token'));
      await bad().expect(401);
      await request(b.server).get('/api/v1/me').set(bearer('wrong-token-wrong-token')).expect(401);
      await bad().expect(401);
      const limited = await bad().expect(429);
      expect(limited.body.error.code).toBe('RATE_LIMITED');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    });

    it('protects /metrics with METRICS_TOKEN when it is set', async () => {
      const refused = await request(a.server).get('/metrics').expect(401);
      expect(refused.body.error.code).toBe('UNAUTHENTICATED');
      await request(a.server).get('/metrics').set(bearer('wrong-metrics-token-000')).expect(401);
      const text = (await request(a.server).get('/metrics').set(bearer(metricsToken)).expect(200)).text;
      expect(text).toMatch(
        /gateway_auth_refused_total\{reason="rate_limited",permission="",api="rest"\} [1-9]/,
      );
    });
  });
});
