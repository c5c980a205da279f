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
});

@ObjectType('AuditActor', { description: 'Who acted, as recorded at the time.' })
export class AuditActorObject {
  @Field(() => ActorType) type: string;
  @Field(() => String, { nullable: true, description: 'Stable id: OIDC sub, service account id, …' })
  id: string | null;
  @Field(() => String, { nullable: true, description: 'Display name at the time of the action.' })
  name: string | null;
}

@ObjectType('AuditSubject', { description: 'The record an event is about.' })
export class AuditSubjectObject {
  @Field({ description: 'deletion_request, gc_run, registry, service_account, role_binding, …' })
  type: string;
  @Field() id: string;
}

@ObjectType('AuditEvent', {
  description:
    'One row of the append-only, hash-chained audit trail: every state change, who made it, from where, and how it ended.',
})
export class AuditEventObject {
  @Field(() => Float, { description: 'Position in the hash chain, from 1, without gaps; time order.' })
  seq: number;
  @Field(() => ID) id: string;
  @Field(() => GraphQLISODateTime) occurredAt: Date;
  @Field({ description: '`<feature>.<verb>`: deletion.requested, deletion.item.succeeded, gc.succeeded, …' })
  action: string;
  @Field(() => AuditActorObject) actor: AuditActorObject;
  @Field(() => String, { nullable: true }) sourceIp: string | null;
  @Field(() => String, { nullable: true, description: 'The API request that caused it (x-request-id).' })
  requestId: string | null;
  @Field(() => String, { nullable: true }) registry: string | null;
  @Field(() => String, { nullable: true }) repository: string | null;
  @Field(() => [String], { description: 'Tags the step removed or concerned.' }) tags: string[];
  @Field(() => String, { nullable: true }) digest: string | null;
  @Field(() => AuditOutcome) outcome: string;
  @Field(() => Int, { nullable: true, description: 'What the registry answered, when the step called it.' })
  upstreamStatus: number | null;
  @Field(() => AuditSubjectObject, { nullable: true }) subject: AuditSubjectObject | null;
  @Field(() => GraphQLJSONObject, { nullable: true }) details: Record<string, unknown> | null;
  @Field(() => String, { nullable: true, description: 'Hash of the row before; null for seq 1.' })
  prevHash: string | null;
  @Field({ description: 'sha256 of this row’s content and prevHash.' }) hash: string;
}

@ObjectType('AuditEventPage')
export class AuditEventPageObject {
  @Field(() => [AuditEventObject]) items: AuditEventObject[];
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

  @Field(() => ActorType, { nullable: true })
  @IsOptional()
  @IsEnum(ActorType)
  actorType?: ActorType;

  @Field({ nullable: true, description: 'An action (deletion.item.failed) or a prefix: deletion.*, gc.*' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  action?: string;

  @Field(() => AuditOutcome, { nullable: true })
  @IsOptional()
  @IsEnum(AuditOutcome)
  outcome?: AuditOutcome;

  @Field({ nullable: true, description: 'deletion_request, gc_run, registry, …' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  subjectType?: string;

  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  subjectId?: string;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'At or after (inclusive).' })
  @IsOptional()
  @IsDate()
  from?: Date;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'Before (exclusive).' })
  @IsOptional()
  @IsDate()
  to?: Date;
}

export function auditEventObject(v: AuditEventView): AuditEventObject {
  return { ...v, occurredAt: new Date(v.occurredAt) };
}
