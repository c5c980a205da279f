import { describe, expect, it } from 'vitest';
import { ChainedRow, canonicalJson, chainHash, toJsonData } from './audit-chain.js';

const row: ChainedRow = {
  seq: 2,
  id: '3f1c2a9e-7d7b-4c55-9a57-0c3e2f6b8d11',
  occurredAt: new Date('2026-11-22T10:00:00.123Z'),
  action: 'deletion.requested',
  actorType: 'user',
  actorId: 'u-1',
  actorName: 'Ada',
  sourceIp: '10.0.0.1',
  requestId: 'req-1',
  registry: 'plain',
  repository: 'team-a/api',
  tags: ['v1', 'latest'],
  digest: `sha256:${'a'.repeat(64)}`,
  outcome: 'pending',
  upstreamStatus: 202,
  subjectType: 'deletion_request',
  subjectId: 'r-1',
  details: { b: 1, a: { d: [2, 1], c: null } },
  prevHash: 'f'.repeat(64),
};

describe('audit chain hashing', () => {
  it('serializes objects with sorted keys at every depth, arrays in order', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: 'é' }, 10: true, 9: null })).toBe(
      '{"10":true,"9":null,"a":{"c":"é","d":[2,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ b: 1, a: 2 })).toBe(canonicalJson({ a: 2, b: 1 }));
  });

  it('keeps only what survives JSON', () => {
    expect(toJsonData({ a: undefined, d: new Date(0), n: NaN })).toEqual({
      d: '1970-01-01T00:00:00.000Z',
      n: null,
    });
  });

  // Rows already in a database were hashed this way: a change here must bump the format instead.
  it('hashes a row to a fixed value', () => {
    expect(chainHash(row)).toBe(chainHash({ ...row, details: { a: { c: null, d: [2, 1] }, b: 1 } }));
    expect(chainHash(row)).toBe('db27c4dd7a6a2cd283133d434cdc43941aa1008d3f40ba2253f16ce806e9257f');
  });

  it('changes when any field changes', () => {
    const base = chainHash(row);
    const changed: Partial<ChainedRow>[] = [
      { seq: 3 },
      { id: '3f1c2a9e-7d7b-4c55-9a57-0c3e2f6b8d12' },
      { occurredAt: new Date('2026-11-22T10:00:00.124Z') },
      { action: 'deletion.planned' },
      { actorType: 'service' },
      { actorId: null },
      { actorName: 'Eve' },
      { sourceIp: '10.0.0.2' },
      { requestId: null },
      { registry: 'other' },
      { repository: 'team-a/web' },
      { tags: ['latest', 'v1'] },
      { digest: null },
      { outcome: 'success' },
      { upstreamStatus: 404 },
      { subjectType: 'gc_run' },
      { subjectId: 'r-2' },
      { details: { b: 2, a: { d: [2, 1], c: null } } },
      { prevHash: null },
    ];
    expect(new Set(changed.map((c) => Object.keys(c)[0])).size).toBe(Object.keys(row).length);
    for (const c of changed) expect(chainHash({ ...row, ...c }), JSON.stringify(c)).not.toBe(base);
  });
});
