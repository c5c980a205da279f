import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import type { AuditActor } from '../audit/audit-event.js';

/** Who asked, from where, under which request id: what every audited change records. */
export interface RequestContext {
  actor: AuditActor;
  sourceIp: string | null;
  requestId: string | null;
}

/** The context of a process acting on its own (workers, schedules). */
export const SYSTEM_CONTEXT: RequestContext = {
  actor: { type: 'system', id: 'registry-gateway', name: 'registry-gateway' },
  sourceIp: null,
  requestId: null,
};

/**
 * Until authentication lands every caller is anonymous; the principal replaces `actor` then. The
 * address is the socket's (Fastify's `trustProxy` decides whether X-Forwarded-For counts).
 */
export function requestContextOf(req: FastifyRequest): RequestContext {
  const ip = req.ip && isIP(req.ip) ? req.ip : null;
  return { actor: { type: 'anonymous', id: null, name: null }, sourceIp: ip, requestId: String(req.id) };
}

export const Ctx = createParamDecorator((_: unknown, ctx: ExecutionContext): RequestContext =>
  requestContextOf(ctx.switchToHttp().getRequest()),
);
