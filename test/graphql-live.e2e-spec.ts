import type { INestApplicationContext } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminRequest,
  boundServiceAccount,
  ADMIN_TOKEN,
  TestEnvironment,
  TestGateway,
  startApi,
  startWorker,
} from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryService } from './support/registry-service.js';

/*
 * GraphQL mutations that mirror the REST deletes, and subscriptions that stream the progress of a real
 * deletion and a real garbage collection, run by a worker (its own Nest application: everything it does
 * reaches the API through Postgres). Subscriptions poll only once a minute here, so what arrives in time
 * came through LISTEN/NOTIFY.
 */

const GATEWAY = {
  DELETE_BACKOFF_MS: '100',
  DELETE_BACKOFF_MAX_MS: '500',
  DELETE_CHUNK_SIZE: '4',
  GC_HEARTBEAT_MS: '200',
  GC_SWEEP_EVERY_MS: '1000',
  GRAPHQL_SUBSCRIPTION_POLL_MS: '60000',
  RATE_LIMIT_AUTH_FAILURES: '0',
};

interface Received<T> {
  values: T[];
  errors: { message: string; extensions?: { code?: string } }[];
  done: Promise<void>;
  stop(): void;
}

describe('GraphQL mutations and subscriptions on a real registry and worker', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let worker: INestApplicationContext;
  let service: RegistryService;
  let pusher: ImagePusher;
  let url: string;
  const clients: Client[] = [];
  const tokens: Record<string, string> = {};

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field
  async function gql<T = Record<string, any>>(query: string, variables: Record<string, unknown> = {}) {
    const res = await adminRequest(gw.server).post('/graphql').send({ query, variables }).expect(200);
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    return res.body.data as T;
  }

  function client(connectionParams?: Record<string, unknown>): Client {
    const c = createClient({ url, webSocketImpl: WebSocket, connectionParams, retryAttempts: 0, lazy: true });
    clients.push(c);
    return c;
  }

  function subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    opts: { token?: string | null; viaExtensions?: boolean } = {},
  ): Received<T> {
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    const authorization = token ? `Bearer ${token}` : undefined;
    const c = client(opts.viaExtensions || !authorization ? {} : { authorization });
    const received: Received<T> = { values: [], errors: [], done: Promise.resolve(), stop: () => undefined };
    received.done = new Promise<void>((resolve) => {
      received.stop = c.subscribe<Record<string, T>>(
        {
          query,
          variables,
          ...(opts.viaExtensions && authorization
            ? { extensions: { headers: { Authorization: authorization } } }
            : {}),
        },
        {
          next: (r) => {
            if (r.errors) received.errors.push(...(r.errors as Received<T>['errors']));
            if (r.data) received.values.push(Object.values(r.data)[0]);
          },
          error: (e) => {
            received.errors.push(
              ...((Array.isArray(e) ? e : [{ message: String(e) }]) as Received<T>['errors']),
            );
            resolve();
          },
          complete: resolve,
        },
      );
    });
    return received;
  }

  async function principal(name: string, role: string, scope: { registry?: string; repository?: string }) {
    tokens[name] = (await boundServiceAccount(gw.server, name, role, scope)).token;
  }

  async function until<T>(
    what: string,
    read: () => Promise<T>,
    ok: (v: T) => boolean,
    ms = 30_000,
  ): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await read();
      if (ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function tagsOf(repository: string): Promise<string[]> {
    const res = await fetch(`${service.url}/v2/${repository}/tags/list`);
    if (res.status === 404) return [];
    return (((await res.json()) as { tags: string[] | null }).tags ?? []).sort();
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('graphql_live');
    service = await RegistryService.create({ logLevel: 'warn' });
    pusher = new ImagePusher(service.url);
    gw = await startApi(env, GATEWAY);
    worker = await startWorker(env, GATEWAY);
    await new Promise<void>((resolve) => gw.server.listen(0, '127.0.0.1', resolve));
    url = `ws://127.0.0.1:${(gw.server.address() as AddressInfo).port}/graphql`;
    // Slow deletes, so a request visibly passes through several states.
    await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'live', url: service.url, deletes: { concurrency: 2, ratePerSecond: 8 } })
      .expect(201);
    await principal('viewer', 'viewer', {});
    await principal('auditor-other', 'auditor', { registry: 'other' });
    await principal('auditor-live', 'auditor', { registry: 'live' });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    await worker?.close();
    await gw?.close();
    await pusher?.close();
    await service?.cleanup();
    await env?.destroy();
  });

  it('plans in bulk, streams the execution of the plan to the end, and audits it', async () => {
    const images = await Promise.all(
      Array.from({ length: 16 }, (_, i) => pusher.pushImage('team/app', [`v${i}`], { seed: `bulk-${i}` })),
    );
    const kept = await pusher.pushImage('team/app', ['stable'], { seed: 'kept' });
    const { createDeletion: plan } = await gql(
      `mutation($input: CreateDeletionInput!) { createDeletion(input: $input) { id status dryRun itemCount counts { planned } } }`,
      {
        input: {
          registry: 'live',
          dryRun: true,
          reason: 'graphql bulk',
          items: images.map((img, i) => ({ repository: 'team/app', reference: `v${i}`, kind: 'manifest' })),
        },
      },
    );
    expect(plan).toMatchObject({ status: 'planned', dryRun: true, itemCount: 16, counts: { planned: 16 } });

    type Progress = { status: string; counts: { pending: number; running: number; succeeded: number } };
    const feed = subscribe<Progress>(
      `subscription($id: ID!) { deletionProgress(id: $id) { status counts { pending running succeeded } } }`,
      { id: plan.id },
    );
    await until(
      'the first state',
      async () => feed.values.length,
      (n) => n > 0,
      10_000,
    );
    expect(feed.values[0].status).toBe('planned');

    const { executeDeletion } = await gql(`mutation($id: ID!) { executeDeletion(id: $id) { id status } }`, {
      id: plan.id,
    });
    expect(executeDeletion.status).toBe('queued');
    await Promise.race([feed.done, new Promise((r) => setTimeout(r, 30_000))]);
    expect(feed.errors).toEqual([]);
    const statuses = feed.values.map((v) => v.status);
    expect(statuses.at(-1)).toBe('succeeded');
    expect(feed.values.at(-1)!.counts.succeeded).toBe(16);
    // It went through intermediate states (chunks of 4 at 8 deletes a second), each sent once, in order:
    // at least one between the plan and the end. How many more is up to the machine's load (states 200 ms
    // apart are sent as one); a full-suite run once saw only one.
    expect(feed.values.length).toBeGreaterThanOrEqual(3);
    const succeeded = feed.values.map((v) => v.counts.succeeded);
    expect(succeeded).toEqual([...succeeded].sort((a, b) => a - b));
    expect(succeeded.some((n) => n > 0 && n < 16)).toBe(true);
    expect(await tagsOf('team/app')).toEqual(['stable']);
    expect(kept.digest).toBeTruthy();

    const { auditEvents } = await gql(
      `query($id: String!) { auditEvents(filter: { subjectId: $id }, sort: asc, limit: 100) { items { action deletion { id status } } } }`,
      { id: plan.id },
    );
    const actions = auditEvents.items.map((e: { action: string }) => e.action);
    expect(actions[0]).toBe('deletion.planned');
    expect(actions[1]).toBe('deletion.executed');
    expect(actions.filter((a: string) => a === 'deletion.item.succeeded')).toHaveLength(16);
    expect(actions.at(-1)).toBe('deletion.completed');
    expect(auditEvents.items[0].deletion).toEqual({ id: plan.id, status: 'succeeded' });
  });

  it('deleteImage and deleteTag behave as their REST routes; cancel ends a plan’s stream', async () => {
    const image = await pusher.pushImage('team/one', ['a', 'b', 'c'], { seed: 'one' });
    const other = await pusher.pushImage('team/one', ['keep'], { seed: 'keep' });
    const { deleteTag } = await gql(
      `mutation { deleteTag(registry: "live", repository: "team/one", tag: "c") { id status items { items { kind tags method } } } }`,
    );
    expect(deleteTag.items.items).toEqual([{ kind: 'tag', tags: ['c'], method: null }]);
    await until(
      'the tag delete',
      async () =>
        (await gql(`query($id: ID!) { deletion(id: $id) { status } }`, { id: deleteTag.id })).deletion.status,
      (s) => s === 'succeeded',
    );
    expect(await tagsOf('team/one')).toEqual(['a', 'b', 'keep']);

    const { deleteImage } = await gql(
      `mutation($d: String!) { deleteImage(registry: "live", repository: "team/one", reference: $d, reason: "gone") {
         id status reason items { items { digest tags } } } }`,
      { d: image.digest },
    );
    expect(deleteImage).toMatchObject({ status: 'queued', reason: 'gone' });
    expect(deleteImage.items.items[0]).toEqual({ digest: image.digest, tags: ['a', 'b'] });
    await until(
      'the image delete',
      async () =>
        (await gql(`query($id: ID!) { deletion(id: $id) { status } }`, { id: deleteImage.id })).deletion
          .status,
      (s) => s === 'succeeded',
    );
    expect(await tagsOf('team/one')).toEqual(['keep']);

    // The same errors as REST.
    const missing = await adminRequest(gw.server).post('/graphql').send({
      query: `mutation { deleteImage(registry: "live", repository: "team/one", reference: "nope") { id } }`,
    });
    expect(missing.body.errors[0].extensions.code).toBe('MANIFEST_UNKNOWN');
    const denied = await adminRequest(gw.server)
      .post('/graphql')
      .set('authorization', `Bearer ${tokens.viewer}`)
      .send({
        query: `mutation { deleteImage(registry: "live", repository: "team/one", reference: "keep") { id } }`,
      });
    expect(denied.body.errors[0].extensions.code).toBe('FORBIDDEN');

    const { deleteImage: plan } = await gql(
      `mutation { deleteImage(registry: "live", repository: "team/one", reference: "keep", dryRun: true) { id status } }`,
    );
    expect(plan.status).toBe('planned');
    const feed = subscribe<{ status: string }>(
      `subscription($id: ID!) { deletionProgress(id: $id) { status } }`,
      {
        id: plan.id,
      },
    );
    await until(
      'the plan',
      async () => feed.values.length,
      (n) => n > 0,
      10_000,
    );
    const { cancelDeletion } = await gql(`mutation($id: ID!) { cancelDeletion(id: $id) { status } }`, {
      id: plan.id,
    });
    expect(cancelDeletion.status).toBe('cancelled');
    await feed.done;
    expect(feed.values.map((v) => v.status)).toEqual(['planned', 'cancelled']);
    expect(await tagsOf('team/one')).toEqual(['keep']);
    expect(other.digest).toBeTruthy();
  });

  it('checks subscriptions like queries: token from connectionParams or GraphiQL’s headers, same permissions', async () => {
    const { deleteImage: plan } = await gql(
      `mutation { deleteImage(registry: "live", repository: "team/one", reference: "keep", dryRun: true) { id } }`,
    );
    const query = `subscription($id: ID!) { deletionProgress(id: $id) { status } }`;
    const codes = (r: Received<unknown>) => r.errors.map((e) => e.extensions?.code);

    const anonymous = subscribe(query, { id: plan.id }, { token: null });
    await anonymous.done;
    expect(codes(anonymous)).toEqual(['UNAUTHENTICATED']);
    const viewer = subscribe(query, { id: plan.id }, { token: tokens.viewer });
    await viewer.done;
    expect(codes(viewer)).toEqual(['FORBIDDEN']);
    const elsewhere = subscribe(query, { id: plan.id }, { token: tokens['auditor-other'] });
    await elsewhere.done;
    expect(codes(elsewhere)).toEqual(['FORBIDDEN']);
    const unknown = subscribe(query, { id: '00000000-0000-4000-8000-000000000000' });
    await unknown.done;
    expect(codes(unknown)).toEqual(['DELETION_NOT_FOUND']);

    // GraphiQL sends the token with each operation rather than on connect.
    const graphiql = subscribe<{ status: string }>(
      query,
      { id: plan.id },
      {
        token: tokens['auditor-live'],
        viaExtensions: true,
      },
    );
    await until(
      'the state',
      async () => graphiql.values.length,
      (n) => n > 0,
      10_000,
    );
    expect(graphiql.errors).toEqual([]);
    expect(graphiql.values[0].status).toBe('planned');
    graphiql.stop();
    await graphiql.done;

    // The limits hold over WebSocket too, for queries as for subscriptions.
    const tooComplex = subscribe(
      `query { deletions(limit: 500) { items { items(limit: 500) { items { digest } } } } }`,
      {},
    );
    await tooComplex.done;
    expect(codes(tooComplex)).toEqual(['QUERY_TOO_COMPLEX']);
  });

  it('streams a real garbage collection phase by phase until it ends', async () => {
    await adminRequest(gw.server)
      .put('/api/v1/registries/live/gc-settings')
      .send({
        executor: service.localExecutor,
        fence: 'readonly',
        graceSeconds: 0,
      })
      .expect(200);
    const { runGc } = await gql(`mutation { runGc(registry: "live") { id status } }`);
    type Run = { status: string; phase: string; bytesFreed: number | null; heartbeatAt: string | null };
    const feed = subscribe<Run>(
      `subscription($id: ID!) { gcRunProgress(id: $id) { status phase bytesFreed heartbeatAt } }`,
      { id: runGc.id },
    );
    const auditor = subscribe<Run>(
      `subscription($id: ID!) { gcRunProgress(id: $id) { status } }`,
      { id: runGc.id },
      {
        token: tokens['auditor-live'],
      },
    );
    const outsider = subscribe<Run>(
      `subscription($id: ID!) { gcRunProgress(id: $id) { status } }`,
      { id: runGc.id },
      {
        token: tokens['auditor-other'],
      },
    );
    await Promise.race([feed.done, new Promise((r) => setTimeout(r, 90_000))]);
    await auditor.done;
    await outsider.done;
    expect(feed.errors).toEqual([]);
    const last = feed.values.at(-1)!;
    expect(last).toMatchObject({ status: 'succeeded', phase: 'done' });
    expect(last.bytesFreed).toBeGreaterThan(0);
    // Phases come in the order the run goes through them; a burst of changes within 200 ms is sent as
    // its latest state, so a fast run may skip some.
    const ORDER = [
      'queued',
      'fencing',
      'measuring',
      'planning',
      'waiting-grace',
      'collecting',
      'clearing-cache',
      'verifying',
      'unfencing',
      'done',
    ];
    const phases = [...new Set(feed.values.map((v) => v.phase))];
    expect(phases.length).toBeGreaterThanOrEqual(2);
    expect(phases.map((p) => ORDER.indexOf(p))).toEqual(
      [...phases.map((p) => ORDER.indexOf(p))].sort((a, b) => a - b),
    );
    expect(auditor.values.at(-1)!.status).toBe('succeeded');
    expect(outsider.errors.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);

    const { reclaimedSpace } = await gql(
      `{ reclaimedSpace(registry: "live") { registry bytesFreed gcRuns manifestsDeleted } }`,
    );
    expect(reclaimedSpace).toEqual([
      { registry: 'live', bytesFreed: last.bytesFreed, gcRuns: 1, manifestsDeleted: 16 + 1 },
    ]);
  }, 120_000);
});
