import { Injectable, OnModuleInit } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager, QueryRunner } from 'typeorm';
import {
  AUDIT_APPEND_LOCK,
  AUDIT_BATCH_EVENT,
  AUDIT_EVENT,
  type AuditableEvent,
  type AuditBatch,
} from '../audit/audit-event.js';
import { CompiledFilter, webhookEventOf, type WebhookEvent } from './webhook-events.js';
import { WebhookQueue } from './webhook-queue.js';

interface SubscriptionRow {
  id: string;
  event_types: string[];
  registry: string | null;
  repository: string | null;
}

interface OutboxRow {
  subscriptionId: string;
  type: string;
  dedupeKey: string;
  registry: string | null;
  data: Record<string, unknown>;
}

/**
 * The transactional outbox of webhooks. It listens to the same events the audit trail is written from,
 * and in the same transaction (the event's manager) inserts one delivery per matching active
 * subscription: a committed change always has its deliveries, a rolled-back one never does. Features
 * never call it. After the commit, the subscriptions that got deliveries are woken (a TypeORM
 * transaction subscriber); the sweep covers a wake that is lost.
 *
 * Cost on hot paths: nothing for events that are not webhook events (a chunk's 50 item events), one
 * SELECT of the active subscriptions when one is and nothing matches; the lock and the INSERT only
 * when something matches.
 */
