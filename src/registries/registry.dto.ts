import { Field, GraphQLISODateTime, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsIn, IsOptional, IsString, Matches, MaxLength, ValidateNested } from 'class-validator';
import type { RegistryAuthType, RegistryProbe, RegistrySource } from './registry.entity.js';

export const REGISTRY_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export enum AuthType {
  none = 'none',
  basic = 'basic',
  bearer = 'bearer',
}
registerEnumType(AuthType, {
  name: 'RegistryAuthType',
  description:
    'How the gateway authenticates to the registry: none, basic (htpasswd) or bearer (token challenge).',
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
  @Field(() => AuthType)
  @IsIn(Object.values(AuthType))
  type: AuthType;

  @ApiPropertyOptional()
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(256)
  username?: string;

  @ApiPropertyOptional({ writeOnly: true })
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  password?: string;
}

/** What create and update share; every field optional here. */
@InputType({ isAbstract: true })
abstract class RegistrySettingsDto {
  @ApiPropertyOptional()
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;

  @ApiPropertyOptional({ type: RegistryAuthDto })
  @Field(() => RegistryAuthDto, { nullable: true })
  @IsOptional()
  @ValidateNested()
  @Type(() => RegistryAuthDto)
  auth?: RegistryAuthDto;

  @ApiPropertyOptional({ type: RegistryTlsDto })
  @Field(() => RegistryTlsDto, { nullable: true })
  @IsOptional()
  @ValidateNested()
  @Type(() => RegistryTlsDto)
  tls?: RegistryTlsDto;
}

@InputType('CreateRegistryInput')
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
@InputType('UpdateRegistryInput')
export class UpdateRegistryDto extends RegistrySettingsDto {
  @ApiPropertyOptional()
  @Field({ nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  url?: string;
}

@ObjectType('RegistryProbeError')
export class ProbeErrorView {
  @ApiProperty() @Field() code: string;
  @ApiProperty() @Field() message: string;
}

@ObjectType('RegistryProbe', {
  description: 'What the gateway learned the last time it probed the registry.',
})
export class RegistryProbeView implements RegistryProbe {
  @ApiProperty() @Field() checkedAt: string;
  @ApiProperty() @Field() reachable: boolean;
  @ApiPropertyOptional({ type: Number, nullable: true }) @Field(() => Int, { nullable: true }) latencyMs:
    number | null;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Docker-Distribution-API-Version header',
  })
  @Field(() => String, { nullable: true })
  apiVersion: string | null;
  @ApiProperty({ enum: ['ok', 'failed', 'not-required'] })
  @Field(() => String, { description: 'ok, failed or not-required' })
  auth: 'ok' | 'failed' | 'not-required';
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
  @Field(() => ProbeErrorView, { nullable: true })
  error: { code: string; message: string } | null;
}

@ObjectType('Registry', { description: 'A registry the gateway fronts. Secrets are never returned.' })
export class RegistryView {
  @ApiProperty() @Field() name: string;
  @ApiProperty() @Field() url: string;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true })
  description: string | null;
  @ApiProperty({ enum: AuthType }) @Field(() => AuthType) authType: RegistryAuthType;
  @ApiPropertyOptional({ type: String, nullable: true }) @Field(() => String, { nullable: true }) username:
    string | null;
  @ApiProperty() @Field() hasPassword: boolean;
  @ApiProperty() @Field() tlsInsecure: boolean;
  @ApiProperty() @Field() hasCaCert: boolean;
  @ApiProperty({
    enum: ['api', 'file'],
    description: 'file: managed by the REGISTRIES_FILE and read-only through the API',
  })
  @Field(() => String, {
    description: 'api, or file when managed by the REGISTRIES_FILE (read-only through the API)',
  })
  source: RegistrySource;
  @ApiPropertyOptional({ type: RegistryProbeView, nullable: true })
  @Field(() => RegistryProbeView, { nullable: true })
  probe: RegistryProbeView | null;
  @ApiProperty() @Field(() => GraphQLISODateTime) createdAt: Date;
  @ApiProperty() @Field(() => GraphQLISODateTime) updatedAt: Date;
}
