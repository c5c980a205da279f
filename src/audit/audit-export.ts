import { Readable } from 'node:stream';
import type { AuditEventView } from './audit.dto.js';

/*
 * Audit exports: CSV (RFC 4180) or NDJSON, written from an async source of events with backpressure, so
 * a download of the whole trail holds one page in memory however large it is.
 */

export type ExportFormat = 'csv' | 'ndjson';

export const CSV_COLUMNS = [
  'seq',
  'id',
  'occurredAt',
  'action',
  'outcome',
  'actorType',
  'actorId',
  'actorName',
  'sourceIp',
  'requestId',
  'registry',
  'repository',
  'tags',
  'digest',
  'upstreamStatus',
  'subjectType',
  'subjectId',
  'details',
  'prevHash',
  'hash',
] as const;

/** Spreadsheets run a cell that starts like a formula; such text gets a leading apostrophe (OWASP). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV field: quoted when it holds a quote, a comma or a line break (quotes doubled), empty for
 * null. Text that would start a spreadsheet formula is prefixed with `'`; NDJSON keeps values exact.
 */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'string' ? value : String(value);
  if (typeof value === 'string' && FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvRow(e: AuditEventView): string {
  const values: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    seq: e.seq,
    id: e.id,
    occurredAt: e.occurredAt,
    action: e.action,
    outcome: e.outcome,
    actorType: e.actor.type,
    actorId: e.actor.id,
    actorName: e.actor.name,
    sourceIp: e.sourceIp,
    requestId: e.requestId,
    registry: e.registry,
    repository: e.repository,
    // Tags cannot hold spaces.
    tags: e.tags.join(' '),
    digest: e.digest,
    upstreamStatus: e.upstreamStatus,
    subjectType: e.subject?.type ?? null,
    subjectId: e.subject?.id ?? null,
    details: e.details === null ? null : JSON.stringify(e.details),
    prevHash: e.prevHash,
    hash: e.hash,
  };
  return `${CSV_COLUMNS.map((c) => csvField(values[c])).join(',')}\r\n`;
}

/** The export as a byte stream; it reads the next events only when the client has taken the last ones. */
export function exportStream(events: AsyncIterable<AuditEventView>, format: ExportFormat): Readable {
  async function* lines(): AsyncGenerator<string> {
    if (format === 'csv') yield `${CSV_COLUMNS.join(',')}\r\n`;
    let batch = '';
    for await (const e of events) {
      batch += format === 'csv' ? csvRow(e) : `${JSON.stringify(e)}\n`;
      // Fewer, larger writes: one per ~64 KiB rather than one per event.
      if (batch.length >= 64 * 1024) {
        yield batch;
        batch = '';
      }
    }
    if (batch) yield batch;
  }
  return Readable.from(lines(), { objectMode: false });
}

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8; header=present',
  ndjson: 'application/x-ndjson; charset=utf-8',
};
