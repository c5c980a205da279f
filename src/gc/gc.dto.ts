import {
  ArgsType,
  Field,
  GraphQLISODateTime,
  ID,
  InputType,
  Int,
  ObjectType,
  registerEnumType,
} from '@nestjs/graphql';
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

/** GC_STATUSES as a GraphQL enum (the gcRuns filter): the same values, named as they are. */
export const GcRunStatusValue = Object.fromEntries(GC_STATUSES.map((s) => [s, s])) as { [S in GcStatus]: S };
registerEnumType(GcRunStatusValue, {
  name: 'GcRunStatus',
  description: 'queued, running, then succeeded, failed or cancelled.',
  valuesMap: {
    queued: { description: 'Waiting for a worker.' },
    running: { description: 'A worker is running it (see phase).' },
    succeeded: { description: 'Final: it ran to the end (verified, unless a dry run).' },
    failed: { description: 'Final: it failed (see error).' },
    cancelled: { description: 'Final: cancelled before it ended.' },
  },
});

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

@ObjectType('GcVerificationProblem', {
  description: 'Something the registry’s API answered wrong after the collection.',
})
export class GcProblemView {
  @ApiProperty() @Field({ description: 'Repository asked about.' }) repository: string;
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'The tag whose image lacks the blob (missing).' })
  tag?: string;
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'The deleted blob (stillServed), or the tagged manifest (missing).' })
  digest?: string;
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'The blob not served (missing).' })
  blob?: string;
  @ApiProperty() @Field(() => Int, { description: 'HTTP status the registry answered.' }) status: number;
}

@ObjectType('GcStorageProblem', { description: 'Something the storage-side check found wrong.' })
export class GcStorageProblemView {
  @ApiProperty({ description: 'Empty when the problem is not one repository’s.' })
  @Field({ description: 'Empty when the problem is not one repository’s.' })
  repository: string;
  @ApiPropertyOptional() @Field({ nullable: true, description: 'The tag concerned, if any.' }) tag?: string;
  @ApiProperty({ description: 'The manifest the problem belongs to, or the deleted blob.' })
  @Field({ description: 'The manifest the problem belongs to, or the deleted blob.' })
  digest: string;
  @ApiProperty({ description: 'What is missing (or still there).' })
  @Field({ description: 'What is missing (or still there).' })
  blob: string;
  @ApiProperty({ example: 'blob data missing' })
  @Field({ description: 'What is wrong, e.g. blob data missing.' })
  problem: string;
}

@ObjectType('GcStorageVerification', {
  description: 'What was checked on the storage through the executor after the collection (everything).',
})
export class GcStorageVerificationView {
  @ApiProperty() @Field(() => Int, { description: 'Tags read from the storage.' }) tagsChecked: number;
  @ApiProperty({ description: 'Tagged manifests and the platform manifests of tagged indexes.' })
  @Field(() => Int, { description: 'Tagged manifests and the platform manifests of tagged indexes.' })
  manifestsChecked: number;
  @ApiProperty({ description: 'Their configs and layers: stored, and linked in the repository.' })
  @Field(() => Int, { description: 'Their configs and layers: stored, and linked in the repository.' })
  blobsChecked: number;
  @ApiProperty({ description: 'Blobs the collector deleted: none may still be stored.' })
  @Field(() => Int, { description: 'Blobs the collector deleted: none may still be stored.' })
  deletedBlobsChecked: number;
  @ApiProperty({ type: [GcStorageProblemView] })
  @Field(() => [GcStorageProblemView], { description: 'What the run broke or left behind: any fails it.' })
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
  @ApiProperty()
  @Field({ description: 'Nothing wrong was found; false fails the run (GC_VERIFICATION_FAILED).' })
  ok: boolean;
  @ApiProperty({
    enum: GC_VERIFICATION_MODES,
    description: '`sample`: the registry’s API was asked about a random sample; `full`: about everything.',
  })
  @Field(() => String, { description: 'sample or full' })
  mode: string;
  @ApiProperty({ type: GcStorageVerificationView })
  @Field(() => GcStorageVerificationView, { description: 'What the check of the storage found.' })
  storage: GcStorageVerificationView;
  @ApiProperty({
    description: 'Deleted blobs asked about through the registry API (HEAD); each must be gone.',
  })
  @Field(() => Int, {
    description: 'Deleted blobs asked about through the registry API (HEAD); each must be gone.',
  })
  deletedBlobsChecked: number;
  @ApiProperty({ type: [GcProblemView], description: 'Deleted blobs the registry still claims.' })
  @Field(() => [GcProblemView], { description: 'Deleted blobs the registry still claims.' })
  stillServed: GcProblemView[];
  @ApiProperty({ description: 'Tagged manifests fetched through the registry API, with every blob read.' })
  @Field(() => Int, {
    description: 'Tagged manifests fetched through the registry API, with every blob read.',
  })
  manifestsChecked: number;
  @ApiProperty()
  @Field(() => Int, { description: 'Blobs of those manifests read through the API.' })
  blobsChecked: number;
  @ApiProperty({
    type: [GcProblemView],
    description: 'Blobs of tagged manifests the registry does not serve.',
  })
  @Field(() => [GcProblemView], { description: 'Blobs of tagged manifests the registry does not serve.' })
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
  @ApiProperty({ description: 'More problems were found than are listed.' })
  @Field({ description: 'More problems were found than are listed.' })
  truncated: boolean;
}

@ObjectType('GcRunActor', { description: 'Who started the run (system for schedules and after deletions).' })
export class GcActorView {
  @ApiProperty() @Field({ description: 'user, service, system or anonymous (as ActorType).' }) type: string;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => String, { nullable: true, description: 'Stable id: OIDC sub, service account id, …' })
  id: string | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => String, { nullable: true, description: 'Display name at the time.' })
  name: string | null;
}

