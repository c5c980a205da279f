import { Field, GraphQLISODateTime, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateIf,
  ValidateNested,
} from 'class-validator';
import {
  DEFAULT_DELETE_CONCURRENCY,
  MAX_DELETE_CONCURRENCY,
  type RegistryAuthType,
  type RegistryProbe,
  type RegistrySource,
} from './registry.entity.js';
import { IsOmittable } from '../common/omittable.js';

export const REGISTRY_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const EVENTS_TOKEN_MIN = 24;
export const EVENTS_TOKEN_MAX = 512;
// The token travels in an Authorization header: visible ASCII only, no spaces.
const EVENTS_TOKEN_RE = /^[\x21-\x7e]+$/;
// Postgres integer; anything above is a typo, not a rate.
const MAX_RATE_PER_SECOND = 2_147_483_647;

export enum AuthType {
  none = 'none',
  basic = 'basic',
  bearer = 'bearer',
}
registerEnumType(AuthType, {
  name: 'RegistryAuthType',
  description:
    'How the gateway authenticates to the registry: none, basic (htpasswd) or bearer (token challenge).',
  valuesMap: {
    none: { description: 'No credentials.' },
    basic: { description: 'HTTP basic authentication with a username and password (htpasswd).' },
    bearer: {
      description: 'A token from the registry’s token service (with the username and password, if set).',
    },
  },
});

@InputType('RegistryTlsInput', { description: 'TLS options for the connection to the registry.' })
export class RegistryTlsDto {
  @ApiPropertyOptional({ description: 'PEM CA bundle that signed the registry certificate.' })
  @Field({ nullable: true, description: 'PEM CA bundle that signed the registry certificate.' })
  @IsOptional()
  @IsString()
  @MaxLength(64 * 1024)
  caCert?: string;

  @ApiPropertyOptional({ description: 'Skip certificate verification (loopback/dev only).' })
  @Field({ nullable: true, description: 'Skip certificate verification (loopback/dev only).' })
  @IsOptional()
  @IsBoolean()
  insecure?: boolean;
}

@InputType('RegistryAuthInput', {
  description: 'Credentials for the registry. The password is encrypted at rest and never returned.',
})
export class RegistryAuthDto {
  @ApiProperty({ enum: AuthType })
  @Field(() => AuthType, { description: 'none also removes the stored username and password.' })
  @IsIn(Object.values(AuthType))
  type: AuthType;

  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'Left out: kept; an empty string removes it.' })
  @IsOptional()
  @IsString()
  @MaxLength(256)
  username?: string;

  @ApiPropertyOptional({ writeOnly: true })
  @Field({
    nullable: true,
    description: 'Write-only, encrypted at rest; left out: kept; an empty string removes it.',
  })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  password?: string;
}

@InputType('RegistryDeletesInput', {
  description: 'How fast the gateway deletes on this registry. Omitted fields keep their value.',
})
export class RegistryDeletesDto {
  @ApiPropertyOptional({
    minimum: 1,
    maximum: MAX_DELETE_CONCURRENCY,
    default: DEFAULT_DELETE_CONCURRENCY,
    description: 'Deletes sent to the registry at once.',
  })
  @Field(() => Int, { nullable: true, description: 'Deletes sent to the registry at once (1-256).' })
  // Not @IsOptional: that would let an explicit null through and leave the setting unchanged silently.
  @ValidateIf((_o, v) => v !== undefined)
  @IsInt()
  @Min(1)
  @Max(MAX_DELETE_CONCURRENCY)
  concurrency?: number;

  @ApiPropertyOptional({
    type: Number,
    nullable: true,
    minimum: 1,
    description: 'At most this many deletes per second; null removes the limit.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'At most this many deletes per second; null removes the limit.',
  })
  @ValidateIf((_o, v) => v !== undefined && v !== null)
  @IsInt()
  @Min(1)
  @Max(MAX_RATE_PER_SECOND)
  ratePerSecond?: number | null;
}

/** What create and update share; every field optional here. */
@InputType({ isAbstract: true })
abstract class RegistrySettingsDto {
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'Free text for people; an empty string removes it.' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;

