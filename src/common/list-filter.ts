import { ValidationError } from './domain-error.js';

/*
 * GraphQL clients send null for the optional variables they leave unset (`filter: { registry: $registry }`
 * with $registry unset): in a list's filter, null means "no filter", as an absent field does. A reader
 * that took null for a value would look for rows whose column is NULL (and find none) or fail. Every list
 * reader takes its filter through withoutNulls before it reads a field.
 */

/** A list's filter as GraphQL may give it: any field null. */
export type NullableFilter<T> = { [K in keyof T]?: T[K] | null };

/** The filter without its null fields: what is left narrows the list. */
export function withoutNulls<T extends object>(
  filter: T | null | undefined,
): { [K in keyof T]?: Exclude<T[K], null> } {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(filter ?? {}))
    if (value !== null && value !== undefined) out[key] = value;
  return out as { [K in keyof T]?: Exclude<T[K], null> };
}

/**
 * A list's `from`/`to` bound as a Date. The validator's ISO 8601 check accepts forms Date cannot read
 * (2026-W01, 20260101): those are a 400 VALIDATION_FAILED naming the field, not an Invalid Date in a query.
 */
export function instant(value: string, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ValidationError(`${field} is not a valid time`, { field });
  return d;
}

/**
 * A list's time range, `from` inclusive and `to` exclusive: a backwards (or empty) one is refused, as by
 * reclaimedSpace, rather than answered with an empty list.
 */
export function checkTimeRange(from: Date | undefined, to: Date | undefined): void {
  if (from !== undefined && to !== undefined && from.getTime() >= to.getTime())
    throw new ValidationError('from must be before to', { field: 'from' });
}
