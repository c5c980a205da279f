import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsIn,
  IsISO8601,
  IsInt,
  IsOptional,
  IsString,
  IsUUID,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateIf,
  ValidateNested,
} from 'class-validator';
import { IsOmittable } from '../common/omittable.js';
import { PageQuery } from '../common/page-query.js';
import { PERMISSIONS, ROLES, type Role } from './permissions.js';
import { REGISTRY_NAME_RE } from './scope.js';

export const SUBJECT_TYPES = ['user', 'group', 'service_account'] as const;
export const SERVICE_ACCOUNT_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class ActorView {
  @ApiProperty({ enum: ['user', 'service', 'system', 'anonymous'] }) type: string;
  @ApiPropertyOptional({ type: String, nullable: true }) id: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) name: string | null;
}

// --- service accounts and their tokens ---------------------------------------------------------------

export class CreateServiceAccountDto {
  @ApiProperty({ example: 'ci-cleanup', description: '[a-z0-9-], unique' })
  @IsString()
  @Matches(SERVICE_ACCOUNT_NAME_RE, { message: 'name must be 1-63 characters of a-z, 0-9 and "-"' })
  name: string;

  @ApiPropertyOptional({ example: 'Nightly cleanup job of team A' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;
}

export class CreateTokenDto {
  @ApiPropertyOptional({ example: 'gitlab-ci', description: 'What the token is for' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  name?: string;

  @ApiPropertyOptional({
    example: '2027-01-31T00:00:00Z',
    description: 'When the token stops working (ISO 8601, in the future); or use expiresInDays',
  })
  @IsOmittable()
  @IsISO8601({ strict: true })
  expiresAt?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 3650, example: 90 })
  @IsOmittable()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(3650)
  expiresInDays?: number;
}

export class ServiceAccountIdParam {
  @ApiProperty({ format: 'uuid' }) @IsUUID() id: string;
}

export class TokenIdParam extends ServiceAccountIdParam {
  @ApiProperty({ format: 'uuid' }) @IsUUID() tokenId: string;
}

export class TokenView {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiPropertyOptional({ type: String, nullable: true }) name: string | null;
  @ApiProperty({ description: 'The first characters of the token, to recognise it', example: 'rgw_q2Xc81Zp' })
  hint: string;
  @ApiProperty({ enum: ['active', 'expired', 'revoked'] }) status: 'active' | 'expired' | 'revoked';
  @ApiProperty() createdAt: string;
  @ApiPropertyOptional({ type: String, nullable: true }) expiresAt: string | null;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Recorded at most once a minute',
  })
  lastUsedAt: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) revokedAt: string | null;
  @ApiProperty({ type: ActorView }) createdBy: ActorView;
}

export class CreatedTokenView extends TokenView {
  @ApiProperty({
    description:
      'The token. Shown only in this answer; the gateway stores its hash. Send it as `Authorization: Bearer <token>`.',
  })
  token: string;
}

export class ServiceAccountView {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() name: string;
  @ApiPropertyOptional({ type: String, nullable: true }) description: string | null;
  @ApiProperty() createdAt: string;
  @ApiProperty({ type: ActorView }) createdBy: ActorView;
  @ApiProperty({
    type: [TokenView],
    description: 'Every token, revoked and expired ones too; never the secret',
  })
  tokens: TokenView[];
}

export class ServiceAccountQueryDto extends PageQuery(200, 50) {}

export class ServiceAccountList {
  @ApiProperty({ type: [ServiceAccountView], description: 'By name' }) items: ServiceAccountView[];
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Pass it back as cursor for the next page; null on the last one',
  })
  nextCursor: string | null;
}

// --- role bindings -----------------------------------------------------------------------------------

export class BindingSubjectInput {
  @ApiProperty({ enum: SUBJECT_TYPES }) @IsIn(SUBJECT_TYPES) type: (typeof SUBJECT_TYPES)[number];

  @ApiProperty({
    description: 'user: the token’s `sub`; group: the OIDC group name; service_account: its id or name',
    example: 'ci-cleanup',
  })
  @IsString()
  @MinLength(1)
  @MaxLength(255)
  id: string;
}

export class CreateRoleBindingDto {
  @ApiProperty({ type: BindingSubjectInput })
  @ValidateNested()
  @Type(() => BindingSubjectInput)
  subject: BindingSubjectInput;

  @ApiProperty({ enum: ROLES }) @IsIn(ROLES) role: Role;

  @ApiPropertyOptional({ description: 'Registry name; omit for every registry', example: 'prod-eu' })
  @IsOptional()
  @IsString()
  @Matches(REGISTRY_NAME_RE, { message: 'registry must be a registry name' })
  registry?: string;

