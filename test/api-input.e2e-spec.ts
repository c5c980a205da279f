import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { GraphQLSchemaHost } from '@nestjs/graphql';
import { createClient, type Client } from 'graphql-ws';
import type { GraphQLArgument, GraphQLField, GraphQLInputType } from 'graphql';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';
import { encodeListCursor } from '../src/common/cursor.js';
import { deliveriesCursorScope } from '../src/webhooks/webhooks.service.js';

// The copy of graphql that built the schema (see auth-matrix.e2e-spec.ts).
const { getNamedType, isEnumType, isInputObjectType, isListType, isNonNullType, isObjectType } =
  createRequire(import.meta.url)('graphql') as typeof import('graphql');

/*
 * What a client sends that the gateway must refuse as its own input (400 VALIDATION_FAILED, GraphQL's
 * extensions.code VALIDATION_FAILED) and never hand to Postgres as it is: malformed ids, text the
 * database cannot store.
 */

interface GqlError {
  message: string;
  extensions?: { code?: string; status?: number; details?: { problems?: string[] } };
}
type GqlAnswer = { data?: Record<string, unknown> | null; errors?: GqlError[] };

describe('input the gateway refuses itself', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  let wsUrl: string;
  const clients: Client[] = [];
  const http = () => adminRequest(gw.server);

  async function gql(query: string, variables: Record<string, unknown> = {}): Promise<GqlAnswer> {
    return (await http().post('/graphql').send({ query, variables }).expect(200)).body as GqlAnswer;
  }

  /** A subscription's first answer over WebSocket: its first value, or its errors. */
  function subscribeOnce(query: string, variables: Record<string, unknown>): Promise<GqlAnswer> {
    const c = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${ADMIN_TOKEN}` },
      retryAttempts: 0,
      lazy: true,
    });
    clients.push(c);
    return new Promise((resolve) => {
      const stop = c.subscribe<Record<string, unknown>>(
        { query, variables },
        {
          next: (r) => {
            stop();
            resolve(r as GqlAnswer);
          },
          error: (e) => resolve({ errors: (Array.isArray(e) ? e : [{ message: String(e) }]) as GqlError[] }),
          complete: () => resolve({}),
        },
      );
    });
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('api_input');
    registry = await RegistryProcess.start();
    gw = await startApi(env, { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' });
    await new Promise<void>((resolve) => gw.server.listen(0, '127.0.0.1', resolve));
    wsUrl = `ws://127.0.0.1:${(gw.server.address() as AddressInfo).port}/graphql`;
    await http().post('/api/v1/registries').send({ name: 'alpha', url: registry.url }).expect(201);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  describe('bodies', () => {
    it('a body that is not JSON is 415 saying to send JSON; an empty JSON body is no body', async () => {
      // `curl -d '{...}'` without -H: a form, which the API does not read as one field named after the body.
      const body = JSON.stringify({ name: 'beta', url: registry.url });
      for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
        const res = await http().post('/api/v1/registries').set('content-type', type).send(body).expect(415);
        expect(res.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
        expect(res.body.error.message).toContain('content-type: application/json');
      }
      await http().get('/api/v1/registries/beta').expect(404);
      // A client that sets the JSON content type on every request, bodies or not: the handler answers.
      const gc = await http()
        .post('/api/v1/registries/alpha/gc')
        .set('content-type', 'application/json')
        .expect(409);
      expect(gc.body.error.code).toBe('GC_NOT_CONFIGURED');
      for (const broken of ['{"name": "beta",', '{"__proto__": {"admin": true}, "name": "beta"}']) {
        const res = await http()
          .post('/api/v1/registries')
          .set('content-type', 'application/json')
          .send(broken)
          .expect(400);
        expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'body' } });
        expect(res.body.error.message).toContain('the body is not valid JSON');
      }
    });
  });

  describe('GraphQL errors', () => {
    it('a date filter that is not an ISO date-time says so', async () => {
      for (const query of [
        'query { auditEvents(filter: { from: "yesterday" }) { items { id } } }',
        'query { deletions(filter: { to: "soon" }) { items { id } } }',
      ]) {
        const [e] = (await gql(query)).errors ?? [];
        expect(e?.extensions?.code).toBe('VALIDATION_FAILED');
        expect(e?.message).toMatch(/(from|to) must be an ISO 8601 date-time/);
      }
    });

    it("carry the request's id, as REST error bodies do: resolver errors and documents that never ran", async () => {
      for (const [i, query] of [
        'query { gcRun(id: "not-a-uuid") { id } }',
        'query { registries { noSuchField } }',
        'query { registries {',
      ].entries()) {
        const requestId = `gql-error-${i}`;
        const res = await http().post('/graphql').set('x-request-id', requestId).send({ query });
        const body = res.body as GqlAnswer & { errors: { extensions: { requestId?: string } }[] };
        expect(body.errors.length).toBeGreaterThan(0);
        for (const e of body.errors) expect(e.extensions.requestId).toBe(requestId);
      }
    });
  });

  describe('ids', () => {
    /** A value of an argument's type: its ids malformed, everything else well-formed. */
    function valueFor(name: string, type: GraphQLInputType, id: string): unknown {
      if (isNonNullType(type)) return valueFor(name, type.ofType, id);
      if (isListType(type)) return [valueFor(name, type.ofType, id)];
      if (isInputObjectType(type))
        return Object.fromEntries(
          Object.values(type.getFields())
            .filter((f) => isNonNullType(f.type) && f.defaultValue === undefined)
            .map((f) => [f.name, valueFor(f.name, f.type, id)]),
        );
      if (isEnumType(type)) return type.getValues()[0].value;
      const named = getNamedType(type).name;
      if (named === 'ID') return id;
      return { Int: 1, Float: 1, Boolean: false }[named] ?? (name === 'registry' ? 'alpha' : 'x');
    }

    /** Every root field that takes an ID, with a document giving each of its IDs `id`. */
    function operationsWithIds(id: string) {
      const schema = gw.app.get(GraphQLSchemaHost).schema;
      const roots = [
        ['query', schema.getQueryType()],
        ['mutation', schema.getMutationType()],
        ['subscription', schema.getSubscriptionType()],
      ] as const;
      const takesId = (a: GraphQLArgument) => getNamedType(a.type).name === 'ID';
      const ops: { kind: string; field: string; query: string; variables: Record<string, unknown> }[] = [];
      for (const [kind, root] of roots)
        for (const field of Object.values(root?.getFields() ?? {}) as GraphQLField<unknown, unknown>[]) {
          if (!field.args.some(takesId)) continue;
          const args = field.args.filter((a) => isNonNullType(a.type) || takesId(a));
          const defs = args.map((a) => `$${a.name}: ${String(a.type)}`).join(', ');
          const call = args.map((a) => `${a.name}: $${a.name}`).join(', ');
          const selection = isObjectType(getNamedType(field.type)) ? ' { __typename }' : '';
          ops.push({
            kind,
            field: field.name,
            query: `${kind}(${defs}) { ${field.name}(${call})${selection} }`,
            variables: Object.fromEntries(args.map((a) => [a.name, valueFor(a.name, a.type, id)])),
          });
        }
      return { ops, schema };
    }

    it('GraphQL refuses every id argument that is not a uuid with VALIDATION_FAILED, as REST does', async () => {
      const { ops, schema } = operationsWithIds('nope');
      // Field resolvers below the roots take no ids; one that does would need its own case here.
      const nested = Object.values(schema.getTypeMap())
        .filter((t) => isObjectType(t) && !t.name.startsWith('__'))
        .filter(
          (t) =>
            ![schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].includes(
              t as never,
            ),
        )
        .flatMap((t) =>
          Object.values((t as import('graphql').GraphQLObjectType).getFields())
            .filter((f) => f.args.some((a) => getNamedType(a.type).name === 'ID'))
            .map((f) => `${t.name}.${f.name}`),
        );
      expect(nested).toEqual([]);
      expect(ops.map((o) => o.field).sort()).toEqual(
        expect.arrayContaining([
          'cancelDeletion',
          'cancelGcRun',
          'deleteWebhook',
          'deletion',
          'deletionProgress',
          'executeDeletion',
          'gcRun',
          'gcRunProgress',
          'redeliverWebhookDelivery',
          'rotateWebhookSecret',
          'updateWebhook',
          'webhook',
          'webhookDeliveries',
          'webhookDelivery',
        ]),
      );
      const problems: string[] = [];
      for (const op of ops) {
        const answer =
          op.kind === 'subscription'
            ? await subscribeOnce(op.query, op.variables)
            : await gql(op.query, op.variables);
        const [error] = answer.errors ?? [];
        if (
          answer.errors?.length !== 1 ||
          error.extensions?.code !== 'VALIDATION_FAILED' ||
          error.extensions.status !== 400 ||
          !/ must be an? .* id \(uuid\)$/.test(error.message) ||
          JSON.stringify(error.extensions.details?.problems) !== JSON.stringify([error.message])
        )
          problems.push(`${op.field}: ${JSON.stringify(answer)}`);
      }
      expect(problems).toEqual([]);

      // The same words as REST's answer to the same id.
      const rest = await http().get('/api/v1/gc-runs/nope').expect(400);
      expect(rest.body.error).toMatchObject({
        code: 'VALIDATION_FAILED',
        message: 'id must be a GC run id (uuid)',
      });
      const one = await gql(`query($id: ID!) { gcRun(id: $id) { id } }`, { id: 'nope' });
      expect(one.errors![0].message).toBe(rest.body.error.message);
      const restWebhook = await http().get('/api/v1/webhooks/nope').expect(400);
      const webhook = await gql(`query($id: ID!) { webhook(id: $id) { id } }`, { id: 'nope' });
      expect(webhook.errors![0].message).toBe(restWebhook.body.error.message);
    });

    it('a well-formed id of nothing is still not found', async () => {
      const missing = '00000000-0000-4000-8000-000000000000';
      const { ops } = operationsWithIds(missing);
      const codes = new Map<string, string | undefined>();
      for (const op of ops.filter((o) => o.kind !== 'subscription'))
        codes.set(op.field, (await gql(op.query, op.variables)).errors?.[0]?.extensions?.code);
      expect(codes.get('gcRun')).toBe('GC_RUN_NOT_FOUND');
      expect(codes.get('cancelGcRun')).toBe('GC_RUN_NOT_FOUND');
      expect(codes.get('deletion')).toBe('DELETION_NOT_FOUND');
      expect(codes.get('executeDeletion')).toBe('DELETION_NOT_FOUND');
      expect(codes.get('webhook')).toBe('WEBHOOK_NOT_FOUND');
      expect(codes.get('webhookDeliveries')).toBe('WEBHOOK_NOT_FOUND');
      expect([...codes.values()]).not.toContain('INTERNAL');
      expect([...codes.values()]).not.toContain('VALIDATION_FAILED');
    });

    it('text the database refuses (a NUL byte) is VALIDATION_FAILED, not a 500, where nothing checked it', async () => {
      const rest = await http().get('/api/v1/audit-events?actor=a%00b').expect(400);
      expect(rest.body.error.code).toBe('VALIDATION_FAILED');
      const answer = await gql(`query($f: AuditEventFilter) { auditEvents(filter: $f) { items { seq } } }`, {
        f: { actor: 'a\u0000b' },
      });
      expect(answer.errors?.map((e) => e.extensions?.code)).toEqual(['VALIDATION_FAILED']);
    });

    it('a delivery cursor past the bigint sequence is VALIDATION_FAILED, not a 500', async () => {
      const id = (
        await http()
          .post('/api/v1/webhooks')
          .send({ url: 'http://127.0.0.1:9/cursor', eventTypes: ['gc.*'] })
          .expect(201)
      ).body.id as string;
      const at = (seq: string) => encodeListCursor(deliveriesCursorScope(id, {}), { seq });
      const res = await http()
        .get(`/api/v1/webhooks/${id}/deliveries?cursor=${at('9999999999999999999')}`)
        .expect(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      await http()
        .get(`/api/v1/webhooks/${id}/deliveries?cursor=${at('42')}`)
        .expect(200);
    });
  });
  describe('null in a GraphQL list filter', () => {
    let webhookId: string;

    beforeAll(async () => {
      const pusher = new ImagePusher(registry.url);
      await pusher.pushImage('team-a/api', ['v1'], { seed: 'null-filters' });
      await pusher.close();
      webhookId = (
        await http()
          .post('/api/v1/webhooks')
          .send({ url: 'http://127.0.0.1:9/hook', eventTypes: ['deletion.*'] })
          .expect(201)
      ).body.id as string;
      // Queued and never run (no worker): a deletion request, its audit rows, a pending delivery.
      await http()
        .post('/api/v1/deletions')
        .send({ registry: 'alpha', items: [{ repository: 'team-a/api', reference: 'v1' }] })
        .expect(202);
      await env.query(
        `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, actor_id, dry_run, delete_untagged, fence,
           executor, status, phase, finished_at)
         VALUES ('alpha', gen_random_uuid(), 'manual', 'service', 'ops', true, false, 'none', 'local',
           'succeeded', 'done', now())`,
      );
    });

    /** The list's items, as JSON, for a query taking the variables given. */
    async function items(query: string, variables: Record<string, unknown>) {
      const answer = await gql(query, variables);
      expect(answer.errors, JSON.stringify(answer.errors)).toBeUndefined();
      const list = Object.values(answer.data!)[0] as { items: unknown[] };
      return list.items;
    }

    it('auditEvents: a null field filters nothing, as an absent one', async () => {
      const query = `query($f: AuditEventFilter) { auditEvents(filter: $f, limit: 500) { items { seq action } } }`;
      const all = await items(query, {});
      expect(all.length).toBeGreaterThanOrEqual(3);
      const fields = [
        'registry',
        'repository',
        'actor',
        'actorType',
        'action',
        'outcome',
        'subjectType',
        'subjectId',
        'from',
        'to',
      ];
      for (const field of fields) expect(await items(query, { f: { [field]: null } }), field).toEqual(all);
      // Every field null at once, and unset variables inside an inline filter.
      const everyNull = Object.fromEntries(fields.map((k) => [k, null]));
      expect(await items(query, { f: everyNull })).toEqual(all);
      const inline = `query($r: String, $a: String, $act: String) {
        auditEvents(filter: { registry: $r, actor: $a, action: $act }, limit: 500) { items { seq action } } }`;
      expect(await items(inline, {})).toEqual(all);
      expect(await items(inline, { r: null, a: null, act: null })).toEqual(all);
      // A value still filters.
      const alpha = await items(query, { f: { registry: 'alpha', action: null } });
      expect(alpha.length).toBeGreaterThan(0);
      expect(alpha.length).toBeLessThanOrEqual(all.length);
    });

    it('deletions, gcRuns and webhookDeliveries: likewise', async () => {
      const deletions = `query($f: DeletionFilter) { deletions(filter: $f) { items { id } } }`;
      const allDeletions = await items(deletions, {});
      expect(allDeletions).toHaveLength(1);
      for (const field of ['registry', 'repository', 'actor', 'status', 'from', 'to'])
        expect(await items(deletions, { f: { [field]: null } }), field).toEqual(allDeletions);

      const runs = `query($r: String, $s: GcRunStatus, $c: String, $l: Int) {
        gcRuns(registry: $r, status: $s, cursor: $c, limit: $l) { items { id } } }`;
      const allRuns = await items(runs, {});
      expect(allRuns).toHaveLength(1);
      expect(await items(runs, { r: null, s: null, c: null, l: null })).toEqual(allRuns);

      const deliveries = `query($id: ID!, $s: WebhookDeliveryStatus, $t: String, $c: String) {
        webhookDeliveries(webhookId: $id, status: $s, eventType: $t, cursor: $c) { items { id eventType } } }`;
      const allDeliveries = await items(deliveries, { id: webhookId });
      expect(allDeliveries).toHaveLength(1);
      expect(await items(deliveries, { id: webhookId, s: null, t: null, c: null })).toEqual(allDeliveries);
    });
  });
  describe('null in a body field that may only be left out', () => {
    const hook = { url: 'http://127.0.0.1:9/null-hook', eventTypes: ['gc.*'] };

    /** A 400 VALIDATION_FAILED naming the field. */
    function refused(
      res: { status: number; body: { error?: { code?: string; message?: string } } },
      field: string,
    ) {
      expect(res.status, `${field}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error?.code).toBe('VALIDATION_FAILED');
      expect(res.body.error?.message).toContain(`${field} may be left out, but not null`);
    }

    it('REST: 400 VALIDATION_FAILED for webhooks, secrets, role bindings and tokens; null still clears what it clears', async () => {
      refused(
        await http()
          .post('/api/v1/webhooks')
          .send({ ...hook, secret: null }),
        'secret',
      );
      refused(
        await http()
          .post('/api/v1/webhooks')
          .send({ ...hook, active: null }),
        'active',
      );
      const created = await http()
        .post('/api/v1/webhooks')
        .send({ ...hook, registry: 'alpha', description: 'kept' })
        .expect(201);
      const id = created.body.id as string;
      for (const field of ['eventTypes', 'active', 'url'])
        refused(
          await http()
            .patch(`/api/v1/webhooks/${id}`)
            .send({ [field]: null }),
          field,
        );
      refused(await http().post(`/api/v1/webhooks/${id}/rotate-secret`).send({ secret: null }), 'secret');
      refused(
        await http().post(`/api/v1/webhooks/${id}/rotate-secret`).send({ keepPreviousSeconds: null }),
        'keepPreviousSeconds',
      );
      const unchanged = (await http().get(`/api/v1/webhooks/${id}`).expect(200)).body;
      expect(unchanged).toMatchObject({
        url: hook.url,
        eventTypes: ['gc.*'],
        active: true,
        registry: 'alpha',
      });
      // Where null means something, it still does.
      const cleared = await http()
        .patch(`/api/v1/webhooks/${id}`)
        .send({ registry: null, description: null })
        .expect(200);
      expect(cleared.body).toMatchObject({ registry: null, description: null, active: true });

      const sa = (await http().post('/api/v1/service-accounts').send({ name: 'null-fields' }).expect(201))
        .body;
      refused(
        await http().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({ expiresAt: null }),
        'expiresAt',
      );
      refused(
        await http().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({ expiresInDays: null }),
        'expiresInDays',
      );
      const binding = (
        await http()
          .post('/api/v1/role-bindings')
          .send({ subject: { type: 'service_account', id: sa.id }, role: 'viewer', registry: 'alpha' })
          .expect(201)
      ).body;
      refused(await http().patch(`/api/v1/role-bindings/${binding.id}`).send({ role: null }), 'role');
      expect((await http().get(`/api/v1/role-bindings/${binding.id}`).expect(200)).body.role).toBe('viewer');
      const everywhere = await http()
        .patch(`/api/v1/role-bindings/${binding.id}`)
        .send({ registry: null })
        .expect(200);
      expect(everywhere.body).toMatchObject({ role: 'viewer', registry: null });
    });

    it('GraphQL: the same refusal with extensions.code VALIDATION_FAILED', async () => {
      const created = await gql(
        `mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id } }`,
        { input: { ...hook, secret: null } },
      );
      expect(created.errors?.map((e) => e.extensions?.code)).toEqual(['VALIDATION_FAILED']);
      const id = (await http().post('/api/v1/webhooks').send(hook).expect(201)).body.id as string;
      const rotated = await gql(
        `mutation($id: ID!, $input: RotateWebhookSecretInput) { rotateWebhookSecret(id: $id, input: $input) { id } }`,
        { id, input: { secret: null } },
      );
      expect(rotated.errors?.map((e) => e.extensions?.code)).toEqual(['VALIDATION_FAILED']);
      expect(rotated.errors![0].message).toContain('secret may be left out, but not null');
      for (const field of ['active', 'eventTypes', 'url']) {
        const updated = await gql(
          `mutation($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) { id } }`,
          { id, input: { [field]: null } },
        );
        expect(
          updated.errors?.map((e) => e.extensions?.code),
          field,
        ).toEqual(['VALIDATION_FAILED']);
      }
      const cleared = await gql(
        `mutation($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) { id description } }`,
        { id, input: { description: null } },
      );
      expect(cleared.errors).toBeUndefined();
    });
  });
});
