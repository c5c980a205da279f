import { describe, expect, it } from 'vitest';
import type { DataSource, EntityManager } from 'typeorm';
import type { AuditableEvent } from '../audit/audit-event.js';
import { WebhookOutbox } from './webhook-outbox.listener.js';
import type { WebhookQueue } from './webhook-queue.js';

/*
 * The outbox runs inside hot paths (a deletion chunk settles 50 items in one transaction): count the
 * queries it adds there.
 */

const item = (i: number): AuditableEvent => ({
  action: 'deletion.item.succeeded',
  actor: { type: 'user', id: 'u' },
  registry: 'prod',
  repository: `team-a/app-${i}`,
  outcome: 'success',
  subject: { type: 'deletion_request', id: 'r1' },
});
const completed: AuditableEvent = {
  action: 'deletion.completed',
  actor: { type: 'user', id: 'u' },
  registry: 'prod',
  outcome: 'success',
  subject: { type: 'deletion_request', id: 'r1' },
  details: { status: 'succeeded' },
};

function fakeManager(subscriptions: unknown[], repositories: string[] = []) {
  const queries: string[] = [];
  const manager = {
    queryRunner: { isTransactionActive: true },
    query: (sql: string) => {
      queries.push(sql.trim().split(/\s+/).slice(0, 3).join(' '));
      if (sql.includes('FROM webhook_subscriptions')) return Promise.resolve(subscriptions);
      if (sql.includes('FROM deletion_items')) return Promise.resolve([{ request_id: 'r1', repositories }]);
      if (sql.includes('INSERT INTO webhook_deliveries')) return Promise.resolve([{ subscription_id: 's1' }]);
      return Promise.resolve([]);
    },
  } as unknown as EntityManager;
  return { manager, queries };
}

function outbox() {
  const ds = { subscribers: [] } as unknown as DataSource;
  const o = new WebhookOutbox(ds, { wake: () => Promise.resolve() } as unknown as WebhookQueue);
  o.onModuleInit();
  return o;
}

describe('the webhook outbox on a hot path', () => {
  it('adds no query for a batch without webhook events (a chunk of item outcomes)', async () => {
    const { manager, queries } = fakeManager([
      { id: 's1', event_types: ['*'], registry: null, repository: null },
    ]);
    await outbox().onAuditBatch({ events: Array.from({ length: 50 }, (_, i) => item(i)), manager });
    expect(queries).toEqual([]);
  });

  it('adds one query when nothing is subscribed, or nothing matches', async () => {
    const none = fakeManager([]);
    await outbox().onAuditBatch({ events: [item(1), item(2), completed], manager: none.manager });
    expect(none.queries).toEqual(['SELECT id, event_types,']);
    const other = fakeManager([{ id: 's1', event_types: ['gc.*'], registry: null, repository: null }]);
    await outbox().onAuditBatch({ events: [item(1), completed], manager: other.manager });
    expect(other.queries).toHaveLength(1);
  });

  it('inserts (under the append lock) only what matches; repositories are read only for a repository filter', async () => {
    const plain = fakeManager([
      { id: 's1', event_types: ['deletion.*'], registry: 'prod', repository: null },
    ]);
    await outbox().onAuditBatch({ events: [item(1), completed], manager: plain.manager });
    expect(plain.queries).toEqual(['SELECT id, event_types,', 'WITH appended AS']);
    const filtered = fakeManager(
      [{ id: 's1', event_types: ['deletion.*'], registry: null, repository: 'team-b/**' }],
      ['team-a/app'],
    );
    await outbox().onAuditBatch({ events: [completed], manager: filtered.manager });
    expect(filtered.queries).toEqual(['SELECT id, event_types,', 'SELECT request_id, array_agg(DISTINCT']);
  });
});