  @ApiPropertyOptional({ type: RegistryAuthDto })
  @Field(() => RegistryAuthDto, {
    nullable: true,
    description: 'Credentials; left out: unchanged (none on create).',
  })
  @IsOmittable()
  @ValidateNested()
  @Type(() => RegistryAuthDto)
  auth?: RegistryAuthDto;

  @ApiPropertyOptional({ type: RegistryTlsDto })
  @Field(() => RegistryTlsDto, {
    nullable: true,
    description: 'TLS options; left out: unchanged (defaults on create).',
  })
  @IsOmittable()
  @ValidateNested()
  @Type(() => RegistryTlsDto)
  tls?: RegistryTlsDto;

  @ApiPropertyOptional({ type: RegistryDeletesDto })
  @Field(() => RegistryDeletesDto, {
    nullable: true,
    description: 'Delete pacing; left out: unchanged (defaults on create).',
  })
  @IsOmittable()
  @ValidateNested()
  @Type(() => RegistryDeletesDto)
  deletes?: RegistryDeletesDto;

  @ApiPropertyOptional({
    writeOnly: true,
    minLength: EVENTS_TOKEN_MIN,
    maxLength: EVENTS_TOKEN_MAX,
    description:
      'Bearer token the registry sends with its notifications to POST /registries/{name}/events. Stored as a hash, never returned; an empty string removes it.',
  })
  @Field({
    nullable: true,
    description:
      'Bearer token the registry sends with its notifications (24-512 visible ASCII characters). Stored as a hash, never returned; an empty string removes it.',
  })
  @ValidateIf((_o, v) => v !== undefined && v !== '')
  @IsString()
  @MinLength(EVENTS_TOKEN_MIN)
  @MaxLength(EVENTS_TOKEN_MAX)
  @Matches(EVENTS_TOKEN_RE, { message: 'eventsToken must be visible ASCII characters without spaces' })
  eventsToken?: string;
}

@InputType('CreateRegistryInput', { description: 'A registry to register; it is probed at once.' })
export class CreateRegistryDto extends RegistrySettingsDto {
  @ApiProperty({ example: 'prod-eu', pattern: REGISTRY_NAME_RE.source })
  @Field({ description: 'Unique name: lower-case letters, digits and dashes.' })
  @IsString()
  @Matches(REGISTRY_NAME_RE, {
    message: 'name must be 1-63 characters of [a-z0-9-], starting and ending with a letter or digit',
  })
  name: string;

  @ApiProperty({ example: 'https://registry.example.com' })
  @Field({ description: 'Base URL of the registry (the /v2/ API lives under it).' })
  @IsString()
  @MaxLength(2048)
  url: string;
}

/** A registry cannot be renamed: `name` is not accepted. */
@InputType('UpdateRegistryInput', {
  description: 'Fields to change (a registry cannot be renamed); omitted fields keep their value.',
})
export class UpdateRegistryDto extends RegistrySettingsDto {
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'New base URL of the registry; the registry is probed again.' })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  url?: string;
}

@ObjectType('RegistryProbeError', { description: 'Why the probe could not finish.' })
export class ProbeErrorView {
  @ApiProperty()
  @Field({ description: 'Stable error code, e.g. REGISTRY_UNREACHABLE or UNAUTHORIZED_UPSTREAM.' })
  code: string;
  @ApiProperty() @Field({ description: 'What went wrong, for people.' }) message: string;
}

