import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsISO8601,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { AUDIT_ACTOR_TYPES } from '../audit/audit.dto.js';
import { PageQuery } from '../common/page-query.js';
import type { DeletionItemStatus, DeletionKind, DeletionStatus } from './deletion.entity.js';
import { IsUuidId } from '../common/uuid-ids.js';

export const DELETION_STATUSES: DeletionStatus[] = [
  'planned',
  'queued',
  'running',
  'succeeded',
  'partially_failed',
  'failed',
  'cancelled',
];
export const ITEM_STATUSES: DeletionItemStatus[] = [
  'planned',
  'pending',
  'running',
  'succeeded',
  'failed',
  'skipped',
  'cancelled',
];
/** maxDeletions is stored in a Postgres integer column, and GraphQL's Int has the same range. */
export const MAX_DELETIONS_BOUND = 2_147_483_647;
/** Hard ceiling of the body, whatever DELETE_MAX_ITEMS says. */
export const MAX_BODY_ITEMS = 100_000;

const toBool = ({ value }: { value: unknown }) =>
  value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value;

export class DeletionItemInput {
  @ApiProperty({ example: 'team-a/api' })
  @IsString()
  @MaxLength(255)
  repository: string;

  @ApiProperty({ description: 'A tag or a digest', example: 'v1.2.3' })
  @IsString()
  @MaxLength(200)
  reference: string;

  @ApiPropertyOptional({
    enum: ['manifest', 'tag'],
    default: 'manifest',
    description:
      '`manifest` deletes the image (and so every tag pointing at it); `tag` removes only this tag and keeps the image for its other tags',
  })
  @IsOptional()
  @IsIn(['manifest', 'tag'])
  kind?: DeletionKind;
}

export class CreateDeletionDto {
  @ApiProperty({ example: 'prod-eu' })
  @IsString()
  @MaxLength(63)
  registry: string;

  @ApiProperty({ type: [DeletionItemInput] })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_BODY_ITEMS)
  @ValidateNested({ each: true })
  @Type(() => DeletionItemInput)
  items: DeletionItemInput[];

  @ApiPropertyOptional({ default: false, description: 'Store the plan (status planned) without acting' })
  @IsOptional()
  @IsBoolean()
  dryRun?: boolean;

  @ApiPropertyOptional({ description: 'Why: kept with the request and in the audit trail' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  reason?: string;

  @ApiPropertyOptional({
    minimum: 1,
    maximum: MAX_DELETIONS_BOUND,
    description: 'Refuse the request if it would delete more manifests and tags than this',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_DELETIONS_BOUND)
  maxDeletions?: number;
}

export class DeleteImageQueryDto {
  @ApiPropertyOptional({ default: false, description: 'Return (and store) the plan without acting' })
  @IsOptional()
  @Transform(toBool)
  @IsBoolean()
  dryRun?: boolean;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  reason?: string;
}

export class DeletionQueryDto extends PageQuery(500, 50) {
  @ApiPropertyOptional() @IsOptional() @IsString() @MaxLength(63) registry?: string;
  @ApiPropertyOptional({ description: 'Requests with an item in this repository' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  repository?: string;
  @ApiPropertyOptional({ description: 'Actor id' }) @IsOptional() @IsString() @MaxLength(255) actor?: string;
  @ApiPropertyOptional({ enum: DELETION_STATUSES })
  @IsOptional()
  @IsIn(DELETION_STATUSES)
  status?: DeletionStatus;
  @ApiPropertyOptional({ description: 'Created at or after (ISO 8601)' })
  @IsOptional()
  @IsISO8601({ strict: true })
  from?: string;
  @ApiPropertyOptional({ description: 'Created before (ISO 8601)' })
  @IsOptional()
  @IsISO8601({ strict: true })
  to?: string;
}

export class DeletionIdParam {
  @ApiProperty({ format: 'uuid', description: 'The deletion request' })
  @IsUuidId('a deletion request id')
  id: string;
}

export class DeletionErrorView {
  @ApiProperty({ example: 'MANIFEST_UNKNOWN' }) code: string;
  @ApiProperty() message: string;
}

export class DeletionItemView {
  @ApiProperty({ description: 'Index of the item in the request' }) position: number;
  @ApiProperty() repository: string;
  @ApiProperty({ description: 'The tag or digest as given' }) reference: string;
  @ApiProperty({ enum: ['manifest', 'tag'] }) kind: DeletionKind;
  @ApiPropertyOptional({ type: String, nullable: true, description: 'The digest the reference resolved to' })
  digest: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) mediaType: string | null;
  @ApiProperty({ type: [String], description: 'Every tag this item removes' }) tags: string[];
  @ApiProperty({
    description: 'Bytes of blobs that no remaining tag of the repository references (freed by the next GC)',
  })
  estimatedBytes: number;
  @ApiProperty({ enum: ITEM_STATUSES }) status: DeletionItemStatus;
  @ApiProperty() attempts: number;
  @ApiPropertyOptional({ type: Boolean, nullable: true, description: 'It was gone before this delete' })
  alreadyGone: boolean | null;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'manifest-delete, tag-delete (3.x) or throwaway-manifest (2.x tag delete)',
  })
  method: string | null;
  @ApiPropertyOptional({ type: Number, nullable: true }) upstreamStatus: number | null;
  @ApiPropertyOptional({ type: DeletionErrorView, nullable: true }) error: DeletionErrorView | null;
  @ApiPropertyOptional({ type: String, nullable: true, format: 'date-time' }) finishedAt: string | null;
}

export class DeletionActorView {
  @ApiProperty({ enum: AUDIT_ACTOR_TYPES }) type: string;
  @ApiPropertyOptional({ type: String, nullable: true }) id: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) name: string | null;
}