@Injectable()
export class WebhookOutbox implements OnModuleInit {
  /** Subscriptions to wake once the transaction (the query runner's) commits. */
  private readonly toWake = new WeakMap<QueryRunner, Set<string>>();
  /** Compiled filters by subscription id + filter; subscriptions are few and change rarely. */
  private readonly filters = new Map<string, CompiledFilter>();

  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly queue: WebhookQueue,
  ) {}

  onModuleInit() {
    this.ds.subscribers.push({
      afterTransactionCommit: ({ queryRunner }) => {
        // A savepoint release also reports a commit; only the outermost one counts.
        if (queryRunner.isTransactionActive) return;
        const ids = this.toWake.get(queryRunner);
        if (!ids) return;
        this.toWake.delete(queryRunner);
        // Not awaited: TypeORM awaits this hook inside commitTransaction(), and a slow Redis must not
        // hold up the change that was just committed.
        for (const id of ids) void this.queue.wake(id);
      },
      afterTransactionRollback: ({ queryRunner }) => {
        if (!queryRunner.isTransactionActive) this.toWake.delete(queryRunner);
      },
    });
  }

  // Errors must reach emitAsync (suppressErrors defaults to true): a change may not commit without its
  // deliveries. Resolves to undefined, never to something recordAudit could take for an audit receipt.
  @OnEvent(AUDIT_EVENT, { suppressErrors: false })
  async onAudit(event: AuditableEvent): Promise<void> {
    await this.capture([event], event.manager);
  }

  @OnEvent(AUDIT_BATCH_EVENT, { suppressErrors: false })
  async onAuditBatch(batch: AuditBatch): Promise<void> {
    await this.capture(batch.events, batch.manager);
  }

  private async capture(events: Omit<AuditableEvent, 'manager'>[], manager?: EntityManager): Promise<void> {
    const mapped = events.map(webhookEventOf).filter((e): e is WebhookEvent => e !== null);
    if (mapped.length === 0) return;
    if (!manager) {
      // The audit listener refuses a manager outside a transaction, and writes an event without one in
      // a transaction of its own: the deliveries get theirs, committed right after.
      const woken = await this.ds.transaction((m) => this.insert(m, mapped));
      for (const id of woken) void this.queue.wake(id);
      return;
    }
    const runner = manager.queryRunner;
    // The audit listener refuses such an event; nothing may be written for it.
    if (!runner?.isTransactionActive) return;
    const woken = await this.insert(manager, mapped);
    if (woken.length === 0) return;
    const set = this.toWake.get(runner) ?? new Set<string>();
    for (const id of woken) set.add(id);
    this.toWake.set(runner, set);
  }

  /** Inserts the deliveries; returns the subscriptions that got one. */
  private async insert(m: EntityManager, events: WebhookEvent[]): Promise<string[]> {
    const subscriptions = (await m.query(
      'SELECT id, event_types, registry, repository FROM webhook_subscriptions WHERE active',
    )) as SubscriptionRow[];
    if (subscriptions.length === 0) return [];
    const filters = subscriptions.map((s) => this.compiled(s));
    const candidates = events.map((event) => ({
      event,
      filters: filters.filter((f) => f.matchesTypeAndRegistry(event)),
    }));
    const repositories = await this.deletionRepositories(m, candidates);
    const rows: OutboxRow[] = [];
    for (const { event, filters: matching } of candidates) {
      const repos =
        event.repositories.kind === 'all'
          ? 'all'
          : event.repositories.kind === 'known'
            ? event.repositories.names
            : (repositories.get(event.repositories.requestId) ?? []);
      for (const f of matching)
        if (f.matchesRepositories(repos))
          rows.push({
            subscriptionId: f.filter.id,
            type: event.type,
            dedupeKey: event.dedupeKey,
            registry: event.registry,
            data: event.data,
          });
    }
    if (rows.length === 0) return [];
    // `seq` must follow commit order, or a receiver could get a later change first. The audit trail's
    // append lock, held until commit by every transaction that records an event, gives that order; it
    // is taken here before the sequence is read (re-entrant: this transaction holds it or will anyway).
    const inserted = (await m.query(
      `WITH appended AS MATERIALIZED (SELECT pg_advisory_xact_lock($1::bigint))
       INSERT INTO webhook_deliveries (subscription_id, event_type, dedupe_key, registry, data, occurred_at)
       SELECT (r.e->>'subscriptionId')::uuid, r.e->>'type', r.e->>'dedupeKey', r.e->>'registry', r.e->'data',
              date_trunc('milliseconds', statement_timestamp())
         FROM appended, jsonb_array_elements($2::jsonb) WITH ORDINALITY AS r(e, ord)
        ORDER BY r.ord
       ON CONFLICT (subscription_id, dedupe_key) DO NOTHING
       RETURNING subscription_id`,
      [AUDIT_APPEND_LOCK, JSON.stringify(rows)],
    )) as { subscription_id: string }[];
    return [...new Set(inserted.map((r) => r.subscription_id))];
  }

  /**
   * The repositories of the deletion requests that a repository-filtered subscription might want, read
   * in the same transaction (a request's items are written before its events).
   */
  private async deletionRepositories(
    m: EntityManager,
    candidates: { event: WebhookEvent; filters: CompiledFilter[] }[],
  ): Promise<Map<string, string[]>> {
    const ids = new Set<string>();
    for (const { event, filters } of candidates)
      if (event.repositories.kind === 'deletion' && filters.some((f) => f.needsRepositories))
        ids.add(event.repositories.requestId);
    if (ids.size === 0) return new Map();
    const rows = (await m.query(
      `SELECT request_id, array_agg(DISTINCT repository) AS repositories
         FROM deletion_items WHERE request_id = ANY($1::uuid[]) GROUP BY request_id`,
      [[...ids]],
    )) as { request_id: string; repositories: string[] }[];
    return new Map(rows.map((r) => [r.request_id, r.repositories]));
  }

  private compiled(s: SubscriptionRow): CompiledFilter {
    const key = JSON.stringify([s.id, s.event_types, s.registry, s.repository]);
    let f = this.filters.get(key);
    if (!f) {
      if (this.filters.size > 10_000) this.filters.clear();
      f = new CompiledFilter({
        id: s.id,
        eventTypes: s.event_types,
        registry: s.registry,
        repository: s.repository,
      });
      this.filters.set(key, f);
    }
    return f;
  }
}
