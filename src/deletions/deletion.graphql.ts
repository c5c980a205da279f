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
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsDate,
  IsEnum,
  IsInt,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { asDate } from '../common/graphql-types.js';
import {
  MAX_BODY_ITEMS,
  MAX_DELETIONS_BOUND,
  type DeletionItemView,
  type DeletionRequestView,
} from './deletion.dto.js';

/* GraphQL shapes of deletion requests; the REST views (deletion.dto.ts) are mapped onto them. */

export enum DeletionStatusValue {
  planned = 'planned',
  queued = 'queued',
  running = 'running',
  succeeded = 'succeeded',
  partially_failed = 'partially_failed',
  failed = 'failed',
  cancelled = 'cancelled',
}
registerEnumType(DeletionStatusValue, {
  name: 'DeletionStatus',
  description:
    'planned (a dry run waiting for executeDeletion), queued, running, then succeeded, partially_failed, failed or cancelled.',
});

export enum DeletionItemStatusValue {
  planned = 'planned',
  pending = 'pending',
  running = 'running',
  succeeded = 'succeeded',
  failed = 'failed',
  skipped = 'skipped',
  cancelled = 'cancelled',
}
registerEnumType(DeletionItemStatusValue, {
  name: 'DeletionItemStatus',
  description:
    'planned, pending (queued), running, succeeded, failed, skipped (nothing to do: not found, duplicate, in use) or cancelled.',
});

export enum DeletionKindValue {
  manifest = 'manifest',
  tag = 'tag',
}
registerEnumType(DeletionKindValue, {
  name: 'DeletionKind',
  description:
    'manifest: delete the image, and so every tag pointing at its digest; tag: remove only this tag and keep the image for its other tags.',
});

@ObjectType('DeletionActor', { description: 'Who asked for the deletion.' })
export class DeletionActorObject {
  @Field() type: string;
  @Field(() => String, { nullable: true }) id: string | null;
  @Field(() => String, { nullable: true }) name: string | null;
}

@ObjectType('DeletionCounts', { description: 'Items of the request by status.' })
export class DeletionCountsObject {
  @Field(() => Int) planned: number;
  @Field(() => Int) pending: number;
  @Field(() => Int) running: number;
  @Field(() => Int) succeeded: number;
  @Field(() => Int) failed: number;
  @Field(() => Int) skipped: number;
  @Field(() => Int) cancelled: number;
}

@ObjectType('DeletionItemError')
export class DeletionItemErrorObject {
  @Field({
    description: 'Stable code: MANIFEST_UNKNOWN, MANIFEST_IN_USE, TAG_MOVED, TAG_ADDED, UPSTREAM_*, …',
  })
  code: string;
  @Field() message: string;
}

@ObjectType('DeletionItem', { description: 'One image or tag of a deletion request, and what became of it.' })
export class DeletionItemObject {
  @Field(() => Int, { description: 'Index of the item in the request.' }) position: number;
  @Field() repository: string;
  @Field({ description: 'The tag or digest as given.' }) reference: string;
  @Field(() => DeletionKindValue) kind: string;
  @Field(() => String, { nullable: true, description: 'The digest the reference resolved to.' })
  digest: string | null;
  @Field(() => String, { nullable: true }) mediaType: string | null;
  @Field(() => [String], { description: 'Every tag this item removes.' }) tags: string[];
  @Field(() => Float, {
    description: 'Bytes of blobs no remaining tag of the repository references (freed by the next GC).',
  })
  estimatedBytes: number;
  @Field(() => DeletionItemStatusValue) status: string;
  @Field(() => Int) attempts: number;
  @Field(() => Boolean, { nullable: true, description: 'It was gone before this delete.' })
  alreadyGone: boolean | null;
  @Field(() => String, {
    nullable: true,
    description: 'manifest-delete, tag-delete (3.x) or throwaway-manifest (2.x tag delete).',
  })
  method: string | null;
  @Field(() => Int, { nullable: true }) upstreamStatus: number | null;
  @Field(() => DeletionItemErrorObject, { nullable: true }) error: DeletionItemErrorObject | null;
  @Field(() => GraphQLISODateTime, { nullable: true }) finishedAt: Date | null;
}

