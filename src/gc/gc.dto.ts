import { ArgsType, Field, GraphQLISODateTime, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { GraphQLJSONObject } from 'graphql-scalars';
import {
  GC_VERIFICATION_MODES,
  type GcFence,
  type GcPhase,
  type GcStatus,
  type GcTrigger,
  type GcVerification,
} from './gc.entity.js';
import { IsUuidId } from '../common/uuid-ids.js';

export const GC_STATUSES: GcStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
export const GC_FENCES: GcFence[] = ['gateway', 'readonly', 'stop', 'none'];

@InputType('GcRunInput', { description: 'What to collect.' })
export class GcRequestDto {
  @ApiPropertyOptional({ default: false, description: 'List what would be deleted and change nothing.' })
  @Field({ nullable: true, description: 'List what would be deleted and change nothing.' })
  @IsOptional()
  @IsBoolean()
  dryRun?: boolean;

  @ApiPropertyOptional({
    default: false,
    description:
      'Also delete manifests no tag points at (`--delete-untagged`). On Distribution 2.x this deletes the platform manifests of multi-arch images; the run then checks every candidate first and fails with DELETE_UNTAGGED_UNSAFE when an index references one.',
  })
  @Field({ nullable: true, description: 'Also delete manifests no tag points at (`--delete-untagged`).' })
  @IsOptional()
  @IsBoolean()
  deleteUntagged?: boolean;

  @ApiPropertyOptional({
    default: false,
    description:
      'Required when the registry is configured with fence `none`: confirms that GC may run while the registry takes writes. Recorded on the run.',
  })
  @Field({
    nullable: true,
    description: 'Confirms a run without any fence (registries configured with fence `none`).',
  })
  @IsOptional()
  @IsBoolean()
  allowUnfenced?: boolean;
}

@ObjectType('GcVerificationProblem')
export class GcProblemView {
  @ApiProperty() @Field() repository: string;
  @ApiPropertyOptional() @Field({ nullable: true }) tag?: string;
  @ApiPropertyOptional() @Field({ nullable: true }) digest?: string;
  @ApiPropertyOptional() @Field({ nullable: true }) blob?: string;
  @ApiProperty() @Field(() => Int) status: number;
}

@ObjectType('GcStorageProblem', { description: 'Something the storage-side check found wrong.' })
export class GcStorageProblemView {
  @ApiProperty({ description: 'Empty when the problem is not one repository’s.' })
  @Field()
  repository: string;
  @ApiPropertyOptional() @Field({ nullable: true }) tag?: string;
  @ApiProperty({ description: 'The manifest the problem belongs to, or the deleted blob.' })
  @Field()
  digest: string;
  @ApiProperty({ description: 'What is missing (or still there).' }) @Field() blob: string;
  @ApiProperty({ example: 'blob data missing' }) @Field() problem: string;
}

@ObjectType('GcStorageVerification', {
  description: 'What was checked on the storage through the executor after the collection (everything).',
})
export class GcStorageVerificationView {
  @ApiProperty() @Field(() => Int) tagsChecked: number;
  @ApiProperty({ description: 'Tagged manifests and the platform manifests of tagged indexes.' })
  @Field(() => Int)
  manifestsChecked: number;
  @ApiProperty({ description: 'Their configs and layers: stored, and linked in the repository.' })
  @Field(() => Int)
  blobsChecked: number;
  @ApiProperty({ description: 'Blobs the collector deleted: none may still be stored.' })
  @Field(() => Int)
  deletedBlobsChecked: number;
  @ApiProperty({ type: [GcStorageProblemView] })
  @Field(() => [GcStorageProblemView])
  problems: GcStorageProblemView[];
  @ApiProperty({
    type: [GcStorageProblemView],
    description:
      'Found missing, but already missing before the collection (not in the storage read before it, not among what the collector removed): damage the run did not do, which does not fail it. A pull-through cache lists the layers it never fetched here.',
  })
  @Field(() => [GcStorageProblemView], {
    description:
      'Found missing, but already missing before the collection: damage the run did not do, which does not fail it.',
  })
  preexisting: GcStorageProblemView[];
}

@ObjectType('GcVerification', { description: 'What the gateway checked after the collection.' })
export class GcVerificationView {
  @ApiProperty() @Field() ok: boolean;
  @ApiProperty({
    enum: GC_VERIFICATION_MODES,
    description: '`sample`: the registry’s API was asked about a random sample; `full`: about everything.',
  })
  @Field(() => String, { description: 'sample or full' })
  mode: string;
  @ApiProperty({ type: GcStorageVerificationView })
  @Field(() => GcStorageVerificationView)
  storage: GcStorageVerificationView;
  @ApiProperty({
    description: 'Deleted blobs asked about through the registry API (HEAD); each must be gone.',
  })
  @Field(() => Int)
  deletedBlobsChecked: number;
  @ApiProperty({ type: [GcProblemView], description: 'Deleted blobs the registry still claims.' })
  @Field(() => [GcProblemView])
  stillServed: GcProblemView[];
  @ApiProperty({ description: 'Tagged manifests fetched through the registry API, with every blob read.' })
  @Field(() => Int)
  manifestsChecked: number;
  @ApiProperty() @Field(() => Int) blobsChecked: number;
  @ApiProperty({
    type: [GcProblemView],
    description: 'Blobs of tagged manifests the registry does not serve.',
  })
  @Field(() => [GcProblemView])
  missing: GcProblemView[];
  @ApiProperty({
    type: [GcProblemView],
    description:
      'Blobs of tagged images the registry does not serve that the storage lacked before the collection too: not the run’s doing.',
  })
  @Field(() => [GcProblemView], {
    description: 'Blobs of tagged images not served that the storage lacked before the collection too.',
  })
  preexisting: GcProblemView[];
  @ApiProperty({
    description:
      'Every line the collector announced was read (its summary’s counts match the digests it listed). When false (lines lost, e.g. a full disk under the worker’s temporary directory), the deleted blobs checked are those the storage lost, and nothing is taken for pre-existing.',
  })
  @Field({ description: 'Every line the collector announced was read.' })
  outputComplete: boolean;
  @ApiProperty({ description: 'More problems were found than are listed.' }) @Field() truncated: boolean;
}

@ObjectType('GcRunActor')
export class GcActorView {
  @ApiProperty() @Field() type: string;
  @ApiPropertyOptional({ nullable: true }) @Field(() => String, { nullable: true }) id: string | null;
  @ApiPropertyOptional({ nullable: true }) @Field(() => String, { nullable: true }) name: string | null;
}

@ObjectType('GcRunError')
export class GcErrorView {
  @ApiProperty({ example: 'GC_COMMAND_FAILED' }) @Field() code: string;
  @ApiProperty() @Field() message: string;
  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    description:
      "What the error names, as an API error's details: e.g. `manifests` for DELETE_UNTAGGED_UNSAFE, `exitCode` and `output` (its last lines) for GC_COMMAND_FAILED",
  })
  @Field(() => GraphQLJSONObject, {
    nullable: true,
    description:
      "What the error names, as an API error's details (the manifests DELETE_UNTAGGED_UNSAFE refused, say)",
  })
  details: Record<string, unknown> | null;
}

