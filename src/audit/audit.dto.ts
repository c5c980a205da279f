import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsISO8601, IsOptional, IsString, MaxLength } from 'class-validator';
import { PageQuery } from '../common/page-query.js';

export const AUDIT_OUTCOMES = ['success', 'failure', 'pending', 'info'] as const;
export const AUDIT_ACTOR_TYPES = ['user', 'service', 'system', 'anonymous'] as const;
export const AUDIT_PAGE_MAX = 500;
export const AUDIT_EXPORT_FORMATS = ['json', 'csv', 'ndjson'] as const;

export class AuditEventQueryDto extends PageQuery(AUDIT_PAGE_MAX, 100) {
  @ApiPropertyOptional({ description: 'Registry name' })
  @IsOptional()
  @IsString()
  @MaxLength(63)
  registry?: string;

  @ApiPropertyOptional({
    example: 'team-a/**',
    description: 'A repository name, or a glob (picomatch syntax, as in role bindings: team-a/**, */api)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(1024)
  repository?: string;

  @ApiPropertyOptional({ description: 'Actor id' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  actor?: string;

  @ApiPropertyOptional({ enum: AUDIT_ACTOR_TYPES, description: 'Only actors of this kind' })
  @IsOptional()
  @IsIn(AUDIT_ACTOR_TYPES)
  actorType?: (typeof AUDIT_ACTOR_TYPES)[number];

  @ApiPropertyOptional({
    example: 'deletion.requested',
    description: 'An action, or every action under a prefix: deletion.*',
  })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  action?: string;

  @ApiPropertyOptional({ enum: AUDIT_OUTCOMES })
  @IsOptional()
  @IsIn(AUDIT_OUTCOMES)
  outcome?: (typeof AUDIT_OUTCOMES)[number];

  @ApiPropertyOptional({ example: 'deletion_request' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  subjectType?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(255)
  subjectId?: string;

  @ApiPropertyOptional({ description: 'Inclusive lower bound of occurredAt (ISO 8601)' })
  @IsOptional()
  @IsISO8601({ strict: true })
  from?: string;

  @ApiPropertyOptional({ description: 'Exclusive upper bound of occurredAt (ISO 8601)' })
  @IsOptional()
  @IsISO8601({ strict: true })
  to?: string;

  @ApiPropertyOptional({ enum: ['desc', 'asc'], default: 'desc', description: 'By time (the chain order)' })
  @IsOptional()
  @IsIn(['asc', 'desc'])
  sort?: 'asc' | 'desc';

  @ApiPropertyOptional({
    enum: AUDIT_EXPORT_FORMATS,
    default: 'json',
    description:
      'json: one page. csv or ndjson: every event that matches, streamed as a download (limit does not apply; a cursor starts after that page)',
  })
  @IsOptional()
  @IsIn(AUDIT_EXPORT_FORMATS)
  format?: (typeof AUDIT_EXPORT_FORMATS)[number];
}

export class AuditActorView {
  @ApiProperty({ enum: AUDIT_ACTOR_TYPES }) type: string;
  @ApiPropertyOptional({ type: String, nullable: true }) id: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) name: string | null;
}

export class AuditSubjectView {
  @ApiProperty({ example: 'deletion_request' }) type: string;
  @ApiProperty() id: string;
}

export class AuditEventView {
  @ApiProperty({ description: 'Position in the hash chain, from 1, without gaps.' }) seq: number;
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty({ format: 'date-time' }) occurredAt: string;
  @ApiProperty({ example: 'deletion.requested' }) action: string;
  @ApiProperty({ type: AuditActorView }) actor: AuditActorView;
  @ApiPropertyOptional({ type: String, nullable: true }) sourceIp: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) requestId: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) registry: string | null;
  @ApiPropertyOptional({ type: String, nullable: true }) repository: string | null;
  @ApiProperty({ type: [String] }) tags: string[];
  @ApiPropertyOptional({ type: String, nullable: true }) digest: string | null;
  @ApiProperty({ enum: AUDIT_OUTCOMES }) outcome: string;
  @ApiPropertyOptional({ type: Number, nullable: true }) upstreamStatus: number | null;
  @ApiPropertyOptional({ type: AuditSubjectView, nullable: true }) subject: AuditSubjectView | null;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true, nullable: true })
  details: Record<string, unknown> | null;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'Hash of the row before; null for seq 1.',
  })
  prevHash: string | null;
  @ApiProperty({ description: 'sha256 of this row’s content and prevHash.' }) hash: string;
}

export class AuditEventPage {
  @ApiProperty({ type: [AuditEventView], description: 'Newest first.' }) items: AuditEventView[];
  @ApiPropertyOptional({ type: String, nullable: true }) nextCursor: string | null;
}

export class AuditChainHead {
  @ApiProperty() seq: number;
  @ApiProperty() hash: string;
}

export class AuditVerification {
  @ApiProperty() ok: boolean;
  @ApiProperty({ description: 'Rows found intact before the first break (all rows when ok).' })
  checked: number;
  @ApiPropertyOptional({ description: 'The first seq where the chain is broken.' }) firstBrokenSeq?: number;
  @ApiPropertyOptional() reason?: string;
  @ApiPropertyOptional({
    type: AuditChainHead,
    nullable: true,
    description:
      'The last intact row. Record it elsewhere: the chain alone cannot reveal rows cut from its end.',
  })
  head: AuditChainHead | null;
}