@ObjectType('DeletionItemPage')
export class DeletionItemPageObject {
  @Field(() => [DeletionItemObject], { description: 'In request order.' }) items: DeletionItemObject[];
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@ObjectType('Deletion', {
  description:
    'A deletion request: one image, one tag, or a bulk request; planned (dry run) or queued, executed by workers.',
})
export class DeletionObject {
  @Field(() => ID) id: string;
  @Field() registry: string;
  @Field(() => DeletionStatusValue) status: string;
  @Field() dryRun: boolean;
  @Field(() => String, { nullable: true, description: 'Why, as given by the caller.' }) reason: string | null;
  @Field(() => Int, { nullable: true }) maxDeletions: number | null;
  @Field(() => DeletionActorObject) actor: DeletionActorObject;
  @Field(() => String, { nullable: true }) sourceIp: string | null;
  @Field(() => String, { nullable: true }) requestId: string | null;
  @Field(() => Int) itemCount: number;
  @Field(() => Float, { description: 'Sum of the items’ estimatedBytes.' }) estimatedBytes: number;
  @Field(() => DeletionCountsObject) counts: DeletionCountsObject;
  @Field(() => GraphQLISODateTime) createdAt: Date;
  @Field(() => GraphQLISODateTime) updatedAt: Date;
  @Field(() => GraphQLISODateTime, { nullable: true }) executedAt: Date | null;
  @Field(() => GraphQLISODateTime, { nullable: true }) finishedAt: Date | null;
}

@ObjectType('DeletionPage')
export class DeletionPageObject {
  @Field(() => [DeletionObject]) items: DeletionObject[];
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@InputType('DeletionFilter', { description: 'Every field narrows the list; leave out what does not matter.' })
export class DeletionFilterInput {
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;

  @Field({
    nullable: true,
    description: 'Requests with an item in this repository; a name or a glob (team-a/**).',
  })
  @IsOptional()
  @IsString()
  @MaxLength(1024)
  repository?: string;

  @Field({ nullable: true, description: 'Actor id.' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  actor?: string;

  @Field(() => [DeletionStatusValue], { nullable: true, description: 'Any of these statuses.' })
  @IsOptional()
  @IsArray()
  @IsEnum(DeletionStatusValue, { each: true })
  status?: DeletionStatusValue[];

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'Created at or after.' })
  @IsOptional()
  @IsDate()
  from?: Date;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'Created before.' })
  @IsOptional()
  @IsDate()
  to?: Date;
}

@InputType('DeletionItemInput')
export class DeletionItemInputObject {
  @Field() @IsString() @MaxLength(255) repository: string;

  @Field({ description: 'A tag or a digest.' }) @IsString() @MaxLength(200) reference: string;

  @Field(() => DeletionKindValue, { nullable: true, defaultValue: DeletionKindValue.manifest })
  @IsOptional()
  @IsEnum(DeletionKindValue)
  kind?: DeletionKindValue;
}

@InputType('CreateDeletionInput', {
  description:
    'A bulk deletion, as POST /api/v1/deletions: planned and stored with dryRun, queued otherwise; refused whole when it is larger than maxDeletions or DELETE_MAX_ITEMS.',
})
export class CreateDeletionInput {
  @Field() @IsString() @MaxLength(63) registry: string;

  @Field(() => [DeletionItemInputObject])
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_BODY_ITEMS)
  @ValidateNested({ each: true })
  @Type(() => DeletionItemInputObject)
  items: DeletionItemInputObject[];

  @Field({
    nullable: true,
    defaultValue: false,
    description: 'Store the plan (status planned) without acting.',
  })
  @IsOptional()
  @IsBoolean()
  dryRun?: boolean;

  @Field({ nullable: true, description: 'Why: kept with the request and in the audit trail.' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  reason?: string;

  @Field(() => Int, { nullable: true, description: 'Refuse if it would delete more manifests and tags.' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_DELETIONS_BOUND)
  maxDeletions?: number;
}

export function deletionObject(view: DeletionRequestView): DeletionObject {
  // Items are a paged field of their own.
  const { items: _items, ...v } = view;
  return {
    ...v,
    createdAt: new Date(v.createdAt),
    updatedAt: new Date(v.updatedAt),
    executedAt: asDate(v.executedAt),
    finishedAt: asDate(v.finishedAt),
  };
}

export function deletionItemObject(v: DeletionItemView): DeletionItemObject {
  return { ...v, finishedAt: asDate(v.finishedAt) };
}