@ObjectType('GcRunError', { description: 'Why a run failed or was cancelled.' })
export class GcErrorView {
  @ApiProperty({ example: 'GC_COMMAND_FAILED' })
  @Field({ description: 'Stable code, e.g. GC_COMMAND_FAILED or GC_VERIFICATION_FAILED.' })
  code: string;
  @ApiProperty() @Field({ description: 'What happened, for people.' }) message: string;
  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    description:
      "What the error names, as an API error's details: e.g. `manifests` for DELETE_UNTAGGED_UNSAFE, `exitCode` for GC_COMMAND_FAILED (what commands printed is not kept here: the collector's output is the run's)",
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
  @ApiProperty() @Field(() => ID, { description: 'The run’s uuid.' }) id: string;
  @ApiProperty() @Field({ description: 'Registry name.' }) registry: string;
  @ApiProperty({ enum: ['manual', 'schedule', 'after_deletions'] })
  @Field(() => String, { description: 'manual, schedule or after_deletions' })
  trigger: GcTrigger;
  @ApiProperty({ type: GcActorView })
  @Field(() => GcActorView, { description: 'Who started it.' })
  actor: GcActorView;
  @ApiProperty() @Field({ description: 'Only list what would be deleted; nothing changes.' }) dryRun: boolean;
  @ApiProperty()
  @Field({ description: 'Also delete manifests no tag points at (`--delete-untagged`).' })
  deleteUntagged: boolean;
  @ApiProperty({ enum: GC_FENCES, description: 'How writes were kept away while it ran' })
  @Field(() => String, { description: 'gateway, readonly, stop or none' })
  fence: GcFence;
  @ApiProperty({ description: 'The run was confirmed to go without a fence' })
  @Field({ description: 'The run was confirmed to go without a fence (allowUnfenced).' })
  unfencedAllowed: boolean;
  @ApiProperty({ example: 'local' })
  @Field({ description: 'Where garbage-collect ran: local, ssh, docker or kubernetes.' })
  executor: string;
  @ApiProperty({ enum: GC_STATUSES })
  @Field(() => String, { description: 'queued, running, succeeded, failed or cancelled' })
  status: GcStatus;
  @ApiProperty({
    description:
      'queued, fencing, measuring, planning, waiting-grace, collecting, clearing-cache, verifying, unfencing, done',
  })
  @Field(() => String, {
    description:
      'queued, fencing, measuring, planning, waiting-grace, collecting, clearing-cache, verifying, unfencing or done.',
  })
  phase: GcPhase;
  @ApiProperty({
    description: 'A cancel was asked for; the worker stops the collector and restores the registry',
  })
  @Field({ description: 'A cancel was asked for; the worker stops the collector and restores the registry.' })
  cancelRequested: boolean;
  @ApiProperty() @Field(() => Int, { description: 'Times a worker started it.' }) attempts: number;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => Int, {
    nullable: true,
    description: 'Blobs the collector marked as in use; null until known.',
  })
  blobsMarked: number | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => Int, {
    nullable: true,
    description: 'Blobs deleted (by a dry run: that would be); null until known.',
  })
  blobsDeleted: number | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => Int, {
    nullable: true,
    description: 'Untagged manifests deleted (by a dry run: that would be); null until known.',
  })
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
  @Field(() => Number, {
    nullable: true,
    description: 'Bytes of the blobs listed for deletion (what a dry run reports); null until known.',
  })
  bytesEstimated: number | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => Int, { nullable: true, description: 'Exit code of garbage-collect; null until it ended.' })
  exitCode: number | null;
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
  @Field(() => GcVerificationView, {
    nullable: true,
    description: 'What was checked after the collection; null when it was not verified (yet).',
  })
  verification: GcVerification | null;
  @ApiPropertyOptional({ type: GcErrorView, nullable: true })
  @Field(() => GcErrorView, {
    nullable: true,
    description: 'Why it failed or was cancelled; null otherwise.',
  })
  error: GcErrorView | null;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When it was requested.' }) createdAt: Date;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When a worker last started it; null while queued.',
  })
  startedAt: Date | null;
  @ApiPropertyOptional({ nullable: true, description: 'Last sign of life of the worker running it' })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'Last sign of life of the worker running it.',
  })
  heartbeatAt: Date | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, { nullable: true, description: 'When it ended; null until then.' })
  finishedAt: Date | null;
  @ApiProperty({
    description: 'Milliseconds spent in each phase (fencing, measuring, planning, collecting, ...)',
    example: { fencing: 12, collecting: 5321 },
  })
  @Field(() => GraphQLJSONObject, { description: 'Milliseconds spent in each phase.' })
  phaseMs: Record<string, number>;
}

@ObjectType('GcRunPage', { description: 'A page of GC runs, newest first.' })
export class GcRunPage {
  @ApiProperty({ type: [GcRunView] })
  @Field(() => [GcRunView], { description: 'Newest first.' })
  items: GcRunView[];
  @ApiPropertyOptional({ nullable: true })
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@ArgsType()
export class GcRunQueryDto {
  @ApiPropertyOptional()
  @Field({
    nullable: true,
    description: 'Registry name; every registry when left out (needs gc:read everywhere)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;
  @ApiPropertyOptional({ enum: GC_STATUSES })
  @Field(() => GcRunStatusValue, { nullable: true, description: 'Only runs in this status' })
  @IsOptional()
  @IsIn(GC_STATUSES)
  status?: GcStatus;
  @ApiPropertyOptional({ minimum: 1, maximum: 200, default: 50 })
  @Field(() => Int, { nullable: true, description: '1 to 200, default 50' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'nextCursor of the previous page' })
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
