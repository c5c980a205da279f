import { registerEnumType } from '@nestjs/graphql';
import { ValidationError } from './domain-error.js';

/** Sort by time: `desc` newest first (the default), `asc` oldest first. */
export enum SortOrder {
  asc = 'asc',
  desc = 'desc',
}
registerEnumType(SortOrder, { name: 'SortOrder', description: 'By time: desc (newest first) or asc.' });

/** GraphQL scalar arguments skip the validation pipe: page sizes are checked here. */
export function pageLimit(limit: number | null | undefined, fallback: number, max: number): number {
  const value = limit ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new ValidationError(`limit must be between 1 and ${max}`, { field: 'limit', max });
  return value;
}

/** An ISO string of a REST view as the Date the DateTime scalar serializes. */
export const asDate = (iso: string | null): Date | null => (iso === null ? null : new Date(iso));