export class DeletionCountsView {
  @ApiProperty() planned: number;
  @ApiProperty() pending: number;
  @ApiProperty() running: number;
  @ApiProperty() succeeded: number;
  @ApiProperty() failed: number;
  @ApiProperty() skipped: number;
  @ApiProperty() cancelled: number;
}

export class DeletionRequestView {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() registry: string;
  @ApiProperty({ enum: DELETION_STATUSES }) status: DeletionStatus;
  @ApiProperty() dryRun: boolean;
  @ApiPropertyOptional({ type: String, nullable: true }) reason: string | null;
  @ApiPropertyOptional({ type: Number, nullable: true }) maxDeletions: number | null;
  @ApiProperty({ type: DeletionActorView }) actor: DeletionActorView;
  @ApiPropertyOptional({ type: String, nullable: true }) sourceIp: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) requestId: string | null;
  @ApiProperty() itemCount: number;
  @ApiProperty({ description: 'Sum of the items’ estimatedBytes' }) estimatedBytes: number;
  @ApiProperty({ type: DeletionCountsView }) counts: DeletionCountsView;
  @ApiProperty({ format: 'date-time' }) createdAt: string;
  @ApiProperty({ format: 'date-time' }) updatedAt: string;
  @ApiPropertyOptional({ type: String, nullable: true, format: 'date-time' }) executedAt: string | null;
  @ApiPropertyOptional({ type: String, nullable: true, format: 'date-time' }) finishedAt: string | null;
  @ApiPropertyOptional({ type: [DeletionItemView], description: 'Present on single-request reads' })
  items?: DeletionItemView[];
}

export class DeletionPage {
  @ApiProperty({ type: [DeletionRequestView], description: 'Newest first, without items' })
  items: DeletionRequestView[];
  @ApiPropertyOptional({ type: String, nullable: true }) nextCursor: string | null;
}

export class DeletionItemQueryDto extends PageQuery(1000, 100) {
  @ApiPropertyOptional({ enum: ITEM_STATUSES, description: 'Only items in this status' })
  @IsOptional()
  @IsIn(ITEM_STATUSES)
  status?: DeletionItemStatus;
}

export class DeletionItemPage {
  @ApiProperty({ type: [DeletionItemView] }) items: DeletionItemView[];
  @ApiPropertyOptional({ nullable: true, type: String }) nextCursor: string | null;
}
