import { registerEnumType } from '@nestjs/graphql';
import type { GraphQLSchema } from 'graphql';
import { ValidationError } from './domain-error.js';

/** Sort by time: `desc` newest first (the default), `asc` oldest first. */
export enum SortOrder {
  asc = 'asc',
  desc = 'desc',
}
registerEnumType(SortOrder, {
  name: 'SortOrder',
  description: 'By time: desc (newest first) or asc.',
  valuesMap: {
    asc: { description: 'Oldest first.' },
    desc: { description: 'Newest first.' },
  },
});

const ROOT_DESCRIPTIONS = {
  Query:
    'Reads: registries, the catalog, deletion requests, GC runs and settings, the audit trail, reclaimed space and webhooks. Each field names the permission it needs.',
  Mutation:
    'Changes: registries, deletions, GC runs and settings, webhooks. Each field names the permission it needs.',
  Subscription:
    'Live progress of deletion requests and GC runs over WebSocket (graphql-ws, the bearer token in connectionParams.authorization). Each field names the permission it needs.',
};

/**
 * Gives the root types a description (the code-first schema builder leaves them without one): the
 * GraphQL module's transformSchema hook, before the schema is handed out.
 */
export function describeRootTypes(schema: GraphQLSchema): GraphQLSchema {
  for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()])
    if (type && !type.description)
      type.description = ROOT_DESCRIPTIONS[type.name as keyof typeof ROOT_DESCRIPTIONS];
  return schema;
}

/** GraphQL scalar arguments skip the validation pipe: page sizes are checked here. */
export function pageLimit(limit: number | null | undefined, fallback: number, max: number): number {
  const value = limit ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new ValidationError(`limit must be between 1 and ${max}`, { field: 'limit', max });
  return value;
}

/** An ISO string of a REST view as the Date the DateTime scalar serializes. */
export const asDate = (iso: string | null): Date | null => (iso === null ? null : new Date(iso));

/** What a DateTime filter argument that is not one is told (the scalar leaves an Invalid Date). */
export const ISO_DATE_TIME = '$property must be an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z';
