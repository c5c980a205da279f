import { Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { AUDIT_BATCH_EVENT, AUDIT_EVENT, AuditableEvent, AuditBatch, AuditReceipt } from './audit-event.js';
import { AuditService } from './audit.service.js';

/** The trail's only way in: features emit, this writes. */
@Injectable()
export class AuditListener {
  constructor(private readonly audit: AuditService) {}

  // suppressErrors defaults to true, which would log a failed write and let emitAsync resolve, so the
  // change would commit without its audit row. No `async`/`promisify` option: the listener runs at once
  // and emitAsync awaits the promise it returns.
  @OnEvent(AUDIT_EVENT, { suppressErrors: false })
  record(event: AuditableEvent): Promise<AuditReceipt> {
    return this.audit.append(event, event.manager);
  }

  @OnEvent(AUDIT_BATCH_EVENT, { suppressErrors: false })
  recordBatch(batch: AuditBatch): Promise<AuditReceipt[]> {
    return this.audit.appendMany(batch.events, batch.manager);
  }
}
