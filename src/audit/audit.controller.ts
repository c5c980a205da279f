import { Controller, Get, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditEventPage, AuditEventQueryDto, AuditVerification } from './audit.dto.js';
import { AuditService } from './audit.service.js';

@ApiTags('audit')
@Controller('api/v1')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get('audit-events')
  @ApiOperation({ summary: 'Audit events, newest first (filtered, paged by cursor)' })
  @ApiOkResponse({ type: AuditEventPage })
  list(@Query() query: AuditEventQueryDto): Promise<AuditEventPage> {
    return this.audit.list(query);
  }

  @Get('audit/verify')
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
