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
import { asDate, ISO_DATE_TIME } from '../common/graphql-types.js';
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
  valuesMap: {
    planned: { description: 'A dry run: stored, waiting for executeDeletion.' },
    queued: { description: 'Waiting for a worker.' },
    running: { description: 'Workers are deleting its items.' },
    succeeded: { description: 'Final: no item failed (some may have been skipped).' },
    partially_failed: { description: 'Final: some items failed, others succeeded.' },
    failed: { description: 'Final: items failed and none succeeded.' },
    cancelled: { description: 'Final: cancelled before every item ran.' },
  },
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
  valuesMap: {
    planned: { description: 'Part of a dry run: deleted when the plan is executed.' },
    pending: { description: 'Waiting for a worker.' },
    running: { description: 'Being deleted now.' },
    succeeded: { description: 'Final: deleted (alreadyGone tells whether it was gone before).' },
    failed: { description: 'Final: the delete failed for good (see error).' },
    skipped: { description: 'Final: nothing to do: not found, a duplicate or in use (see error).' },
    cancelled: { description: 'Final: cancelled before it ran.' },
  },
});

export enum DeletionKindValue {
  manifest = 'manifest',
  tag = 'tag',
}
registerEnumType(DeletionKindValue, {
  name: 'DeletionKind',
  description:
    'manifest: delete the image, and so every tag pointing at its digest; tag: remove only this tag and keep the image for its other tags.',
  valuesMap: {
    manifest: { description: 'Delete the image by digest, and with it every tag pointing at that digest.' },
    tag: { description: 'Remove only this tag; the image stays for its other tags.' },
  },
});

@ObjectType('DeletionActor', { description: 'Who asked for the deletion.' })
export class DeletionActorObject {
  @Field({ description: 'user, service, system or anonymous (as ActorType).' }) type: string;
  @Field(() => String, { nullable: true, description: 'Stable id: OIDC sub, service account id, …' })
  id: string | null;
  @Field(() => String, { nullable: true, description: 'Display name at the time of the request.' })
  name: string | null;
}

@ObjectType('DeletionCounts', { description: 'Items of the request by status.' })
export class DeletionCountsObject {
  @Field(() => Int, { description: 'Items of a plan not executed yet.' }) planned: number;
  @Field(() => Int, { description: 'Items waiting for a worker.' }) pending: number;
  @Field(() => Int, { description: 'Items being deleted now.' }) running: number;
  @Field(() => Int, { description: 'Items deleted.' }) succeeded: number;
  @Field(() => Int, { description: 'Items whose delete failed for good.' }) failed: number;
  @Field(() => Int, { description: 'Items with nothing to do.' }) skipped: number;
  @Field(() => Int, { description: 'Items cancelled before they ran.' }) cancelled: number;
}

@ObjectType('DeletionItemError', { description: 'Why an item failed or was skipped.' })
export class DeletionItemErrorObject {
  @Field({
    description: 'Stable code: MANIFEST_UNKNOWN, MANIFEST_IN_USE, TAG_MOVED, TAG_ADDED, UPSTREAM_*, …',
  })
  code: string;
  @Field({ description: 'What happened, for people.' }) message: string;
}

@ObjectType('DeletionItem', { description: 'One image or tag of a deletion request, and what became of it.' })
export class DeletionItemObject {
  @Field(() => Int, { description: 'Index of the item in the request.' }) position: number;
  @Field({ description: 'Repository name.' }) repository: string;
  @Field({ description: 'The tag or digest as given.' }) reference: string;
  @Field(() => DeletionKindValue, { description: 'The image, or only the tag.' }) kind: string;
  @Field(() => String, { nullable: true, description: 'The digest the reference resolved to.' })
  digest: string | null;
  @Field(() => String, {
    nullable: true,
    description: 'Media type of that manifest; null when not resolved.',
  })
  mediaType: string | null;
  @Field(() => [String], { description: 'Every tag this item removes.' }) tags: string[];
  @Field(() => Float, {
    description: 'Bytes of blobs no remaining tag of the repository references (freed by the next GC).',
  })
  estimatedBytes: number;
  @Field(() => DeletionItemStatusValue, { description: 'Where the item stands.' }) status: string;
  @Field(() => Int, { description: 'Delete attempts workers made.' }) attempts: number;
  @Field(() => Boolean, { nullable: true, description: 'It was gone before this delete.' })
  alreadyGone: boolean | null;
  @Field(() => String, {
    nullable: true,
    description: 'manifest-delete, tag-delete (3.x) or throwaway-manifest (2.x tag delete).',
  })
  method: string | null;
  @Field(() => Int, {
    nullable: true,
    description: 'HTTP status the registry answered the delete; null before.',
  })
  upstreamStatus: number | null;
  @Field(() => DeletionItemErrorObject, {
    nullable: true,
    description: 'Why it failed or was skipped; null otherwise.',
  })
  error: DeletionItemErrorObject | null;
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When it reached a final status; null until then.',
  })
  finishedAt: Date | null;
}