@ObjectType('GcRun', { description: 'One garbage collection of a registry, queued, fenced and verified.' })
export class GcRunView {
  @ApiProperty() @Field(() => ID) id: string;
  @ApiProperty() @Field() registry: string;
  @ApiProperty({ enum: ['manual', 'schedule', 'after_deletions'] })
  @Field(() => String, { description: 'manual, schedule or after_deletions' })
  trigger: GcTrigger;
  @ApiProperty({ type: GcActorView }) @Field(() => GcActorView) actor: GcActorView;
  @ApiProperty() @Field() dryRun: boolean;
  @ApiProperty() @Field() deleteUntagged: boolean;
  @ApiProperty({ enum: GC_FENCES, description: 'How writes were kept away while it ran' })
  @Field(() => String, { description: 'gateway, readonly, stop or none' })
  fence: GcFence;
  @ApiProperty({ description: 'The run was confirmed to go without a fence' })
  @Field()
  unfencedAllowed: boolean;
  @ApiProperty({ example: 'local' }) @Field() executor: string;
  @ApiProperty({ enum: GC_STATUSES })
  @Field(() => String, { description: 'queued, running, succeeded, failed or cancelled' })
  status: GcStatus;
  @ApiProperty({
    description:
      'queued, fencing, measuring, planning, waiting-grace, collecting, clearing-cache, verifying, unfencing, done',
  })
  @Field(() => String)
  phase: GcPhase;
  @ApiProperty({
    description: 'A cancel was asked for; the worker stops the collector and restores the registry',
  })
  @Field()
  cancelRequested: boolean;
  @ApiProperty() @Field(() => Int) attempts: number;
  @ApiPropertyOptional({ nullable: true }) @Field(() => Int, { nullable: true }) blobsMarked: number | null;
  @ApiPropertyOptional({ nullable: true }) @Field(() => Int, { nullable: true }) blobsDeleted: number | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => Int, { nullable: true })
  manifestsDeleted: number | null;
  @ApiPropertyOptional({
    nullable: true,
    description:
      'Storage used before, measured through the executor. Null for a dry run, and for a run whose collector deleted a blob before the storage walk beside it reached it (logged): unknown rather than wrong',
  })
  @Field(() => Number, {
    nullable: true,
    description:
      'Storage used before, measured through the executor. Null for a dry run, and for a run whose collector deleted a blob before the storage walk beside it reached it: unknown rather than wrong.',
  })
  bytesBefore: number | null;
  @ApiPropertyOptional({ nullable: true, description: 'Storage used after, measured through the executor' })
  @Field(() => Number, { nullable: true, description: 'Storage used after, measured through the executor.' })
  bytesAfter: number | null;
  @ApiPropertyOptional({
    nullable: true,
    description: 'bytesBefore - bytesAfter; null when either is unknown',
  })
  @Field(() => Number, {
    nullable: true,
    description: 'bytesBefore - bytesAfter; null when either is unknown.',
  })
  bytesFreed: number | null;
  @ApiPropertyOptional({
    nullable: true,
    description: 'Sum of the sizes of the blobs listed for deletion (what a dry run reports)',
  })
  @Field(() => Number, { nullable: true })
  bytesEstimated: number | null;
  @ApiPropertyOptional({ nullable: true }) @Field(() => Int, { nullable: true }) exitCode: number | null;
  @ApiProperty({
    description:
      'The output kept was cut to GC_OUTPUT_CAP_BYTES (head and tail kept, the cut marked); the counts are read from all of it. The output itself: GET /gc-runs/:id/output, or the `output` field in GraphQL.',
  })
  @Field({
    description:
      'The output kept was cut to GC_OUTPUT_CAP_BYTES (head and tail kept, the cut marked); the counts are read from all of it.',
  })
  outputTruncated: boolean;
  @ApiPropertyOptional({
    nullable: true,
    description:
      'When the output was dropped: GC_OUTPUT_RETENTION_DAYS after the run ended (the run itself stays)',
  })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description:
      'When the output was dropped: GC_OUTPUT_RETENTION_DAYS after the run ended (the run itself stays).',
  })
  outputRemovedAt: Date | null;
  @ApiPropertyOptional({ type: GcVerificationView, nullable: true })
  @Field(() => GcVerificationView, { nullable: true })
  verification: GcVerification | null;
  @ApiPropertyOptional({ type: GcErrorView, nullable: true })
  @Field(() => GcErrorView, { nullable: true })
  error: GcErrorView | null;
  @ApiProperty() @Field(() => GraphQLISODateTime) createdAt: Date;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, { nullable: true })
  startedAt: Date | null;
  @ApiPropertyOptional({ nullable: true, description: 'Last sign of life of the worker running it' })
  @Field(() => GraphQLISODateTime, { nullable: true })
  heartbeatAt: Date | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, { nullable: true })
  finishedAt: Date | null;
  @ApiProperty({
    description: 'Milliseconds spent in each phase (fencing, measuring, planning, collecting, ...)',
    example: { fencing: 12, collecting: 5321 },
  })
  @Field(() => GraphQLJSONObject, { description: 'Milliseconds spent in each phase.' })
  phaseMs: Record<string, number>;
}