@ObjectType('RegistryProbe', {
  description: 'What the gateway learned the last time it probed the registry.',
})
export class RegistryProbeView implements RegistryProbe {
  @ApiProperty() @Field({ description: 'When the probe ran (ISO 8601).' }) checkedAt: string;
  @ApiProperty()
  @Field({ description: 'The registry answered over HTTP (even with an error).' })
  reachable: boolean;
  @ApiPropertyOptional({ type: Number, nullable: true })
  @Field(() => Int, { nullable: true, description: 'Milliseconds GET /v2/ took; null when it failed.' })
  latencyMs: number | null;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Docker-Distribution-API-Version header',
  })
  @Field(() => String, {
    nullable: true,
    description: 'The Docker-Distribution-API-Version header, if sent.',
  })
  apiVersion: string | null;
  @ApiProperty({
    enum: ['ok', 'failed', 'not-required', 'unknown'],
    description:
      'unknown: the registry did not answer (or not about credentials), so they could not be checked',
  })
  @Field(() => String, {
    description:
      'ok, failed, not-required, or unknown when the registry did not answer (or not about credentials)',
  })
  auth: 'ok' | 'failed' | 'not-required' | 'unknown';
  @ApiProperty({ enum: ['enabled', 'disabled', 'read-only', 'pull-through', 'unknown'] })
  @Field(() => String, {
    description:
      'enabled; disabled (storage.delete off); read-only (maintenance mode); pull-through (proxy cache); unknown',
  })
  deletes: RegistryProbe['deletes'];
  @ApiPropertyOptional({ type: String, nullable: true, example: '2.x' })
  @Field(() => String, {
    nullable: true,
    description: 'Major distribution version learned from behaviour, e.g. 2.x or 3.x',
  })
  distributionVersion: string | null;
  @ApiPropertyOptional({ type: ProbeErrorView, nullable: true })
  @Field(() => ProbeErrorView, {
    nullable: true,
    description: 'Why the probe stopped early; null when it finished.',
  })
  error: { code: string; message: string } | null;
}

@ObjectType('RegistryDeleteSettings', { description: 'How fast the gateway deletes on this registry.' })
export class RegistryDeleteSettingsView {
  @ApiProperty({ minimum: 1, maximum: MAX_DELETE_CONCURRENCY })
  @Field(() => Int, { description: 'Deletes sent to the registry at once.' })
  concurrency: number;
  @ApiPropertyOptional({ type: Number, nullable: true, description: 'null: unlimited' })
  @Field(() => Int, { nullable: true, description: 'Deletes per second at most; null: unlimited.' })
  ratePerSecond: number | null;
}

@ObjectType('Registry', { description: 'A registry the gateway fronts. Secrets are never returned.' })
export class RegistryView {
  @ApiProperty() @Field({ description: 'Unique name, used in every API path.' }) name: string;
  @ApiProperty() @Field({ description: 'Base URL of the registry.' }) url: string;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Free text for people; null when none.' })
  description: string | null;
  @ApiProperty({ enum: AuthType })
  @Field(() => AuthType, { description: 'How the gateway authenticates to it.' })
  authType: RegistryAuthType;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Username of the credentials; null when none.' })
  username: string | null;
  @ApiProperty() @Field({ description: 'A password is stored (it is never returned).' }) hasPassword: boolean;
  @ApiProperty() @Field({ description: 'Certificate verification is skipped.' }) tlsInsecure: boolean;
  @ApiProperty() @Field({ description: 'A CA bundle is stored for the connection.' }) hasCaCert: boolean;
  @ApiProperty({
    enum: ['api', 'file'],
    description: 'file: managed by the REGISTRIES_FILE and read-only through the API',
  })
  @Field(() => String, {
    description: 'api, or file when managed by the REGISTRIES_FILE (read-only through the API)',
  })
  source: RegistrySource;
  @ApiPropertyOptional({ type: RegistryProbeView, nullable: true })
  @Field(() => RegistryProbeView, { nullable: true, description: 'The last probe; null before the first.' })
  probe: RegistryProbeView | null;
  @ApiProperty({ type: RegistryDeleteSettingsView })
  @Field(() => RegistryDeleteSettingsView, { description: 'How fast the gateway deletes on it.' })
  deletes: RegistryDeleteSettingsView;
  @ApiProperty({ description: 'Whether notifications from the registry are accepted (a token is set).' })
  @Field({ description: 'Whether notifications from the registry are accepted (a token is set).' })
  hasEventsToken: boolean;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When it was registered.' }) createdAt: Date;
  @ApiProperty()
  @Field(() => GraphQLISODateTime, { description: 'When its settings last changed.' })
  updatedAt: Date;
}
