import { createHash } from 'node:crypto';

/** Everything a row's hash covers, in the form both the writer and the verifier can produce. */
export interface ChainedRow {
  seq: number;
  id: string;
  occurredAt: Date;
  action: string;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  sourceIp: string | null;
  requestId: string | null;
  registry: string | null;
  repository: string | null;
  tags: string[];
  digest: string | null;
  outcome: string;
  upstreamStatus: number | null;
  subjectType: string | null;
  subjectId: string | null;
  details: Record<string, unknown> | null;
  prevHash: string | null;
}

// Bump when the serialization changes, so rows hashed the old way stay verifiable by their version.
const FORMAT = 'rg-audit-v1';

/**
 * sha256 over a fixed-order array of the row's fields, the previous row's hash included. A positional
 * array rather than an object: no key can be left out or reordered without changing the hash.
 */
export function chainHash(row: ChainedRow): string {
  const content = canonicalJson([
    FORMAT,
    String(row.seq),
    row.id,
    row.occurredAt.toISOString(),
    row.action,
    row.actorType,
    row.actorId,
    row.actorName,
    row.sourceIp,
    row.requestId,
    row.registry,
    row.repository,
    row.tags,
    row.digest,
    row.outcome,
    row.upstreamStatus,
    row.subjectType,
    row.subjectId,
    row.details,
    row.prevHash,
  ]);
  return createHash('sha256').update(content, 'utf8').digest('hex');
}

/**
 * JSON with object keys sorted, so a value reads back from jsonb (which reorders keys) to the same
 * text. Input must already be plain JSON data (see toJsonData).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** Reduces a value to what survives a JSON round trip (drops undefined, Dates become strings, ...). */
export function toJsonData<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
