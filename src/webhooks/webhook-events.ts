import { randomUUID } from 'node:crypto';
import type { AuditableEvent } from '../audit/audit-event.js';
import { repositoryMatcher } from '../auth/scope.js';

/*
 * Which audit actions become which webhook events, and which subscriptions want them. Pure: the outbox
 * listener and the API's validation share it, and the unit spec covers it without a database.
 */

export const WEBHOOK_EVENT_TYPES = [
  'deletion.requested',
  'deletion.completed',
  'deletion.failed',
  'gc.started',
  'gc.succeeded',
  'gc.failed',
  'registry.manifest.deleted',
  'registry.tag.deleted',
  'registry.repository.deleted',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const WEBHOOK_EVENT_DESCRIPTIONS: Record<WebhookEventType, string> = {
  'deletion.requested': 'a deletion request was committed and queued (or a dry-run plan was executed)',
  'deletion.completed': 'a deletion request ended with every item deleted, or was cancelled',
  'deletion.failed': 'a deletion request ended with some or all items failed',
  'gc.started': 'a garbage collection run started on its worker',
  'gc.succeeded': 'a garbage collection run finished and was verified',
  'gc.failed': 'a garbage collection run failed, or was cancelled',
  'registry.manifest.deleted': 'a manifest was deleted directly on a registry (from its notifications)',
  'registry.tag.deleted': 'a tag alone was deleted directly on a registry (Distribution 3)',
  'registry.repository.deleted': 'a repository was deleted directly on a registry',
};

/** What a subscription receives: an exact type, `<prefix>.*` (e.g. `registry.*`, `gc.*`) or `*`. */
export function eventTypePatternProblem(pattern: string): string | null {
  if ((WEBHOOK_EVENT_TYPES as readonly string[]).includes(pattern) || pattern === '*') return null;
  if (/^[a-z]+(\.[a-z]+)*\.\*$/.test(pattern) && WEBHOOK_EVENT_TYPES.some((t) => typeMatches(pattern, t)))
    return null;
  return `"${pattern}" is not an event type (${WEBHOOK_EVENT_TYPES.join(', ')}), nor a wildcard such as registry.* or *`;
}

export function typeMatches(pattern: string, type: string): boolean {
  if (pattern === '*' || pattern === type) return true;
  return pattern.endsWith('.*') && type.startsWith(pattern.slice(0, -1));
}

/** A webhook event derived from one audit event, before it is matched to subscriptions. */
export interface WebhookEvent {
  type: WebhookEventType;
  /**
   * Identifies the event per subscription: the outbox keeps one delivery per key, so an ending the trail
   * happens to record twice (a re-run chunk job settling an already settled request) is sent once.
   */
  dedupeKey: string;
  registry: string | null;
  /**
   * The repositories the event is about, for repository filters: known (registry.*), to be read from the
   * deletion request's items (`deletion`), or none because it concerns the whole registry (gc.*).
   */
  repositories:
    { kind: 'known'; names: string[] } | { kind: 'deletion'; requestId: string } | { kind: 'all' };
  /** The payload's `data`. */
  data: Record<string, unknown>;
}

const FAILED_DELETIONS = new Set(['failed', 'partially_failed']);

/** The webhook event an audit action stands for, or null (most actions are not webhook events). */
export function webhookEventOf(e: Omit<AuditableEvent, 'manager'>): WebhookEvent | null {
  const status = typeof e.details?.status === 'string' ? e.details.status : null;
  let type: WebhookEventType;
  let key: string;
  switch (e.action) {
    case 'deletion.requested':
    case 'deletion.executed':
      type = 'deletion.requested';
      key = 'deletion.requested';
      break;
    case 'deletion.completed':
      type = status && FAILED_DELETIONS.has(status) ? 'deletion.failed' : 'deletion.completed';
      key = 'deletion.settled';
      break;
    case 'deletion.cancelled':
      // Only when the cancel itself ended the request; otherwise the worker's deletion.completed follows.
      if (status !== 'cancelled') return null;
      type = 'deletion.completed';
      key = 'deletion.settled';
      break;
    case 'gc.started':
    case 'gc.succeeded':
    case 'gc.failed':
      type = e.action;
      key = e.action;
      break;
    case 'registry.manifest.deleted':
    case 'registry.tag.deleted':
    case 'registry.repository.deleted':
      type = e.action;
      key = `${e.action}:${e.registry ?? ''}`;
      break;
    default:
      return null;
  }
  const subject = e.subject ?? null;
  const registry = e.registry ?? null;
  return {
    type,
    dedupeKey: subject ? `${key}:${subject.type}:${subject.id}` : `${key}:${randomUUID()}`,
    registry,
    repositories: type.startsWith('registry.')
      ? { kind: 'known', names: e.repository ? [e.repository] : [] }
      : type.startsWith('deletion.') && subject?.type === 'deletion_request'
        ? { kind: 'deletion', requestId: subject.id }
        : type.startsWith('deletion.')
          ? { kind: 'known', names: e.repository ? [e.repository] : [] }
          : { kind: 'all' },
    data: {
      auditAction: e.action,
      subject,
      registry,
      repository: e.repository ?? null,
      digest: e.digest ?? null,
      tags: e.tags ?? [],
      actor: { type: e.actor.type, id: e.actor.id, name: e.actor.name ?? null },
      outcome: e.outcome,
      requestId: e.requestId ?? null,
      upstreamStatus: e.upstreamStatus ?? null,
      details: e.details ?? {},
    },
  };
}

/** The filters of one subscription, compiled once. */
export interface SubscriptionFilter {
  id: string;
  eventTypes: string[];
  registry: string | null;
  repository: string | null;
}

export class CompiledFilter {
  private readonly matchRepository: ((name: string) => boolean) | null;

  constructor(readonly filter: SubscriptionFilter) {
    this.matchRepository = filter.repository ? repositoryMatcher(filter.repository) : null;
  }

  get needsRepositories(): boolean {
    return this.matchRepository !== null;
  }

  /** Event type and registry; the repository filter is checked by `matchesRepositories`. */
  matchesTypeAndRegistry(event: WebhookEvent): boolean {
    if (!this.filter.eventTypes.some((p) => typeMatches(p, event.type))) return false;
    return this.filter.registry === null || this.filter.registry === event.registry;
  }

  /**
   * A repository filter passes events about a matching repository, and registry-wide events (gc.*),
   * which concern every repository of their registry.
   */
  matchesRepositories(repositories: string[] | 'all'): boolean {
    if (!this.matchRepository || repositories === 'all') return true;
    return repositories.some((r) => this.matchRepository!(r));
  }
}
