import { Injectable, PipeTransform } from '@nestjs/common';
import { Args, ID } from '@nestjs/graphql';
import { Matches } from 'class-validator';
import { ValidationError } from './domain-error.js';

/*
 * Ids of stored records (GC runs, deletion requests, webhook subscriptions and deliveries) are uuids,
 * and the columns they are looked up in are uuid columns: a string that is not one is refused at the
 * boundary with 400 VALIDATION_FAILED, never handed to Postgres (which fails the query). REST checks
 * them in its param DTOs with IsUuidId, GraphQL in its arguments with UuidArg: the same rule, the same
 * message, the same code.
 */

/** A uuid as the database writes it (lower-case hex). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The refusal of a malformed id: `id must be a GC run id (uuid)`. */
export const uuidProblem = (field: string, what: string) => `${field} must be ${what} (uuid)`;

/** class-validator, for REST params and GraphQL argument classes: `@IsUuidId('a GC run id')`. */
export function IsUuidId(what: string): PropertyDecorator {
  return Matches(UUID_RE, { message: ({ property }) => uuidProblem(property, what) });
}

/** Refuses a GraphQL id argument that is not a uuid, as the REST param DTOs do (nulls are left alone). */
@Injectable()
export class UuidArgPipe implements PipeTransform<unknown, unknown> {
  constructor(
    private readonly field: string,
    private readonly what: string,
  ) {}

  transform(value: unknown): unknown {
    if (value === null || value === undefined) return value;
    if (typeof value === 'string' && UUID_RE.test(value)) return value;
    const problem = uuidProblem(this.field, this.what);
    throw new ValidationError(problem, { problems: [problem] });
  }
}

/** A GraphQL `ID` argument that names a stored record by its uuid: `@UuidArg('id', 'a GC run id')`. */
export function UuidArg(name: string, what: string, options: { description?: string } = {}) {
  return Args(name, { type: () => ID, ...options }, new UuidArgPipe(name, what));
}
