import { CallHandler, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { catchError, Observable, throwError } from 'rxjs';
import { counter } from '../common/metrics.js';
import { requestOf, requestPrincipal } from '../common/request-context.js';
import { ForbiddenError } from './auth-errors.js';
import type { Principal } from './principal.js';

export type RefusalReason = 'unauthenticated' | 'forbidden' | 'rate_limited' | 'undeclared';

export interface Refusal {
  reason: RefusalReason;
  api: 'rest' | 'graphql' | 'queues';
  operation: string;
  permission?: string;
  principal?: Principal | null;
  registry?: string | null;
  repository?: string | null;
  /** Why authentication failed (missing, expired, revoked, …); for the log only. */
  cause?: string;
  requestId?: string;
  sourceIp?: string | null;
}

/** Every refused call is counted and logged with who and what, never with the token. */
@Injectable()
export class Refusals {
  private readonly logger = new Logger('Auth');
  private readonly refused = counter(
    'gateway_auth_refused_total',
    'Calls refused by authentication (401), authorization (403) or rate limiting (429).',
    ['reason', 'permission', 'api'],
  );

  record(r: Refusal): void {
    this.refused.inc({ reason: r.reason, permission: r.permission ?? '', api: r.api });
    const p = r.principal;
    this.logger.warn({
      msg: `refused (${r.reason}): ${r.operation}`,
      reason: r.reason,
      ...(r.cause ? { cause: r.cause } : {}),
      ...(r.permission ? { permission: r.permission } : {}),
      ...(r.registry ? { registry: r.registry } : {}),
      ...(r.repository ? { repository: r.repository } : {}),
      principal: p ? { type: p.type, id: p.id, name: p.name } : null,
      ...(r.requestId ? { requestId: r.requestId } : {}),
      ...(r.sourceIp ? { sourceIp: r.sourceIp } : {}),
    });
  }
}

/** Refusals decided inside handlers (bulk items, stored requests) are counted like the guard's. */
@Injectable()
export class HandlerRefusalsInterceptor implements NestInterceptor {
  constructor(private readonly refusals: Refusals) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      catchError((err: unknown) => {
        if (err instanceof ForbiddenError) {
          const api = context.getType<string>() === 'graphql' ? 'graphql' : 'rest';
          const req = requestOf(context);
          const details = err.details ?? {};
          this.refusals.record({
            reason: 'forbidden',
            api,
            operation: `${context.getClass().name}.${context.getHandler().name}`,
            permission: err.permission,
            principal: req ? requestPrincipal(req) : null,
            registry: details.registry as string | undefined,
            repository: details.repository as string | undefined,
            requestId: req ? String(req.id) : undefined,
          });
        }
        return throwError(() => err);
      }),
    );
  }
}
