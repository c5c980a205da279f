import { Field, InputType, Int, ObjectType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsBoolean,
  IsDefined,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import {
  GcExecutorCapabilitiesView,
  GcExecutorDto,
  GcExecutorSecretsDto,
  GcExecutorSecretsStateView,
} from './executors/gc-executor.dto.js';
import { GC_FENCES } from './gc.dto.js';
import { GC_VERIFICATION_MODES, type GcFence, type GcVerificationMode } from './gc.entity.js';

const WEEK_SECONDS = 7 * 24 * 3600;

@InputType('GcCacheInput', {
  description:
    "The registry's blob descriptor cache (`storage.cache.blobdescriptor`), emptied after every collection.",
})
@ObjectType('GcCacheSettings', {
  description: "The registry's blob descriptor cache, emptied after every collection.",
})
export class GcCacheDto {
  @ApiProperty({
    enum: ['inmemory', 'redis', 'none'],
    description:
      '`inmemory` (the default config): the registry is restarted after GC. `redis`: its cache keys are deleted. `none`: nothing to clear.',
  })
  @Field(() => String, { description: 'inmemory, redis or none' })
  @IsIn(['inmemory', 'redis', 'none'])
  type: 'inmemory' | 'redis' | 'none';

  @ApiPropertyOptional({
    description: 'redis: `host:port`, as `redis.addr` in the registry config',
    example: 'redis:6379',
  })
  @Field({ nullable: true, description: 'redis: `host:port`, as `redis.addr` in the registry config.' })
  @IsOptional()
  @IsString()
  @Matches(/^[^\s:/]+:\d{1,5}$/, { message: 'addr must be host:port' })
  addr?: string;

  @ApiPropertyOptional({ description: 'redis: database number (`redis.db`)' })
  @Field(() => Int, { nullable: true, description: 'redis: database number (`redis.db`).' })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(1024)
  db?: number;

  @ApiPropertyOptional({ description: 'redis: connect with TLS' })
  @Field({ nullable: true, description: 'redis: connect with TLS.' })
  @IsOptional()
  @IsBoolean()
  tls?: boolean;
}

@InputType('GcSettingsInput', { description: "How the gateway runs a registry's garbage collector." })
export class GcSettingsDto {
  @ApiProperty({ type: GcExecutorDto })
  @Field(() => GcExecutorDto, { description: 'Where and how the collector runs.' })
  @IsDefined({ message: 'executor is required: where and how the collector runs' })
  @ValidateNested()
  @Type(() => GcExecutorDto)
  executor: GcExecutorDto;

  @ApiPropertyOptional({
    type: GcExecutorSecretsDto,
    description: 'Write-only; stored encrypted. Omit to keep the stored secrets, send {} to remove them.',
  })
  @Field(() => GcExecutorSecretsDto, {
    nullable: true,
    description:
      'Write-only, stored encrypted; left out: kept if the executor type is unchanged; {} removes them.',
  })
  @IsOptional()
  @ValidateNested()
  @Type(() => GcExecutorSecretsDto)
  secrets?: GcExecutorSecretsDto;

  @ApiPropertyOptional({
    enum: GC_FENCES,
    default: 'gateway',
    description:
      'How writes are kept away during a run: `gateway` (the gateway takes no deletes and drains those in flight), `readonly` (also restart the registry in read-only mode), `stop` (also stop the registry), `none` (nothing; each run must confirm with allowUnfenced).',
  })
  @Field(() => String, { nullable: true, description: 'gateway, readonly, stop or none' })
  @IsOptional()
  @IsIn(GC_FENCES)
  fence?: GcFence;

  @ApiPropertyOptional({ type: GcCacheDto, default: { type: 'inmemory' } })
  @Field(() => GcCacheDto, {
    nullable: true,
    description: 'The registry’s blob descriptor cache; default inmemory.',
  })
  @IsOptional()
  @ValidateNested()
  @Type(() => GcCacheDto)
  cache?: GcCacheDto;

  @ApiPropertyOptional({ description: 'redis cache password; write-only, stored encrypted. Omit to keep.' })
  @Field({
    nullable: true,
    description: 'redis cache password; write-only, stored encrypted; left out: kept.',
  })
  @IsOptional()
  @IsString()
  @MaxLength(512)
  cachePassword?: string;

  @ApiPropertyOptional({
    default: 3600,
    description:
      'A blob written less than this many seconds ago is never collected: a run that would delete one waits until it is older (an upload whose manifest is still to come).',
  })
  @Field(() => Int, {
    nullable: true,
    description:
      'Seconds a new blob is safe from collection: a run that would delete one waits (default 3600).',
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(WEEK_SECONDS)
  graceSeconds?: number;

  @ApiPropertyOptional({
    default: 3600,
    description: 'How long a run waits for the grace window before it fails with GRACE_WINDOW_BLOCKED.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'Seconds a run waits for the grace window before GRACE_WINDOW_BLOCKED (default 3600).',
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(WEEK_SECONDS)
  maxGraceWaitSeconds?: number;

  @ApiPropertyOptional({
    enum: GC_VERIFICATION_MODES,
    default: 'sample',
    description:
      "After every collection the storage is checked whole through the executor (every tag's manifest, platform manifests and blobs stored and linked; no deleted blob left), the cache having been emptied. Then the registry's API: `sample` asks it about a random sample of deleted blobs (HEAD must say 404; GC_VERIFY_SAMPLE of them) and tagged images (every blob readable; GC_VERIFY_SAMPLE_IMAGES of them); `full` asks about every deleted blob and every tag of every repository (about a millisecond per blob).",
  })
  @Field(() => String, { nullable: true, description: 'sample or full' })
  @IsOptional()
  @IsIn(GC_VERIFICATION_MODES)
  verification?: GcVerificationMode;

  @ApiPropertyOptional({
    nullable: true,
    description: 'Cron pattern (5 or 6 fields) for scheduled runs; null for none.',
    example: '0 3 * * 0',
  })
  @Field(() => String, {
    nullable: true,
    description: 'Cron pattern (5 or 6 fields) for scheduled runs; null for none.',
  })
  @IsOptional()
  @IsString()
  @MinLength(9)
  @MaxLength(120)
  schedule?: string | null;

  @ApiPropertyOptional({
    nullable: true,
    description: 'IANA time zone of the schedule; default UTC.',
    example: 'Europe/Berlin',
  })
  @Field(() => String, { nullable: true, description: 'IANA time zone of the schedule; default UTC.' })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  scheduleTimezone?: string | null;

  @ApiPropertyOptional({ default: false, description: 'Scheduled runs also delete untagged manifests.' })
  @Field({ nullable: true, description: 'Scheduled runs also delete untagged manifests.' })
  @IsOptional()
  @IsBoolean()
  scheduleDeleteUntagged?: boolean;

  @ApiPropertyOptional({
    default: false,
    description: 'Run GC automatically once deletions on this registry have settled (debounced).',
  })
  @Field({
    nullable: true,
    description: 'Run GC automatically once deletions on this registry have settled.',
  })
  @IsOptional()
  @IsBoolean()
  afterDeletions?: boolean;

  @ApiPropertyOptional({
    default: 300,
    description: 'Quiet time after the last settled deletion before that automatic run starts.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'Seconds of quiet after the last settled deletion before that run starts (default 300).',
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(WEEK_SECONDS)
  afterDeletionsDelaySeconds?: number;
}

@ObjectType('GcSettings', { description: "How the gateway runs a registry's garbage collector." })
export class GcSettingsView {
  @ApiProperty() @Field({ description: 'Registry name.' }) registry: string;
  @ApiProperty({ type: GcExecutorDto })
  @Field(() => GcExecutorDto, { description: 'Where and how the collector runs.' })
  executor: GcExecutorDto;
  @ApiProperty({ type: GcExecutorSecretsStateView })
  @Field(() => GcExecutorSecretsStateView, { description: 'Which executor secrets are stored.' })
  secrets: GcExecutorSecretsStateView;
  @ApiProperty({ type: GcExecutorCapabilitiesView })
  @Field(() => GcExecutorCapabilitiesView, { description: 'What the executor can do for fencing.' })
  capabilities: GcExecutorCapabilitiesView;
  @ApiProperty({ enum: GC_FENCES })
  @Field(() => String, { description: 'How writes are kept away: gateway, readonly, stop or none.' })
  fence: GcFence;
  @ApiProperty({ type: GcCacheDto })
  @Field(() => GcCacheDto, { description: 'The registry’s blob descriptor cache.' })
  cache: GcCacheDto;
  @ApiProperty() @Field({ description: 'A redis cache password is stored.' }) hasCachePassword: boolean;
  @ApiProperty()
  @Field(() => Int, { description: 'Seconds a new blob is safe from collection.' })
  graceSeconds: number;
  @ApiProperty()
  @Field(() => Int, { description: 'Seconds a run waits for the grace window before it fails.' })
  maxGraceWaitSeconds: number;
  @ApiProperty({ enum: GC_VERIFICATION_MODES })
  @Field(() => String, { description: 'How the registry’s API is checked afterwards: sample or full.' })
  verification: GcVerificationMode;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => String, { nullable: true, description: 'Cron pattern of scheduled runs; null for none.' })
  schedule: string | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => String, { nullable: true, description: 'IANA time zone of the schedule; null: UTC.' })
  scheduleTimezone: string | null;
  @ApiProperty()
  @Field({ description: 'Scheduled runs also delete untagged manifests.' })
  scheduleDeleteUntagged: boolean;
  @ApiProperty()
  @Field({ description: 'GC runs automatically once deletions on the registry have settled.' })
  afterDeletions: boolean;
  @ApiProperty()
  @Field(() => Int, { description: 'Seconds of quiet after the last settled deletion before that run.' })
  afterDeletionsDelaySeconds: number;
  @ApiProperty({ enum: ['api', 'file'] })
  @Field({ description: 'api, or file when managed by the REGISTRIES_FILE (read-only through the API).' })
  source: string;
}
