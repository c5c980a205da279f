import { describe, expect, it } from 'vitest';
import type { AuditableEvent } from '../audit/audit-event.js';
import { CompiledFilter, eventTypePatternProblem, typeMatches, webhookEventOf } from './webhook-events.js';

const base = {
  actor: { type: 'user' as const, id: 'alice', name: 'Alice' },
  registry: 'prod',
  outcome: 'success' as const,
};
const deletion = (action: string, details: Record<string, unknown> = {}): AuditableEvent => ({
  ...base,
  action,
  subject: { type: 'deletion_request', id: 'd1' },
  details,
});

describe('audit actions -> webhook events', () => {
  it.each([
    ['deletion.requested', {}, 'deletion.requested'],
    ['deletion.executed', {}, 'deletion.requested'],
    ['deletion.completed', { status: 'succeeded' }, 'deletion.completed'],
    ['deletion.completed', { status: 'cancelled' }, 'deletion.completed'],
    ['deletion.completed', { status: 'failed' }, 'deletion.failed'],
    ['deletion.completed', { status: 'partially_failed' }, 'deletion.failed'],
    ['deletion.cancelled', { status: 'cancelled' }, 'deletion.completed'],
    ['deletion.cancelled', { status: 'running' }, null],
    ['deletion.planned', {}, null],
    ['deletion.item.succeeded', {}, null],
    ['deletion.item.failed', {}, null],
  ])('%s %j is %s', (action, details, type) => {
    expect(webhookEventOf(deletion(action, details))?.type ?? null).toBe(type);
  });

  it('maps GC and registry events, and nothing else', () => {
    for (const a of ['gc.started', 'gc.succeeded', 'gc.failed'])
      expect(webhookEventOf({ ...base, action: a, subject: { type: 'gc_run', id: 'g' } })?.type).toBe(a);
    for (const a of ['registry.manifest.deleted', 'registry.tag.deleted', 'registry.repository.deleted'])
      expect(webhookEventOf({ ...base, action: a, repository: 'team/app' })?.type).toBe(a);
    for (const a of [
      'gc.requested',
      'gc.cancelled',
      'gc.settings.updated',
      'webhook.created',
      'role_binding.created',
    ])
      expect(webhookEventOf({ ...base, action: a })).toBeNull();
  });

  it('gives an ending one key however it is recorded, so it is delivered once', () => {
    const keys = [
      webhookEventOf(deletion('deletion.cancelled', { status: 'cancelled' }))!.dedupeKey,
      webhookEventOf(deletion('deletion.completed', { status: 'cancelled' }))!.dedupeKey,
      webhookEventOf(deletion('deletion.completed', { status: 'failed' }))!.dedupeKey,
    ];
    expect(new Set(keys).size).toBe(1);
    expect(webhookEventOf(deletion('deletion.requested'))!.dedupeKey).not.toBe(keys[0]);
  });

  it('builds the payload data from the audit event, without the source address', () => {
    const e = webhookEventOf({
      ...deletion('deletion.completed', { status: 'succeeded', counts: { succeeded: 2 } }),
      sourceIp: '10.0.0.1',
      requestId: 'req-1',
    })!;
    expect(e.data).toEqual({
      auditAction: 'deletion.completed',
      subject: { type: 'deletion_request', id: 'd1' },
      registry: 'prod',
      repository: null,
      digest: null,
      tags: [],
      actor: { type: 'user', id: 'alice', name: 'Alice' },
      outcome: 'success',
      requestId: 'req-1',
      upstreamStatus: null,
      details: { status: 'succeeded', counts: { succeeded: 2 } },
    });
    expect(JSON.stringify(e.data)).not.toContain('10.0.0.1');
  });
});

describe('event type patterns', () => {
  it('accepts types and wildcards that match something', () => {
    for (const p of ['deletion.failed', 'registry.*', 'registry.manifest.*', 'gc.*', '*'])
      expect(eventTypePatternProblem(p)).toBeNull();
    for (const p of ['deletion', 'nothing.*', 'gc.finished', 'registry.**', '', 'deletion.*.x'])
      expect(eventTypePatternProblem(p)).not.toBeNull();
  });

  it('matches prefixes at dot boundaries', () => {
    expect(typeMatches('registry.*', 'registry.tag.deleted')).toBe(true);
    expect(typeMatches('deletion.*', 'deletion.failed')).toBe(true);
    expect(typeMatches('gc.*', 'gcx.started')).toBe(false);
    expect(typeMatches('deletion.completed', 'deletion.failed')).toBe(false);
  });
});

describe('subscription filters', () => {
  const f = (o: Partial<ConstructorParameters<typeof CompiledFilter>[0]>) =>
    new CompiledFilter({ id: 's', eventTypes: ['*'], registry: null, repository: null, ...o });
  const registryEvent = webhookEventOf({
    ...base,
    action: 'registry.manifest.deleted',
    repository: 'team-a/api',
  })!;
  const gcEvent = webhookEventOf({ ...base, action: 'gc.started', subject: { type: 'gc_run', id: 'g' } })!;

  it('filters by type and registry', () => {
    expect(f({ eventTypes: ['gc.*'] }).matchesTypeAndRegistry(registryEvent)).toBe(false);
    expect(f({ eventTypes: ['registry.*'] }).matchesTypeAndRegistry(registryEvent)).toBe(true);
    expect(f({ registry: 'other' }).matchesTypeAndRegistry(registryEvent)).toBe(false);
    expect(f({ registry: 'prod' }).matchesTypeAndRegistry(registryEvent)).toBe(true);
  });

  it('filters by repository glob; registry-wide events pass', () => {
    expect(f({ repository: 'team-a/**' }).matchesRepositories(['team-a/api'])).toBe(true);
    expect(f({ repository: 'team-a/**' }).matchesRepositories(['team-b/api'])).toBe(false);
    expect(f({ repository: 'team-a/**' }).matchesRepositories(['team-b/x', 'team-a'])).toBe(true);
    expect(f({ repository: 'team-a/*' }).matchesRepositories('all')).toBe(true);
    expect(gcEvent.repositories).toEqual({ kind: 'all' });
    expect(webhookEventOf(deletion('deletion.requested'))!.repositories).toEqual({
      kind: 'deletion',
      requestId: 'd1',
    });
  });
});
