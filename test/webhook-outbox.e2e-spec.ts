import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AuditableEvent } from '../src/audit/audit-event.js';
import { WebhookOutbox } from '../src/webhooks/webhook-outbox.listener.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';

/*
 * The outbox runs inside hot paths (a deletion chunk settles 50 items in one transaction): the queries it
 * adds there are counted, on the gateway's own Postgres, and what it wrote is read back.
 */
describe('the webhook outbox on a hot path', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let ds: DataSource;
  let outbox: WebhookOutbox;
  const http = () => adminRequest(gw.server);

  const request = randomUUID();
  const item = (i: number): AuditableEvent => ({
    action: 'deletion.item.succeeded',
    actor: { type: 'user', id: 'u' },
    registry: 'prod',
    repository: `team-a/app-${i}`,
    outcome: 'success',
    subject: { type: 'deletion_request', id: request },
  });
  const completed: AuditableEvent = {
    action: 'deletion.completed',
    actor: { type: 'user', id: 'u' },
    registry: 'prod',
    outcome: 'success',
    subject: { type: 'deletion_request', id: request },
    details: { status: 'succeeded' },
  };

  async function subscribe(filter: { eventTypes: string[]; registry?: string; repository?: string }) {
    const res = await http()
      .post('/api/v1/webhooks')
      .send({ url: 'http://127.0.0.1:9/hook', ...filter })
      .expect(201);
    return res.body.id as string;
  }

  /**
   * The batch through the outbox in a transaction, as the audit listener hands it on: the first words of
   * each query it made there, and the deliveries committed.
   */
  async function capture(events: AuditableEvent[]) {
    const queries: string[] = [];
    await ds.transaction(async (manager) => {
      const query = manager.query.bind(manager);
      vi.spyOn(manager, 'query').mockImplementation((...args: Parameters<typeof query>) => {
        queries.push(args[0].trim().split(/\s+/).slice(0, 3).join(' '));
        return query(...args);
      });
      await outbox.onAuditBatch({ events, manager });
    });
    // This test's batch only, whatever else the gateway may record meanwhile.
    const delivered = await env.query<{ subscription_id: string; event_type: string }>(
      'SELECT subscription_id, event_type FROM webhook_deliveries WHERE dedupe_key LIKE $1 ORDER BY seq',
      [`%:deletion_request:${request}`],
    );
    return { queries, delivered };
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('outbox');
    gw = await startApi(env, { WEBHOOK_ALLOWED_CIDRS: '127.0.0.0/8' });
    ds = gw.app.get(DataSource);
    outbox = gw.app.get(WebhookOutbox);
  });

  beforeEach(async () => {
    await env.query('DELETE FROM webhook_subscriptions');
  });

  afterAll(async () => {
    await gw?.close();
    await env?.destroy();
  });

  it('adds no query for a batch without webhook events (a chunk of item outcomes)', async () => {
    await subscribe({ eventTypes: ['*'] });
    const { queries, delivered } = await capture(Array.from({ length: 50 }, (_, i) => item(i)));
    expect(queries).toEqual([]);
    expect(delivered).toEqual([]);
  });

  it('adds one query when nothing is subscribed, or nothing matches', async () => {
    const none = await capture([item(1), item(2), completed]);
    expect(none.queries).toEqual(['SELECT id, event_types,']);
    await subscribe({ eventTypes: ['gc.*'] });
    await subscribe({ eventTypes: ['deletion.*'], registry: 'staging' });
    const other = await capture([item(1), completed]);
    expect(other.queries).toEqual(['SELECT id, event_types,']);
    expect(other.delivered).toEqual([]);
  });

  it('inserts (under the append lock) only what matches; repositories are read only for a repository filter', async () => {
    const plain = await subscribe({ eventTypes: ['deletion.*'], registry: 'prod' });
    await subscribe({ eventTypes: ['gc.*'] });
    const matched = await capture([item(1), completed]);
    expect(matched.queries).toEqual(['SELECT id, event_types,', 'WITH appended AS']);
    expect(matched.delivered).toEqual([{ subscription_id: plain, event_type: 'deletion.completed' }]);

    await env.query('DELETE FROM webhook_subscriptions');
    // The request has no item in team-b: its repositories are read, and nothing matches.
    await subscribe({ eventTypes: ['deletion.*'], repository: 'team-b/**' });
    const filtered = await capture([completed]);
    expect(filtered.queries).toEqual(['SELECT id, event_types,', 'SELECT request_id, array_agg(DISTINCT']);
    expect(filtered.delivered).toEqual([]);
  });
});