  @ApiPropertyOptional({
    description: 'Repository glob within the registry (picomatch); omit for the whole registry',
    example: 'team-a/**',
  })
  @IsOptional()
  @IsString()
  repository?: string;

  @ApiPropertyOptional() @IsOptional() @IsString() @MaxLength(1000) description?: string;
}

export class UpdateRoleBindingDto {
  @ApiPropertyOptional({ enum: ROLES }) @IsOmittable() @IsIn(ROLES) role?: Role;

  @ApiPropertyOptional({ type: String, nullable: true, description: 'null: every registry' })
  @ValidateIf((_, v) => v !== null && v !== undefined)
  @IsString()
  @Matches(REGISTRY_NAME_RE, { message: 'registry must be a registry name' })
  registry?: string | null;

  @ApiPropertyOptional({ type: String, nullable: true, description: 'null: the whole registry' })
  @ValidateIf((_, v) => v !== null && v !== undefined)
  @IsString()
  repository?: string | null;

  @ApiPropertyOptional({ type: String, nullable: true })
  @ValidateIf((_, v) => v !== null && v !== undefined)
  @IsString()
  @MaxLength(1000)
  description?: string | null;
}

export class RoleBindingQueryDto extends PageQuery(200, 50) {
  @ApiPropertyOptional({ enum: SUBJECT_TYPES })
  @IsOptional()
  @IsIn(SUBJECT_TYPES)
  subjectType?: (typeof SUBJECT_TYPES)[number];

  @ApiPropertyOptional({ description: 'user sub, group name or service account id' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  subject?: string;

  @ApiPropertyOptional({ enum: ROLES }) @IsOptional() @IsIn(ROLES) role?: Role;

  @ApiPropertyOptional({ description: 'Bindings on this registry (global ones are not included)' })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;
}

export class RoleBindingIdParam {
  @ApiProperty({ format: 'uuid' }) @IsUUID() id: string;
}

export class BindingSubjectView {
  @ApiProperty({ enum: SUBJECT_TYPES }) type: string;
  @ApiProperty() id: string;
  @ApiPropertyOptional({ type: String, nullable: true, description: 'The service account’s name' })
  name: string | null;
}

export class RoleBindingView {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty({ type: BindingSubjectView }) subject: BindingSubjectView;
  @ApiProperty({ enum: ROLES }) role: Role;
  @ApiPropertyOptional({ type: String, nullable: true, description: 'null: every registry' })
  registry: string | null;
  @ApiPropertyOptional({ type: String, nullable: true, description: 'null: the whole registry' })
  repository: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) description: string | null;
  @ApiProperty() createdAt: string;
  @ApiProperty() updatedAt: string;
  @ApiProperty({ type: ActorView }) createdBy: ActorView;
}

export class RoleBindingList {
  @ApiProperty({ type: [RoleBindingView], description: 'Oldest first' }) items: RoleBindingView[];
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Pass it back as cursor for the next page; null on the last one',
  })
  nextCursor: string | null;
}

// --- who am I, what roles exist -----------------------------------------------------------------------

export class GrantView {
  @ApiProperty({ enum: ROLES }) role: Role;
  @ApiPropertyOptional({ type: String, nullable: true }) registry: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) repository: string | null;
  @ApiProperty({ description: 'binding:<id>, group:<name> (OIDC_GROUP_ROLES) or bootstrap' }) source: string;
}

export class PrincipalView {
  @ApiProperty({ enum: ['user', 'service'] }) type: string;
  @ApiProperty() id: string;
  @ApiProperty() name: string;
  @ApiProperty({ enum: ['oidc', 'api-token', 'bootstrap-token'] }) via: string;
  @ApiPropertyOptional({ type: [String] }) groups?: string[];
  @ApiProperty({ type: [GrantView] }) grants: GrantView[];
  @ApiProperty({ enum: PERMISSIONS, isArray: true, description: 'Permissions held everywhere' })
  globalPermissions: string[];
}

export class RoleView {
  @ApiProperty({ enum: ROLES }) name: Role;
  @ApiProperty() description: string;
  @ApiProperty({ enum: PERMISSIONS, isArray: true }) permissions: string[];
}

export class PermissionView {
  @ApiProperty({ enum: PERMISSIONS }) name: string;
  @ApiProperty() description: string;
}

export class RoleCatalog {
  @ApiProperty({ type: [RoleView] }) roles: RoleView[];
  @ApiProperty({ type: [PermissionView] }) permissions: PermissionView[];
}
