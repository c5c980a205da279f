import type { EventEmitter2 } from '@nestjs/event-emitter';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../common/request-context.js';

/*
 * The contract between features and the audit trail.
 *
 * DESIGN says audit is imported by nobody: features do not call the audit module, they emit an event
 * and the audit listener records it. This file is the sanctioned exception, because it holds only the
 * event's shape, its name and the emit helper (no providers, no module): importing it couples a feature
 * to the contract, never to the audit implementation.
 *
 * How to record a state change:
 *
 *   await this.ds.transaction(async (manager) => {
 *     await manager.save(request);                  // the change itself
 *     await recordAudit(this.events, { action: 'deletion.requested', ..., manager });
 *   });
 *
 * The row is written with `manager`, so it commits or rolls back with the change ("no record without
 * its audit entry"). A failed audit write rejects, and also poisons the transaction so that even a
 * caller that swallows the error cannot commit the change without its row.
 *
 * Appends are serialized by a transaction-scoped advisory lock held until the caller commits. Emit the
 * event as the last step before commit (never before an upstream call or a slow query), or every other
 * audited transaction in the system waits behind this one. Callers should run at READ COMMITTED (the
 * default): a REPEATABLE READ snapshot taken before the lock cannot see the newest row, so the append
 * fails with a unique violation instead of extending the chain.
 */

/**
 * The transaction-scoped advisory lock that serializes appends until commit. Whoever must number rows in
 * the trail's (commit) order takes it too in the same transaction: it is re-entrant, so that adds no wait
 * and no deadlock (the webhook outbox does).
 */
export const AUDIT_APPEND_LOCK = 0x7267_6175_6474;

/** The event name the audit listener subscribes to. */
export const AUDIT_EVENT = 'audit.record';
/** Several events of one transaction, written as consecutive rows in one go. */
export const AUDIT_BATCH_EVENT = 'audit.record-batch';

export interface AuditBatch {
  events: Omit<AuditableEvent, 'manager'>[];
  /** The transaction of the changes being recorded, as for a single event. */
  manager?: EntityManager;
}

export type AuditActorType = 'user' | 'service' | 'system' | 'anonymous';
export type AuditOutcome = 'success' | 'failure' | 'pending' | 'info';

export interface AuditActor {
  type: AuditActorType;
  /** Stable identifier (user id, token id, service name); null for anonymous callers. */
  id: string | null;
  /** Display name at the time of the action; ids are what queries should use. */
  name?: string | null;
}

export interface AuditableEvent {
  /** `<feature>.<verb>`, lower case: `deletion.requested`, `deletion.item.executed`, `gc.cancelled`. */
  action: string;
  actor: AuditActor;
  sourceIp?: string | null;
  requestId?: string | null;
  /** Registry name, not id: the trail must stay readable after the registry is unregistered. */
  registry?: string | null;
  repository?: string | null;
  tags?: string[];
  digest?: string | null;
  outcome: AuditOutcome;
  /** HTTP status the registry answered, when the step spoke to one. */
  upstreamStatus?: number | null;
  /** The record the event is about, e.g. `{ type: 'deletion_request', id }`. */
  subject?: { type: string; id: string } | null;
  /** Anything else worth keeping. Stored as JSON and returned by the API: never put secrets here. */
  details?: Record<string, unknown> | null;
  /** The transaction of the change being recorded. Without it the event gets a transaction of its own. */
  manager?: EntityManager;
}

/** What the audit listener returns for each event it recorded. */
export interface AuditReceipt {
  auditSeq: number;
  hash: string;
}

function isReceipt(v: unknown): v is AuditReceipt {
  return typeof v === 'object' && v !== null && typeof (v as AuditReceipt).auditSeq === 'number';
}

function isReceiptList(v: unknown): v is AuditReceipt[] {
  return Array.isArray(v) && v.every(isReceipt);
}

/**
 * Emits the event and resolves once it is written. Rejects when the write fails, and also when no audit
 * listener received it (audit module not loaded, or emitted before the application bootstrapped), which
 * a bare `emitAsync` would report as success.
 */
export async function recordAudit(
  emitter: Pick<EventEmitter2, 'emitAsync'>,
  event: AuditableEvent,
): Promise<AuditReceipt> {
  // emitAsync returns `false` instead of a promise when the emitter has never had a listener.
  const results: unknown = await emitter.emitAsync(AUDIT_EVENT, event);
  const receipt = Array.isArray(results) ? results.find(isReceipt) : undefined;
  if (!receipt) throw new Error(`audit event "${event.action}" was not recorded: no audit listener`);
  return receipt;
}

/**
 * Records several events of one transaction in order, in one write: what a worker settling a chunk of
 * deletes uses instead of one `recordAudit` per item. Same guarantees as `recordAudit`.
 */
export async function recordAuditBatch(
  emitter: Pick<EventEmitter2, 'emitAsync'>,
  batch: AuditBatch,
): Promise<AuditReceipt[]> {
  if (batch.events.length === 0) return [];
  const results: unknown = await emitter.emitAsync(AUDIT_BATCH_EVENT, batch);
  const receipts = Array.isArray(results) ? results.find(isReceiptList) : undefined;
  if (!receipts || receipts.length !== batch.events.length)
    throw new Error(`${batch.events.length} audit events were not recorded: no audit listener`);
  return receipts;
}

/** Who did it, as the request says (actor, address, request id), and the transaction to record it in. */
export function auditBase(ctx: RequestContext, manager?: EntityManager) {
  return {
    actor: ctx.actor,
    sourceIp: ctx.sourceIp,
    requestId: ctx.requestId,
    ...(manager ? { manager } : {}),
  };
}