@ObjectType('DeletionItemPage', { description: 'A page of a deletion request’s items.' })
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
  @Field(() => ID, { description: 'The request’s uuid.' }) id: string;
  @Field({ description: 'Registry name.' }) registry: string;
  @Field(() => DeletionStatusValue, { description: 'Where the request stands.' }) status: string;
  @Field({ description: 'Created as a plan (dry run) rather than queued at once.' }) dryRun: boolean;
  @Field(() => String, { nullable: true, description: 'Why, as given by the caller.' }) reason: string | null;
  @Field(() => Int, { nullable: true, description: 'The bound given by the caller; null when none.' })
  maxDeletions: number | null;
  @Field(() => DeletionActorObject, { description: 'Who asked for it.' }) actor: DeletionActorObject;
  @Field(() => String, { nullable: true, description: 'Client address of the request that created it.' })
  sourceIp: string | null;
  @Field(() => String, { nullable: true, description: 'The API request that created it (x-request-id).' })
  requestId: string | null;
  @Field(() => Int, { description: 'Number of items.' }) itemCount: number;
  @Field(() => Float, { description: 'Sum of the items’ estimatedBytes.' }) estimatedBytes: number;
  @Field(() => DeletionCountsObject, { description: 'Its items by status.' }) counts: DeletionCountsObject;
  @Field(() => GraphQLISODateTime, { description: 'When it was created.' }) createdAt: Date;
  @Field(() => GraphQLISODateTime, { description: 'When it last changed.' }) updatedAt: Date;
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When it was queued for the workers (at creation, or by executeDeletion); null for a plan.',
  })
  executedAt: Date | null;
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When it reached a final status; null until then.',
  })
  finishedAt: Date | null;
}

@ObjectType('DeletionPage', { description: 'A page of deletion requests.' })
export class DeletionPageObject {
  @Field(() => [DeletionObject], { description: 'In the order asked for (sort).' }) items: DeletionObject[];
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@InputType('DeletionFilter', { description: 'Every field narrows the list; leave out what does not matter.' })
export class DeletionFilterInput {
  @Field({ nullable: true, description: 'Registry name.' })
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
  @IsDate({ message: ISO_DATE_TIME })
  from?: Date;

  @Field(() => GraphQLISODateTime, { nullable: true, description: 'Created before.' })
  @IsOptional()
  @IsDate({ message: ISO_DATE_TIME })
  to?: Date;
}

@InputType('DeletionItemInput', { description: 'One image or tag to delete.' })
export class DeletionItemInputObject {
  @Field({ description: 'Repository name.' }) @IsString() @MaxLength(255) repository: string;

  @Field({ description: 'A tag or a digest.' }) @IsString() @MaxLength(200) reference: string;

  @Field(() => DeletionKindValue, {
    nullable: true,
    defaultValue: DeletionKindValue.manifest,
    description: 'The image (the default) or only the tag.',
  })
  @IsOptional()
  @IsEnum(DeletionKindValue)
  kind?: DeletionKindValue;
}

@InputType('CreateDeletionInput', {
  description:
    'A bulk deletion, as POST /api/v1/deletions: planned and stored with dryRun, queued otherwise; refused whole when it is larger than maxDeletions or DELETE_MAX_ITEMS.',
})
export class CreateDeletionInput {
  @Field({ description: 'Registry name.' }) @IsString() @MaxLength(63) registry: string;

  @Field(() => [DeletionItemInputObject], { description: 'What to delete, at least one item.' })
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