@ObjectType('GcRunPage')
export class GcRunPage {
  @ApiProperty({ type: [GcRunView] }) @Field(() => [GcRunView]) items: GcRunView[];
  @ApiPropertyOptional({ nullable: true }) @Field(() => String, { nullable: true }) nextCursor: string | null;
}

@ArgsType()
export class GcRunQueryDto {
  @ApiPropertyOptional()
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;
  @ApiPropertyOptional({ enum: GC_STATUSES })
  @Field(() => String, { nullable: true })
  @IsOptional()
  @IsIn(GC_STATUSES)
  status?: GcStatus;
  @ApiPropertyOptional({ minimum: 1, maximum: 200, default: 50 })
  @Field(() => Int, { nullable: true })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;
  @ApiPropertyOptional()
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  cursor?: string;
}

export class GcRunIdParam {
  @ApiProperty({ format: 'uuid', description: 'The GC run' })
  @IsUuidId('a GC run id')
  id: string;
}

export const MAX_GC_WAIT_SECONDS = 60;

export class GcRunWaitQuery {
  @ApiPropertyOptional({
    minimum: 0,
    maximum: MAX_GC_WAIT_SECONDS,
    default: 0,
    description:
      'Long poll: answer as soon as the run has finished (succeeded, failed or cancelled), or after this many seconds with the run as it is then. 0 answers at once.',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(MAX_GC_WAIT_SECONDS)
  wait?: number;
}
