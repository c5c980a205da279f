import {
  Field,
  Float,
  GraphQLISODateTime,
  ID,
  InputType,
  Int,
  ObjectType,
  registerEnumType,
} from '@nestjs/graphql';
import { IsDate, IsEnum, IsOptional, IsString, MaxLength } from 'class-validator';
import { GraphQLJSONObject } from 'graphql-scalars';
import { ISO_DATE_TIME } from '../common/graphql-types.js';
import type { AuditEventView } from './audit.dto.js';

/*
 * The audit trail's GraphQL types. Like audit-event.ts, this file is types only: features that are the
 * subject of audit events (deletions, GC) import AuditEvent to add a field resolving that subject.
 */

export enum AuditOutcome {
  success = 'success',
  failure = 'failure',
  pending = 'pending',
  info = 'info',
}
registerEnumType(AuditOutcome, {
  name: 'AuditOutcome',
  description:
    'success, failure, pending (accepted, not done yet) or info (nothing changed: a plan, a cancel).',
  valuesMap: {
    success: { description: 'The step did what was asked.' },
    failure: { description: 'The step failed.' },
    pending: { description: 'Accepted, not done yet (e.g. a deletion queued for the workers).' },
    info: { description: 'Nothing changed: a plan, a cancel, a notice.' },
  },
});

export enum ActorType {
  user = 'user',
  service = 'service',
  system = 'system',
  anonymous = 'anonymous',
}
registerEnumType(ActorType, {
  name: 'ActorType',
  description:
    'user (OIDC), service (a service account or the bootstrap admin), system (the gateway itself), anonymous.',
  valuesMap: {
    user: { description: 'A person, authenticated by an OIDC token.' },
    service: { description: 'A service account (API token) or the bootstrap admin token.' },
    system: { description: 'The gateway itself: workers, schedules, the registries file.' },
    anonymous: { description: 'No known caller, e.g. a registry notification naming no user.' },
  },
});

@ObjectType('AuditActor', { description: 'Who acted, as recorded at the time.' })
export class AuditActorObject {
  @Field(() => ActorType, { description: 'What kind of actor.' }) type: string;
  @Field(() => String, { nullable: true, description: 'Stable id: OIDC sub, service account id, …' })
  id: string | null;
  @Field(() => String, { nullable: true, description: 'Display name at the time of the action.' })
  name: string | null;
}

@ObjectType('AuditSubject', { description: 'The record an event is about.' })
export class AuditSubjectObject {
  @Field({ description: 'deletion_request, gc_run, registry, service_account, role_binding, …' })
  type: string;
  @Field({ description: 'Its id (a uuid for deletion requests and GC runs).' }) id: string;
}

@ObjectType('AuditEvent', {
  description:
    'One row of the append-only, hash-chained audit trail: every state change, who made it, from where, and how it ended.',
})
export class AuditEventObject {
  @Field(() => Float, { description: 'Position in the hash chain, from 1, without gaps; time order.' })
  seq: number;
  @Field(() => ID, { description: 'The event’s uuid.' }) id: string;
  @Field(() => GraphQLISODateTime, { description: 'When it was recorded.' }) occurredAt: Date;
  @Field({ description: '`<feature>.<verb>`: deletion.requested, deletion.item.succeeded, gc.succeeded, …' })
  action: string;
  @Field(() => AuditActorObject, { description: 'Who acted.' }) actor: AuditActorObject;
  @Field(() => String, {
    nullable: true,
    description: 'Client address of the API request; null for the gateway’s own steps.',
  })
  sourceIp: string | null;
  @Field(() => String, { nullable: true, description: 'The API request that caused it (x-request-id).' })
  requestId: string | null;
  @Field(() => String, {
    nullable: true,
    description: 'Registry name (kept after it is unregistered); null when none is concerned.',
  })
  registry: string | null;
  @Field(() => String, { nullable: true, description: 'Repository concerned; null when none is.' })
  repository: string | null;
  @Field(() => [String], { description: 'Tags the step removed or concerned.' }) tags: string[];
  @Field(() => String, { nullable: true, description: 'Manifest digest concerned; null when none is.' })
  digest: string | null;
  @Field(() => AuditOutcome, { description: 'How the step ended.' }) outcome: string;
  @Field(() => Int, { nullable: true, description: 'What the registry answered, when the step called it.' })
  upstreamStatus: number | null;
  @Field(() => AuditSubjectObject, {
    nullable: true,
    description: 'The record the event is about (see deletion and gcRun); null when none.',
  })
  subject: AuditSubjectObject | null;
  @Field(() => GraphQLJSONObject, {
    nullable: true,
    description: 'Anything else the step kept, as JSON (never secrets); null when nothing.',
  })
  details: Record<string, unknown> | null;
  @Field(() => String, { nullable: true, description: 'Hash of the row before; null for seq 1.' })
  prevHash: string | null;
  @Field({ description: 'sha256 of this row’s content and prevHash.' }) hash: string;
}

@ObjectType('AuditEventPage', { description: 'A page of audit events.' })
export class AuditEventPageObject {
  @Field(() => [AuditEventObject], { description: 'In the order asked for (sort).' })
  items: AuditEventObject[];
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@InputType('AuditEventFilter', {
  description: 'Every field narrows the list; leave out what does not matter.',
})
export class AuditEventFilterInput {
  @Field({ nullable: true, description: 'Registry name.' })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;

  @Field({ nullable: true, description: 'A repository name or a glob: team-a/**, */api, team-{a,b}/*.' })
  @IsOptional()
  @IsString()
  @MaxLength(1024)
  repository?: string;

  @Field({ nullable: true, description: 'Actor id (OIDC sub, service account id).' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  actor?: string;

  @Field(() => ActorType, { nullable: true, description: 'Only actors of this kind.' })
  @IsOptional()
  @IsEnum(ActorType)
  actorType?: ActorType;

  @Field({ nullable: true, description: 'An action (deletion.item.failed) or a prefix: deletion.*, gc.*' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  action?: string;

  @Field(() => AuditOutcome, { nullable: true, description: 'Only events with this outcome.' })
  @IsOptional()
  @IsEnum(AuditOutcome)
  outcome?: AuditOutcome;

  @Field({ nullable: true, description: 'deletion_request, gc_run, registry, …' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  subjectType?: string;

  @Field({ nullable: true, description: 'Only events about the record with this id.' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  subjectId?: string;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'At or after (inclusive).' })
  @IsOptional()
  @IsDate({ message: ISO_DATE_TIME })
  from?: Date;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'Before (exclusive).' })
  @IsOptional()
  @IsDate({ message: ISO_DATE_TIME })
  to?: Date;
}

export function auditEventObject(v: AuditEventView): AuditEventObject {
  return { ...v, occurredAt: new Date(v.occurredAt) };
}
