import { Module } from '@nestjs/common';
import { AuditController } from './audit.controller.js';
import { AuditListener } from './audit.listener.js';
import { AuditResolver } from './audit.resolver.js';
import { AuditService } from './audit.service.js';

/**
 * Imported only by the root modules: features reach the trail by emitting AUDIT_EVENT. Both processes
 * load it, since workers record the outcome of each job.
 */
@Module({
  controllers: [AuditController],
  providers: [AuditService, AuditListener, AuditResolver],
})
export class AuditModule {}
