import { Controller, Get, Query, StreamableFile } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiOperation, ApiTags, getSchemaPath } from '@nestjs/swagger';
import { DENY_ALL } from '../auth/access.js';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/api-errors.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { EXPORT_CONTENT_TYPES, exportStream } from './audit-export.js';
import { auditPageSql, type AuditQuery } from './audit-query.js';
import { AuditEventPage, AuditEventQueryDto, AuditVerification } from './audit.dto.js';
import { auditFilterOf, AuditService } from './audit.service.js';

@ApiTags('audit')
@Controller('api/v1')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get('audit-events')
  @RequirePermission('audit:read', { registryQuery: 'registry', repositoryQuery: 'repository' })
  @ApiOperation({
    summary: 'Audit events, newest first (filtered, paged by cursor), or all of them as CSV or NDJSON',
    description:
      '`repository` takes a name or a glob, `action` an action or a prefix (`deletion.*`). Only events the caller may read are listed. With `format=csv` or `format=ndjson` every matching event is streamed as a download (`Content-Disposition: attachment`), read from Postgres a page at a time; events appended after the download started are not in it.',
  })
  @ApiExtraModels(AuditEventPage)
  @ApiOkResponse({
    description: 'A page of events; with `format`, every matching event as a download',
    content: {
      'application/json': { schema: { $ref: getSchemaPath(AuditEventPage) } },
      [EXPORT_CONTENT_TYPES.csv]: { schema: { type: 'string' } },
      [EXPORT_CONTENT_TYPES.ndjson]: { schema: { type: 'string' } },
    },
  })
  @ApiErrors({ 400: ['VALIDATION_FAILED'] })
  list(@Query() q: AuditEventQueryDto, @Ctx() ctx: RequestContext): Promise<AuditEventPage> | StreamableFile {
    const access = ctx.access ?? DENY_ALL;
    if (q.format !== 'csv' && q.format !== 'ndjson') return this.audit.list(q, access);
    const query: Omit<AuditQuery, 'limit'> = {
      filter: auditFilterOf(q),
      sort: q.sort ?? 'desc',
      cursor: q.cursor,
      access,
    };
    // A bad filter must be a 400, not a download cut short after its headers went out.
    auditPageSql({ ...query, limit: 1 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    return new StreamableFile(exportStream(this.audit.stream(query), q.format), {
      type: EXPORT_CONTENT_TYPES[q.format],
      disposition: `attachment; filename="audit-events-${stamp}.${q.format}"`,
    });
  }

  @Get('audit/verify')
  @RequirePermission('audit:read')
  @ApiOperation({
    summary: 'Check the hash chain of the whole audit trail',
    description:
      'Recomputes every row’s hash in order and checks it links to the row before. `ok: false` names the first broken seq and why. Reads the whole table, 5,000 rows at a time.',
  })
  @ApiOkResponse({ type: AuditVerification })
  verify(): Promise<AuditVerification> {
    return this.audit.verify();
  }
}
