import { ValidationError } from './domain-error.js';

/** Opaque cursors: base64url JSON, so clients cannot depend on their shape. */
export function encodeCursor(value: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function decodeCursor<T extends Record<string, unknown>>(
  cursor: string | undefined,
  check: (v: unknown) => v is T,
): T | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  if (cursor.length > 2048) throw new ValidationError('cursor is too long', { field: 'cursor' });
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (check(v)) return v;
  } catch {
    /* fall through to the error below */
  }
  throw new ValidationError('cursor is not valid', { field: 'cursor' });
}
